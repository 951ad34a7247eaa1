"""``carve``: the command line over :class:`carve_client.Client`.

Global options come before the command: ``carve --url URL --token TOKEN --json COMMAND …``
(``--url``/``--token`` default to ``$CARVE_URL``/``$CARVE_TOKEN``; ``--campaign`` to
``$CARVE_CAMPAIGN``). Results go to stdout (``--json``: one JSON document per command, for
scripts), messages and progress bars to stderr.

Exit codes:

- 0: done
- 1: the server refused the request (an API error: its message on stderr), a background
  job failed, or the server could not be reached
- 2: usage error (a missing or bad option or argument, no URL or token)
- 3: a wait ran past ``--timeout``
- 4: not found or not allowed (HTTP 401, 403, 404: a bad token, a campaign the caller is not
  on)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import progress as rich_progress
from rich.console import Console
from rich.table import Table

from carve_client.client import EXPORT_FORMATS, Client, ProgressCallback
from carve_client.errors import CarveError, JobFailed, NotFound, PermissionDenied, Timeout
from carve_client.models import Progress

#: The exit codes (the module's docstring says when each is used).
EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_TIMEOUT, EXIT_DENIED = 0, 1, 2, 3, 4

app = typer.Typer(
    name="carve",
    help="Carve from the command line: campaigns, imports, labeling, models, exports. "
    "Exit codes: 0 ok, 1 API error, 2 usage error, 3 timeout, 4 not found or not allowed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)


@dataclass
class Options:
    url: str
    token: str
    as_json: bool
    show_progress: bool

    def client(self) -> Client:
        if not self.url:
            raise typer.BadParameter("set --url or CARVE_URL", param_hint="--url")
        if not self.token:
            raise typer.BadParameter("set --token or CARVE_TOKEN", param_hint="--token")
        return Client(self.url, self.token)


Campaign = Annotated[
    int,
    typer.Option("--campaign", "-c", envvar="CARVE_CAMPAIGN", help="The campaign's id."),
]
Wait = Annotated[float, typer.Option(help="Seconds to wait before giving up (exit 3).")]


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="CARVE_URL", help="The server, e.g. http://127.0.0.1:8000.")
    ] = "",
    token: Annotated[
        str,
        typer.Option(envvar="CARVE_TOKEN", help="A personal API token.", show_default=False),
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print results as JSON (for scripts).")
    ] = False,
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")
    ] = True,
) -> None:
    """Carve's REST API from the command line."""
    ctx.obj = Options(url, token, as_json, show_progress and not as_json)


def _options(ctx: typer.Context) -> Options:
    found = ctx.find_object(Options)
    assert found is not None
    return found


