"""The client: one :class:`Client` per server and token, a method per API action.

Every request goes through :meth:`Client._request`, which adds the token, retries 429 and
503 answers after their ``Retry-After`` (bounded in count and wait), and turns an error status
into an :class:`~carve_client.errors.ApiError` with the server's message. The waits (import
jobs, embeddings, model versions, export jobs) poll the job's URL and report a
:class:`~carve_client.models.Progress` to an optional callback.
"""

from __future__ import annotations

import email.utils
import hashlib
import importlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from carve_client.errors import (
    CarveError,
    ImportRefused,
    JobFailed,
    NotFound,
    Timeout,
    error_for,
)
from carve_client.models import (
    ACTIVE,
    Campaign,
    EmbeddingStatus,
    ImportJob,
    Item,
    Label,
    ModelVersion,
    Prediction,
    Progress,
)

ProgressCallback = Callable[[Progress], None]

#: The label export's formats (``?as=``) and the suffix of their files.
EXPORT_FORMATS = {
    "csv": "csv",
    "jsonl": "jsonl",
    "parquet": "parquet",
    "hf": "zip",
    "labelstudio": "json",
}
#: Statuses the client retries after ``Retry-After``.
RETRY_STATUSES = (429, 503)
#: The server's limit on texts per predict request (``PREDICT_MAX_TEXTS``).
PREDICT_BATCH = 256
#: Bytes per chunk when a download is written to a file.
CHUNK_BYTES = 64 * 1024


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date from now."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _decode(response: httpx.Response) -> Any:
    """The JSON body of an answer, or its text when it is not JSON."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def _filename(response: httpx.Response, fallback: str) -> str:
    """The file name from ``Content-Disposition`` (its last path part), else ``fallback``."""
    found = re.search(r'filename="?([^";]+)"?', response.headers.get("Content-Disposition", ""))
    return Path(found.group(1)).name if found else fallback


class Client:
    """A client of one Carve server, signed in with a personal API token.

    Parameters
    ----------
    url : str, optional
        The server's base URL, e.g. ``http://127.0.0.1:8000``. Default: ``$CARVE_URL``.
    token : str, optional
        A token from the "API tokens" page. Default: ``$CARVE_TOKEN``.
    timeout : float
        Seconds to wait for the server on any one request (connect, read, write).
    max_retries : int
        How many times a request answered 429 or 503 is sent again.
    max_retry_wait : float
        The longest wait, in seconds, before a retry, whatever ``Retry-After`` asks.
    poll_interval : float
        Seconds between two polls of a job.
    transport : httpx.BaseTransport, optional
        Passed to :class:`httpx.Client` (tests, proxies).

    Raises
    ------
    CarveError
        When no URL or token is given and the environment has none.

    Examples
    --------
    >>> with Client("http://127.0.0.1:8000", "carve_…") as carve:  # doctest: +SKIP
    ...     campaign = carve.create_campaign("Reviews", ["negative", "positive"])
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        poll_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url or os.environ.get("CARVE_URL") or ""
        token = token or os.environ.get("CARVE_TOKEN") or ""
        if not url:
            raise CarveError("No server URL: pass url= or set CARVE_URL.")
        if not token:
            raise CarveError("No API token: pass token= or set CARVE_TOKEN.")
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.poll_interval = poll_interval
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._export_jobs: bool | None = None  # does the server have export jobs? (asked once)

    # --- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _campaign_path(campaign_id: int, rest: str = "") -> str:
        return f"/api/v1/campaigns/{int(campaign_id)}/{rest}"

    def _send(
        self, method: str, url: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request, retrying 429/503 after ``Retry-After`` (at most
        ``max_retries`` times, each wait at most ``max_retry_wait``). Files in ``files`` are
        rewound before each attempt. The answer is returned as it is (any status)."""
        attempt = 0
        while True:
            for value in (kwargs.get("files") or {}).values():
                handle = value[1] if isinstance(value, tuple) else value
                if hasattr(handle, "seek"):
                    handle.seek(0)
            try:
                request = self._http.build_request(method, url, **kwargs)
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                raise Timeout(
                    f"{method} {url}: the server did not answer in time ({exc})."
                ) from exc
            except httpx.HTTPError as exc:
                raise CarveError(f"{method} {url}: {exc}") from exc
            if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                return response
            wait = _retry_after(response)
            response.close()
            attempt += 1
            time.sleep(min(self.max_retry_wait, wait if wait is not None else 2.0**attempt))

    def _check(self, response: httpx.Response) -> httpx.Response:
        """Raise the :class:`ApiError` of an error answer; pass a success through."""
        if response.status_code < 400:
            return response
        response.read()  # a streamed answer: its error body
        body = _decode(response)
        error = error_for(response.status_code, body, _retry_after(response))
        if (
            response.status_code == 400
            and isinstance(body, dict)
            and "errors" in body
            and "status" in body
        ):  # a refused import: the job, with the upload checks' messages
            error = ImportRefused(400, error.message, body)
        raise error

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request and return its decoded JSON (None for an empty answer)."""
        response = self._check(self._send(method, url, **kwargs))
        if response.status_code == 204 or not response.content:
            return None
        return _decode(response)

    def _pages(self, url: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every row of a paginated list (``?limit=&offset=``), page after page."""
        query = {"limit": 1000, **(params or {})}
        while True:
            page = self._request("GET", url, params=query)
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            yield from page["results"]
            if not page.get("next"):
                return
            query = {**query, "offset": int(query.get("offset", 0)) + len(page["results"])}

    def _poll(
        self,
        url: str,
        *,
        stage: str,
        timeout: float,
        status_of: Callable[[Any], str],
        progress_of: Callable[[Any], tuple[int, int | None]],
        progress: ProgressCallback | None,
    ) -> Any:
        """GET ``url`` every ``poll_interval`` seconds until its status is neither queued nor
        running; the last answer. Raises :class:`Timeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            body = self._request("GET", url)
            status = status_of(body)
            if progress is not None:
                done, total = progress_of(body)
                progress(Progress(stage, done, total, status))
            if status not in ACTIVE:
                return body
            if time.monotonic() > deadline:
                raise Timeout(f"{stage}: still {status} after {timeout:.0f} s.")
            time.sleep(self.poll_interval)

    def _download(
        self,
        url: str,
        path: str | os.PathLike[str] | None,
        *,
        fallback_name: str,
        params: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        sha256: str = "",
    ) -> Path:
        """Stream ``url`` to ``path`` (a directory, or None for the working directory: the
        server's file name) in chunks, through a temporary file renamed at the end; checked
        against ``sha256`` when given."""
        response = self._send("GET", url, params=params, stream=True)
        try:
            self._check(response)
            target = Path(path) if path is not None else Path.cwd()
            if target.is_dir():
                target = target / _filename(response, fallback_name)
            total_header = response.headers.get("Content-Length")
            total = int(total_header) if total_header and total_header.isdigit() else None
            done, digest = 0, hashlib.sha256()
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "wb", dir=target.parent, prefix=f".{target.name}.", delete=False
            ) as out:
                try:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(Progress("download", done, total, "receiving"))
                except BaseException as exc:  # broken off, a full disk, Ctrl-C: no partial file
                    out.close()
                    Path(out.name).unlink(missing_ok=True)
                    if isinstance(exc, httpx.HTTPError):
                        raise CarveError(f"GET {url}: the download broke off ({exc}).") from exc
                    raise
            if sha256 and digest.hexdigest() != sha256:
                Path(out.name).unlink(missing_ok=True)
                raise CarveError(f"GET {url}: the file's SHA-256 is not the server's {sha256}.")
            Path(out.name).replace(target)
        finally:
            response.close()
        if progress is not None:
            progress(Progress("download", done, done, "done"))
        return target

    # --- campaigns -------------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        """The campaigns the caller may see, newest first.

        Returns
        -------
        list of Campaign
        """
        return [Campaign.from_json(row) for row in self._pages("/api/v1/campaigns/")]

    def campaign(self, campaign_id: int) -> Campaign:
        """One campaign.

        Raises
        ------
        NotFound
            No such campaign, or one the caller is not on.
        """
        return Campaign.from_json(self._request("GET", self._campaign_path(campaign_id)))

    def create_campaign(self, name: str, labels: Sequence[str], **settings: Any) -> Campaign:
        """Create a campaign (managers).

        Parameters
        ----------
        name : str
            Its name.
        labels : sequence of str
            The label set (2 to 20 labels).
        **settings
            Other settings as the API names them: ``instructions``, ``annotators`` (user
            names), ``overlap``, ``gold_rate``, ``evaluation_size``, the learner's ``depth``,
            ``n_gates``, … (docs/platform.md, "Campaign settings").

        Returns
        -------
        Campaign

        Raises
        ------
        ApiError
            400 with the refused fields' messages; PermissionDenied for a non-manager.
        """
        body = {"name": name, "labels": list(labels), **settings}
        return Campaign.from_json(self._request("POST", "/api/v1/campaigns/", json=body))

    def update_campaign(self, campaign_id: int, **settings: Any) -> Campaign:
        """Change a campaign's settings (its managers); ``rename={"old": "new"}`` renames
        labels."""
        path = self._campaign_path(campaign_id)
        return Campaign.from_json(self._request("PATCH", path, json=settings))

    def metrics(self, campaign_id: int) -> dict[str, Any]:
        """The dashboard as JSON (managers): progress, agreement, embedding job, learner,
        learning curve, estimate and stop rule."""
        body: dict[str, Any] = self._request("GET", self._campaign_path(campaign_id, "metrics/"))
        return body

    # --- imports ---------------------------------------------------------------------------

    def import_file(
        self,
        campaign_id: int,
        file: str | os.PathLike[str] | bytes | IO[bytes],
        *,
        filename: str | None = None,
        text_column: str = "",
        gold_column: str = "",
        background: bool | None = None,
        wait: bool = True,
        timeout: float = 600.0,
        progress: ProgressCallback | None = None,
    ) -> ImportJob:
        """Import items from a file in any upload format (CSV, TSV, JSON Lines, JSON, Parquet,
        Arrow, Label Studio, a zipped ``datasets`` folder), all or nothing.

        Parameters
        ----------
        campaign_id : int
        file : path, bytes or binary file object
            The file. Bytes and file objects need ``filename`` for its format's suffix
            (default ``items.csv`` for bytes).
        filename : str, optional
            The name sent with it (its suffix tells the format).
        text_column, gold_column : str
            The columns to use; detected when blank (``gold_column="-"``: no gold labels).
        background : bool, optional
            Force a worker (True) or the request (False); by default the server decides by
            size (``IMPORT_INLINE_BYTES``).
        wait : bool
            Wait for a background import to finish (polling its job).
        timeout : float
            Seconds to wait.
        progress : callable, optional
            Called with a :class:`Progress` (stage ``import``) on each poll.

        Returns
        -------
        ImportJob
            Done (``result`` has the counts), or queued/running when ``wait`` is False.

        Raises
        ------
        ImportRefused
            The file was refused (400); ``errors`` has the upload checks' messages.
        JobFailed
            The background job failed.
        Timeout
            Still running after ``timeout`` seconds.
        """
        with _opened(file, filename) as (name, handle):
            data: dict[str, str] = {"text_column": text_column, "gold_column": gold_column}
            if background is not None:
                data["background"] = "true" if background else "false"
            body = self._request(
                "POST",
                self._campaign_path(campaign_id, "imports/"),
                data=data,
                files={"file": (name, handle)},
            )
        job = ImportJob.from_json(body)
        if job.status in ACTIVE and wait:
            job = self.wait_for_import(campaign_id, job.id, timeout=timeout, progress=progress)
        return job

    def import_items(
        self,
        campaign_id: int,
        items: Iterable[Mapping[str, Any]],
        *,
        text_column: str = "",
        gold_column: str = "",
        background: bool | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> ImportJob:
        """Import a list of item objects (``{"text": ..., "gold": ...}``; other keys are kept
        as metadata) as the JSON body ``{"items": [...]}``. See :meth:`import_file`."""
        body: dict[str, Any] = {
            "items": [dict(item) for item in items],
            "text_column": text_column,
            "gold_column": gold_column,
        }
        if background is not None:
            body["background"] = background
        answer = self._request("POST", self._campaign_path(campaign_id, "imports/"), json=body)
        job = ImportJob.from_json(answer)
        if job.status in ACTIVE and wait:
            job = self.wait_for_import(campaign_id, job.id, timeout=timeout)
        return job

    def import_dataframe(
        self,
        campaign_id: int,
        df: Any,
        *,
        text_column: str = "text",
        gold_column: str = "",
        background: bool | None = None,
        wait: bool = True,
        timeout: float = 600.0,
        progress: ProgressCallback | None = None,
    ) -> ImportJob:
        """Import a pandas DataFrame: one item per row, ``text_column`` the text, the other
        columns metadata (``gold_column`` the gold labels, if given).

        The frame is sent as a JSON Lines file (``DataFrame.to_json``: numbers, dates and
        missing values as JSON), so it goes through the same checks as an upload.

        Parameters
        ----------
        campaign_id : int
        df : pandas.DataFrame
        text_column : str
            The column with the texts.
        gold_column : str
            The column with gold labels ("" to detect a column named ``gold``/``label``,
            "-" for none).

        Returns
        -------
        ImportJob

        Raises
        ------
        CarveError
            ``text_column`` is not a column of ``df``.
        """
        columns = [str(c) for c in df.columns]
        if text_column not in columns:
            raise CarveError(f"No column {text_column!r} in the DataFrame (it has {columns}).")
        data = df.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
        return self.import_file(
            campaign_id,
            data.encode("utf-8"),
            filename="dataframe.jsonl",
            text_column=text_column,
            gold_column=gold_column,
            background=background,
            wait=wait,
            timeout=timeout,
            progress=progress,
        )

    def import_jobs(self, campaign_id: int) -> list[ImportJob]:
        """The campaign's import jobs, newest first (managers)."""
        rows = self._pages(self._campaign_path(campaign_id, "imports/"))
        return [ImportJob.from_json(row) for row in rows]

    def wait_for_import(
        self,
        campaign_id: int,
        job_id: int,
        *,
        timeout: float = 600.0,
        progress: ProgressCallback | None = None,
    ) -> ImportJob:
        """Poll an import job until it is done.

        Raises
        ------
        ImportRefused
            Its file was refused (``errors``).
        JobFailed
            It failed for another reason (``error``).
        Timeout
        """
        body = self._poll(
            self._campaign_path(campaign_id, f"imports/{int(job_id)}/"),
            stage="import",
            timeout=timeout,
            status_of=lambda b: str(b["status"]),
            progress_of=lambda b: (int(b["status"] == "done"), 1),
            progress=progress,
        )
        job = ImportJob.from_json(body)
        if job.status == "failed" and job.errors:
            raise ImportRefused(400, "The file was refused. " + " ".join(job.errors), body)
        if job.status == "failed":
            raise JobFailed("import", job.error or "unknown reason")
        return job

    # --- embeddings ------------------------------------------------------------------------

    def embedding_status(self, campaign_id: int) -> EmbeddingStatus:
        """The campaign's embedding job, from its metrics (managers)."""
        return EmbeddingStatus.from_json(self.metrics(campaign_id).get("embedding"))

    def wait_for_embeddings(
        self,
        campaign_id: int,
        timeout: float = 600.0,
        progress: ProgressCallback | None = None,
    ) -> EmbeddingStatus:
        """Wait until the campaign's items are embedded (the embedding job is done).

        Parameters
        ----------
        campaign_id : int
        timeout : float
            Seconds to wait.
        progress : callable, optional
            Called with a :class:`Progress` (stage ``embedding``, items done of all) on
            each poll.

        Returns
        -------
        EmbeddingStatus
            Status ``done``, or ``none`` for a campaign without items.

        Raises
        ------
        JobFailed
            The embedding job failed (its error).
        Timeout
        """

        def status_of(body: Any) -> str:
            job = body.get("embedding")
            if job is None:  # no job: a campaign without items has nothing to embed
                return "none" if not body.get("n_items") else "queued"
            return str(job["status"])

        def progress_of(body: Any) -> tuple[int, int | None]:
            job = EmbeddingStatus.from_json(body.get("embedding"))
            return job.n_done, job.n_total or None

        body = self._poll(
            self._campaign_path(campaign_id, "metrics/"),
            stage="embedding",
            timeout=timeout,
            status_of=status_of,
            progress_of=progress_of,
            progress=progress,
        )
        status = EmbeddingStatus.from_json(body.get("embedding"))
        if status.status == "failed":
            raise JobFailed("embedding", status.error or "unknown reason")
        return status

    # --- labeling --------------------------------------------------------------------------

    def next_item(self, campaign_id: int) -> Item | None:
        """Lease the caller's next item to label, as the labeling page does.

        Returns
        -------
        Item or None
            None when nothing is left to label right now.
        """
        body = self._request("POST", self._campaign_path(campaign_id, "next/"))
        return None if body is None else Item.from_json(body)

    def label(self, campaign_id: int, item_id: int, label: str, comment: str = "") -> Label:
        """Label an item the caller was served.

        Parameters
        ----------
        campaign_id, item_id : int
        label : str
            One of the campaign's labels.
        comment : str
            An optional note.

        Returns
        -------
        Label
            ``created`` False when this repeats an earlier submission (the first stands).

        Raises
        ------
        ApiError
            400: a label outside the label set, or an item not served to the caller.
        """
        body = {"item": int(item_id), "value": label, "comment": comment}
        return Label.from_json(
            self._request("POST", self._campaign_path(campaign_id, "labels/"), json=body)
        )

    def skip(self, campaign_id: int, item_id: int) -> None:
        """Set a served item aside."""
        path = self._campaign_path(campaign_id, "skip/")
        self._request("POST", path, json={"item": int(item_id)})

    def undo(self, campaign_id: int, item_id: int | None = None) -> Label | None:
        """Withdraw the caller's latest label (only if it is on ``item_id``, when given);
        None when there was nothing to undo."""
        body = {} if item_id is None else {"item": int(item_id)}
        answer = self._request("POST", self._campaign_path(campaign_id, "undo/"), json=body)
        return None if answer is None else Label.from_json(answer)

    def items(self, campaign_id: int, state: str | None = None) -> list[dict[str, Any]]:
        """The campaign's items with their active labels; ``state`` is ``labeled``,
        ``unlabeled`` or (managers) ``review``."""
        params = {} if state is None else {"state": state}
        return list(self._pages(self._campaign_path(campaign_id, "items/"), params))

    # --- model versions --------------------------------------------------------------------

    def models(self, campaign_id: int) -> list[ModelVersion]:
        """The campaign's model versions, newest first."""
        rows = self._request("GET", self._campaign_path(campaign_id, "models/"))
        return [ModelVersion.from_json(row) for row in rows]

    def model(self, campaign_id: int, version: int) -> ModelVersion:
        """One model version.

        Raises
        ------
        NotFound
        """
        path = self._campaign_path(campaign_id, f"models/{int(version)}/")
        return ModelVersion.from_json(self._request("GET", path))

    def retrain(
        self,
        campaign_id: int,
        wait: bool = True,
        *,
        timeout: float = 1800.0,
        progress: ProgressCallback | None = None,
    ) -> ModelVersion:
        """Train a new model version on the labels so far (managers).

        Parameters
        ----------
        campaign_id : int
        wait : bool
            Wait until the version is trained.
        timeout : float
            Seconds to wait.
        progress : callable, optional
            Called with a :class:`Progress` (stage ``training``, no total) on each poll.

        Returns
        -------
        ModelVersion
            Done (with its metrics), or queued when ``wait`` is False.

        Raises
        ------
        JobFailed
            Training failed (its error).
        Timeout
        """
        version = ModelVersion.from_json(
            self._request("POST", self._campaign_path(campaign_id, "retrain/"))
        )
        if not wait:
            return version
        return self.wait_for_model(campaign_id, version.number, timeout=timeout, progress=progress)

    def wait_for_model(
        self,
        campaign_id: int,
        version: int,
        *,
        timeout: float = 1800.0,
        progress: ProgressCallback | None = None,
    ) -> ModelVersion:
        """Poll a model version until it is trained (see :meth:`retrain`)."""
        body = self._poll(
            self._campaign_path(campaign_id, f"models/{int(version)}/"),
            stage="training",
            timeout=timeout,
            status_of=lambda b: str(b["status"]),
            progress_of=lambda b: (0, None),
            progress=progress,
        )
        done = ModelVersion.from_json(body)
        if done.status == "failed":
            raise JobFailed("model version", done.error or "unknown reason")
        return done

    def latest_model(self, campaign_id: int) -> ModelVersion:
        """The newest finished model version.

        Raises
        ------
        NotFound
            The campaign has no finished version yet.
        """
        for version in self.models(campaign_id):
            if version.status == "done":
                return version
        raise NotFound(404, "This campaign has no trained model yet: retrain first.")

    def download_model(
        self,
        campaign_id: int,
        version: int | None = None,
        path: str | os.PathLike[str] | None = None,
        *,
        fmt: str = "onnx",
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download a finished model version's network as ``onnx``, ``json`` or ``npz``.

        Parameters
        ----------
        campaign_id : int
        version : int, optional
            The version's number; default the newest finished one.
        path : path, optional
            The file (or a directory for the server's file name); default the working
            directory.
        fmt : str
            ``onnx`` (input ``embedding`` float32 [N, d]; outputs ``scores`` and calibrated
            ``probabilities``), ``json`` or ``npz`` (``learner.ReLUNetwork.from_dict`` /
            ``from_npz``).

        Returns
        -------
        Path
            The file written.
        """
        if fmt not in ("onnx", "json", "npz"):
            raise CarveError(f"Unknown model format {fmt!r}: use onnx, json or npz.")
        number = self.latest_model(campaign_id).number if version is None else int(version)
        return self._download(
            self._campaign_path(campaign_id, f"models/{number}/export/"),
            path,
            params={"as": fmt},
            fallback_name=f"campaign-{int(campaign_id)}-v{number}.{fmt}",
            progress=progress,
        )

    def download_onnx(
        self,
        campaign_id: int,
        version: int | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Download a model version as an ONNX graph; see :meth:`download_model`."""
        return self.download_model(campaign_id, version, path, fmt="onnx")

    def predict(
        self, campaign_id: int, texts: Sequence[str], *, batch_size: int = PREDICT_BATCH
    ) -> list[Prediction]:
        """Predict labels for ``texts`` with the newest finished model version (embedded on
        the server), in batches of at most ``batch_size`` texts per request.

        Returns
        -------
        list of Prediction
            One per text, in order: ``label``, ``confidence``, per-label ``probabilities``
            (calibrated, summing to 1) and raw ``scores``.

        Raises
        ------
        ApiError
            409 without a trained model; 400 for empty texts; 429 when the rate limit still
            holds after the retries.
        """
        if isinstance(texts, str):
            raise CarveError("predict takes a list of texts, not one string.")
        found: list[Prediction] = []
        path = self._campaign_path(campaign_id, "predict/")
        for start in range(0, len(texts), max(1, batch_size)):
            batch = list(texts[start : start + max(1, batch_size)])
            body = self._request("POST", path, json={"texts": batch})
            version = int(body["model_version"])
            found.extend(Prediction.from_json(row, version) for row in body["predictions"])
        return found

    # --- label export ----------------------------------------------------------------------

    def has_export_jobs(self, campaign_id: int) -> bool:
        """Whether the server writes exports as jobs (``POST …/exports/``); asked once, by
        listing the campaign's export jobs, and remembered."""
        if self._export_jobs is None:
            response = self._send("GET", self._campaign_path(campaign_id, "exports/"))
            if response.status_code == 404:  # no such route, or no such campaign
                self.campaign(campaign_id)  # an unknown campaign raises NotFound here
                self._export_jobs = False
            elif response.status_code == 405:  # the route exists, without GET
                self._export_jobs = True
            else:
                self._check(response)
                self._export_jobs = True
        return self._export_jobs

    def export(
        self,
        campaign_id: int,
        fmt: str = "csv",
        *,
        rows: str = "labels",
        items: str = "labeled",
        path: str | os.PathLike[str] | None = None,
        timeout: float = 1800.0,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Export the labels with their items to a file (managers; docs/platform.md,
        "Label export").

        On a server with export jobs the export is written by a worker (progress: stage
        ``export``) and then downloaded, checked against the job's SHA-256; otherwise it is
        streamed from ``…/export/``. Either way the file arrives in chunks (progress: stage
        ``download``) into a temporary file next to ``path``, renamed once complete.

        Parameters
        ----------
        campaign_id : int
        fmt : str
            ``csv``, ``jsonl``, ``parquet``, ``hf`` (a zipped Hugging Face ``datasets``
            folder) or ``labelstudio``.
        rows : str
            ``labels`` (one row per active label) or ``items`` (one per item).
        items : str
            ``labeled`` (items with a label or a decision) or ``all``.
        path : path, optional
            The file, or a directory for the server's file name; default the working
            directory.
        timeout : float
            Seconds to wait for an export job.
        progress : callable, optional
            Called with a :class:`Progress`.

        Returns
        -------
        Path
            The file written.
        """
        if fmt not in EXPORT_FORMATS:
            raise CarveError(f"Unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}.")
        options = {"as": fmt, "rows": rows, "items": items}
        fallback = f"campaign-{int(campaign_id)}-labels.{EXPORT_FORMATS[fmt]}"
        if self.has_export_jobs(campaign_id):
            download, sha256 = self._export_job(campaign_id, options, timeout, progress)
            return self._download(
                download, path, fallback_name=fallback, progress=progress, sha256=sha256
            )
        return self._download(
            self._campaign_path(campaign_id, "export/"),
            path,
            params=options,
            fallback_name=fallback,
            progress=progress,
        )

    def _export_job(
        self,
        campaign_id: int,
        options: Mapping[str, str],
        timeout: float,
        progress: ProgressCallback | None,
    ) -> tuple[str, str]:
        """Start an export job and wait for it; the URL of its file and its SHA-256."""
        path = self._campaign_path(campaign_id, "exports/")
        job = self._request("POST", path, json=dict(options))
        if job["status"] in ACTIVE:
            job = self._poll(
                job["url"],
                stage="export",
                timeout=timeout,
                status_of=lambda b: str(b["status"]),
                progress_of=lambda b: (int(b.get("n_done") or 0), int(b.get("n_total") or 0)),
                progress=progress,
            )
        if job["status"] != "done":
            raise JobFailed("export", str(job.get("error") or job["status"]))
        if not job.get("download"):
            raise CarveError(f"Export job {job['id']} is done but the server gave no download.")
        return str(job["download"]), str(job.get("sha256") or "")

    def export_dataframe(
        self,
        campaign_id: int,
        *,
        rows: str = "labels",
        items: str = "labeled",
        timeout: float = 1800.0,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """The label export as a pandas DataFrame (through Parquet when pyarrow is
        installed, else JSON Lines); see :meth:`export` for ``rows`` and ``items``.

        Returns
        -------
        pandas.DataFrame
        """
        pd = _pandas()
        try:
            importlib.import_module("pyarrow")
            fmt = "parquet"
        except ImportError:
            fmt = "jsonl"
        with tempfile.TemporaryDirectory(prefix="carve-export-") as work:
            file = self.export(
                campaign_id,
                fmt,
                rows=rows,
                items=items,
                path=Path(work) / f"export.{fmt}",
                timeout=timeout,
                progress=progress,
            )
            if fmt == "parquet":
                return pd.read_parquet(file)
            if file.stat().st_size == 0:
                return pd.DataFrame()
            return pd.read_json(file, lines=True, dtype=False)


def _pandas() -> Any:
    """pandas, imported when a DataFrame is asked for (it is optional)."""
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise CarveError("This needs pandas: pip install pandas.") from exc


@contextmanager
def _opened(
    file: str | os.PathLike[str] | bytes | IO[bytes], filename: str | None
) -> Iterator[tuple[str, IO[bytes] | bytes]]:
    """(name, content) of an import's file: a path is opened (and closed after)."""
    if isinstance(file, bytes | bytearray):
        yield filename or "items.csv", bytes(file)
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        with path.open("rb") as handle:
            yield filename or path.name, handle
    else:
        yield filename or Path(str(getattr(file, "name", "upload"))).name, file