def _plain(value: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-ready values; paths as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        data = asdict(value)
        data.pop("raw", None)
        return data
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _emit(ctx: typer.Context, value: Any, text: str | None = None) -> None:
    """Print a result: JSON with --json, else ``text`` (or the JSON when there is none)."""
    if _options(ctx).as_json or text is None:
        typer.echo(json.dumps(_plain(value), ensure_ascii=False, indent=None))
    else:
        typer.echo(text)


@contextmanager
def _progress(ctx: typer.Context, description: str) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr for a wait or a download (one row per stage), fed by the
    client's progress callback; nothing with --no-progress or --json."""
    if not _options(ctx).show_progress:
        yield None
        return
    bar = rich_progress.Progress(
        rich_progress.SpinnerColumn(),
        rich_progress.TextColumn("{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.TextColumn("{task.fields[detail]}"),
        rich_progress.TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
    tasks: dict[str, rich_progress.TaskID] = {}

    def update(event: Progress) -> None:
        if event.stage not in tasks:
            tasks[event.stage] = bar.add_task(f"{description}: {event.stage}", detail="")
        if event.stage == "download":
            size = f"{event.done / 1e6:.1f} MB"
            detail = size if event.total is None else f"{size} of {event.total / 1e6:.1f} MB"
        else:
            counted = f"{event.done}/{event.total}" if event.total else ""
            detail = f"{event.status} {counted}".strip()
        bar.update(tasks[event.stage], completed=event.done, total=event.total, detail=detail)

    with bar:
        yield update


# --- campaigns ---------------------------------------------------------------------------


@app.command("campaigns")
def list_campaigns(ctx: typer.Context) -> None:
    """List the campaigns you may see."""
    found = _options(ctx).client().campaigns()
    if _options(ctx).as_json:
        _emit(ctx, found)
        return
    table = Table("id", "name", "labels", "items", "stopped")
    for c in found:
        table.add_row(
            str(c.id), c.name, ", ".join(c.labels), str(c.n_items), str(bool(c.stopped_at))
        )
    Console().print(table)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    label: Annotated[list[str], typer.Option("--label", "-l", help="A label (give two or more).")],
    instructions: Annotated[str, typer.Option(help="Shown to annotators.")] = "",
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Another setting as KEY=VALUE (VALUE read as JSON if it is)."),
    ] = None,
) -> None:
    """Create a campaign (managers); prints its id."""
    settings: dict[str, Any] = {"instructions": instructions} if instructions else {}
    for pair in setting or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    campaign = _options(ctx).client().create_campaign(name, label, **settings)
    _emit(ctx, campaign, str(campaign.id))


@app.command()
def metrics(ctx: typer.Context, campaign: Campaign) -> None:
    """Print the campaign's dashboard as JSON (managers)."""
    typer.echo(json.dumps(_options(ctx).client().metrics(campaign), ensure_ascii=False))


# --- imports and embeddings --------------------------------------------------------------


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV, JSONL, Parquet, …"),
    ],
    campaign: Campaign,
    text_column: Annotated[str, typer.Option(help="Detected when blank.")] = "",
    gold_column: Annotated[str, typer.Option(help='Detected when blank; "-" for none.')] = "",
    background: Annotated[
        bool | None,
        typer.Option("--background/--inline", help="Default: the server decides by size."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for a background import.")] = True,
    timeout: Wait = 600.0,
) -> None:
    """Import items from a file into a campaign (all or nothing)."""
    with _progress(ctx, "importing") as progress:
        job = (
            _options(ctx)
            .client()
            .import_file(
                campaign,
                file,
                text_column=text_column,
                gold_column=gold_column,
                background=background,
                wait=wait,
                timeout=timeout,
                progress=progress,
            )
        )
    message = (job.result or {}).get("message") or f"import job {job.id}: {job.status}"
    _emit(ctx, job, str(message))


@app.command("wait-embeddings")
def wait_embeddings(ctx: typer.Context, campaign: Campaign, timeout: Wait = 600.0) -> None:
    """Wait until the campaign's items are embedded."""
    with _progress(ctx, "embedding") as progress:
        status = _options(ctx).client().wait_for_embeddings(campaign, timeout, progress)
    _emit(ctx, status, f"embedding: {status.status} ({status.n_done}/{status.n_total})")


# --- labeling ----------------------------------------------------------------------------


@app.command("next")
def next_(ctx: typer.Context, campaign: Campaign) -> None:
    """Lease your next item: prints its id and text, tab-separated (nothing when none is left)."""
    item = _options(ctx).client().next_item(campaign)
    if item is None:
        if _options(ctx).as_json:
            typer.echo("null")
        return
    _emit(ctx, item, f"{item.id}\t{item.text}")


@app.command()
def label(
    ctx: typer.Context,
    item: Annotated[int, typer.Argument(help="The item's id (from `carve next`).")],
    value: Annotated[str, typer.Argument(metavar="LABEL", help="One of the campaign's labels.")],
    campaign: Campaign,
    comment: Annotated[str, typer.Option(help="A note with the label.")] = "",
) -> None:
    """Label an item you were served."""
    given = _options(ctx).client().label(campaign, item, value, comment)
    _emit(ctx, given, f"item {given.item}: {given.value}" + ("" if given.created else " (repeat)"))


# --- models ------------------------------------------------------------------------------


@app.command()
def retrain(
    ctx: typer.Context,
    campaign: Campaign,
    wait: Annotated[bool, typer.Option(help="Wait until the version is trained.")] = False,
    timeout: Wait = 1800.0,
) -> None:
    """Train a new model version on the labels so far (managers)."""
    with _progress(ctx, "training") as progress:
        version = _options(ctx).client().retrain(campaign, wait, timeout=timeout, progress=progress)
    _emit(ctx, version, f"model version {version.number}: {version.status}")


@app.command()
def models(ctx: typer.Context, campaign: Campaign) -> None:
    """List the campaign's model versions."""
    found = _options(ctx).client().models(campaign)
    lines = [f"{v.number}\t{v.status}\t{v.n_labels} labels\t{v.chosen}" for v in found]
    _emit(ctx, found, "\n".join(lines))


@app.command()
def onnx(
    ctx: typer.Context,
    campaign: Campaign,
    version: Annotated[int | None, typer.Option(help="Default: the newest finished.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File or directory.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="onnx, json or npz.")] = "onnx",
) -> None:
    """Download a model version (ONNX by default); prints the file's path."""
    with _progress(ctx, "model") as progress:
        path = (
            _options(ctx)
            .client()
            .download_model(campaign, version, output, fmt=fmt, progress=progress)
        )
    _emit(ctx, {"path": str(path)}, str(path))


@app.command()
def predict(
    ctx: typer.Context,
    texts: Annotated[list[str], typer.Argument(metavar="TEXT", help="Texts to label.")],
    campaign: Campaign,
) -> None:
    """Predict labels with the newest model: one line per text (label, confidence, text)."""
    found = _options(ctx).client().predict(campaign, texts)
    lines = [f"{p.label}\t{p.confidence:.3f}\t{t}" for p, t in zip(found, texts, strict=True)]
    _emit(ctx, found, "\n".join(lines))


# --- export ------------------------------------------------------------------------------


@app.command()
def export(
    ctx: typer.Context,
    campaign: Campaign,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=", ".join(EXPORT_FORMATS) + ".")
    ] = "csv",
    rows: Annotated[str, typer.Option(help="labels (one row per label) or items.")] = "labels",
    items: Annotated[str, typer.Option(help="labeled or all.")] = "labeled",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File or directory (default: the server's name)."),
    ] = None,
    timeout: Wait = 1800.0,
) -> None:
    """Export the labels with their items to a file (managers); prints the file's path."""
    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(EXPORT_FORMATS)}", param_hint="--format")
    with _progress(ctx, "export") as progress:
        path = (
            _options(ctx)
            .client()
            .export(
                campaign,
                fmt,
                rows=rows,
                items=items,
                path=output,
                timeout=timeout,
                progress=progress,
            )
        )
    _emit(ctx, {"path": str(path), "bytes": path.stat().st_size}, str(path))


def exit_code(error: BaseException) -> int:
    """The exit code of an error (the module's docstring lists them)."""
    if isinstance(error, Timeout):
        return EXIT_TIMEOUT
    if isinstance(error, NotFound | PermissionDenied):
        return EXIT_DENIED
    return EXIT_API


def main(argv: Sequence[str] | None = None) -> None:
    """The ``carve`` command: run the app, turning the client's errors into a message on
    stderr and an exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="carve")
    except (CarveError, OSError) as error:
        kind = (
            "timeout"
            if isinstance(error, Timeout)
            else ("job failed" if isinstance(error, JobFailed) else "error")
        )
        typer.echo(f"carve: {kind}: {error}", err=True)
        sys.exit(exit_code(error))


if __name__ == "__main__":  # pragma: no cover
    main()
