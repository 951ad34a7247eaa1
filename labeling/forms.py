"""Forms: every input a view accepts is validated here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from labeling.models import CAMPAIGN_SETTINGS, DEFAULT_LABELS, Campaign, validate_label_set

#: ``old -> new`` on a line of the label set renames a label (docs/platform.md, "Campaign
#: settings"); the arrow may also be written →.
RENAME_ARROW = re.compile(r"\s*(?:->|→)\s*")


def parse_label_lines(raw: str) -> tuple[list[str], dict[str, str]]:
    """The label set typed in the form (one per line or comma-separated) and its renames.

    ``pos -> positive`` puts ``positive`` at that place and renames ``pos`` to it.
    """
    labels: list[str] = []
    renames: dict[str, str] = {}
    for part in re.split(r"[\n,]", raw):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in RENAME_ARROW.split(part)]
        if len(pieces) == 1:
            labels.append(pieces[0])
            continue
        if len(pieces) != 2 or not all(pieces):
            raise ValidationError(f"Write a rename as old -> new (e.g. pos -> positive): {part!r}.")
        old, new = pieces
        if old in renames:
            raise ValidationError(f"{old!r} is renamed twice.")
        if old != new:
            renames[old] = new
        labels.append(new)
    return labels, renames


def labels_in_use(campaign: Campaign) -> tuple[set[str], set[str]]:
    """(gold values of the campaign's items, values of active labels and decisions)."""
    from labeling.models import Decision, Label

    gold = set(campaign.items.exclude(gold="").values_list("gold", flat=True))
    given = set(
        Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
        .values_list("value", flat=True)
        .distinct()
    ) | set(Decision.objects.filter(item__campaign=campaign).values_list("value", flat=True))
    return gold, given


def check_labels_in_use(
    campaign: Campaign, labels: list[str], renames: Mapping[str, str] | None = None
) -> None:
    """Refuse a new label set that drops or moves a value gold items, labels or decisions
    still use; ``renames`` (old name -> new name) carries a value to its new name.

    A label in use keeps its place in the order: the learner's state, its suggestions and
    the model versions store a label's position (its class index), not its name
    (docs/platform.md, "Campaign settings").
    """
    renames = dict(renames or {})
    current = list(campaign.labels)
    unknown = sorted(set(renames) - set(current))
    if unknown:
        raise ValidationError(
            "Only the campaign's labels can be renamed ("
            + ", ".join(current)
            + "), not "
            + ", ".join(repr(u) for u in unknown)
            + "."
        )
    # (In a swap, a -> b and b -> a, each old name is also a new one.)
    kept = sorted(old for old in renames if old in labels and old not in renames.values())
    if kept:
        raise ValidationError(
            "A renamed label cannot also stay under its old name: "
            + ", ".join(repr(k) for k in kept)
            + "."
        )
    gold, given = labels_in_use(campaign)
    for used, what in ((gold, "Gold labels of imported items"), (given, "Labels given")):
        missing = sorted(v for v in used if renames.get(v, v) not in labels)
        if missing:
            raise ValidationError(
                [
                    f"{what} must stay in the label set: "
                    + ", ".join(repr(m) for m in missing)
                    + ".",
                    "To rename a label, write old -> new on its line (e.g. pos -> positive).",
                ]
            )
    for value in sorted(gold | given):
        if value not in current:
            continue
        before, after = current.index(value), labels.index(renames.get(value, value))
        if before != after:
            raise ValidationError(
                f"Labels in use keep their place in the order: {value!r} is label "
                f"{before + 1} and would become label {after + 1}. Add new labels at the end."
            )


def rename_labels(campaign: Campaign, renames: Mapping[str, str]) -> None:
    """Rename label values everywhere the campaign stores them by name: its labels' and
    decisions' values (undone labels too) and its items' gold labels. Campaign.labels itself
    is the caller's to save, in the same transaction. Class indices do not change, so the
    learner's state stays valid (docs/platform.md, "Campaign settings")."""
    from django.db.models import Case, F, Value, When

    from labeling.models import Decision, Item, Label

    if not renames:
        return

    def renamed(field: str) -> Case:
        whens = [When(**{field: old}, then=Value(new)) for old, new in renames.items()]
        return Case(*whens, default=F(field))

    # One UPDATE per table, so a swap (a -> b, b -> a) is applied at once.
    Label.objects.filter(item__campaign=campaign, value__in=list(renames)).update(
        value=renamed("value")
    )
    Decision.objects.filter(item__campaign=campaign, value__in=list(renames)).update(
        value=renamed("value")
    )
    Item.objects.filter(campaign=campaign, gold__in=list(renames)).update(gold=renamed("gold"))


# Added after the first release: a form posted without them keeps the stored value.
OPTIONAL_SETTINGS = (
    "show_suggestions",
    "evaluation_size",
    "card_metadata",
    "label_goal",
    "annotator_goal",
)

#: The form's sections, in page order (docs/platform.md, "Campaign settings"). The last one
#: is collapsed: the recommended learner settings suit sentence embeddings.
SECTIONS = (
    ("Basics", ("name", "instructions", "labels_text")),
    ("Annotators", ("invite", "annotators")),
    (
        "Labeling",
        (
            "overlap",
            "gold_rate",
            "evaluation_size",
            "show_suggestions",
            "label_goal",
            "annotator_goal",
            "retrain_every",
            "card_metadata",
        ),
    ),
    (
        "Advanced: learner settings",
        ("depth", "n_gates", "projection_dim", "radius", "softness", "batch_size", "seed"),
    ),
)
#: Fields that take a whole row of the form's grid.
WIDE_FIELDS = frozenset({"name", "instructions", "labels_text", "invite", "annotators"})

#: Plain-language labels and help of the form, kept here rather than on the model fields so
#: that rewording them needs no migration. Learner settings also show their recommended
#: value, the model field's default (docs/learner.md, "Model" and "Soft version space").
FIELD_TEXT: dict[str, tuple[str, str]] = {
    "name": ("Name", "What annotators see in their list of campaigns."),
    "instructions": (
        "Instructions",
        "Shown above every item: what to look for, and how to decide unclear cases.",
    ),
    "annotators": ("Annotators", "People who may label this campaign's items."),
    "overlap": (
        "Labels per item",
        "How many different annotators label each item (1 to 5). 2 or more shows where "
        "they disagree.",
    ),
    "gold_rate": (
        "Share of gold items",
        "Share of served items taken from items imported with a gold label (0 to 0.5), to "
        "measure each annotator's accuracy. Annotators are not told which ones they are.",
    ),
    "evaluation_size": (
        "Evaluation items",
        "Items drawn at random from the pool, labeled like any other but never trained on: "
        "they measure the model's accuracy honestly. At most 5% of the pool; 0 = none.",
    ),
    "show_suggestions": (
        "Model suggestions",
        "Show annotators the current model's guess and its confidence.",
    ),
    "label_goal": (
        "Campaign goal",
        "Items to finish (each with its labels per item): the progress bar's target. "
        "Blank: every item of the pool.",
    ),
    "annotator_goal": (
        "Goal per annotator",
        "Labels wanted from each annotator. Blank: no personal goal.",
    ),
    "retrain_every": (
        "Retrain every",
        "A new model version is fitted automatically after this many new labels; 0 = only "
        "when you ask for one.",
    ),
    "card_metadata": (
        "Metadata shown on the card",
        "Columns of the imported file shown to annotators beside the text, separated by "
        "commas. Blank: every column; - : none.",
    ),
    "depth": (
        "Model depth",
        "Layers of the model. 2 suits most text tasks; 3 or 4 can fit more intricate "
        "distinctions, and every update takes longer.",
    ),
    "n_gates": (
        "Hidden units",
        "Size of the model's hidden layer (depth 2 only; deeper models use fixed sizes). "
        "More can fit finer distinctions, and every update takes longer.",
    ),
    "projection_dim": (
        "Compressed embedding size",
        "The texts' embeddings are compressed to this many numbers before learning, which "
        "makes updates several times faster at about the same accuracy. 0 = no compression.",
    ),
    "radius": (
        "Weight radius",
        "Radius R of the ball ||θ|| ≤ R that bounds the model's weights. It only scales the "
        "model and changes no prediction, so there is no reason to change it.",
    ),
    "softness": (
        "Label softness",
        "How far the model may disagree with a label (0 to 0.1), so that a few wrong labels "
        "are flagged for review instead of learned. Blank: chosen from the campaign's "
        "labels; 0: every label is learned exactly.",
    ),
    "batch_size": (
        "Items picked per round",
        "How many items the learner picks at a time; they are chosen to differ from each other.",
    ),
    "seed": (
        "Random seed",
        "Any whole number: it fixes the model's random start, so the same labels give the "
        "same model.",
    ),
}
RECOMMENDED = {"softness": "blank"}
LEARNER_FIELDS = SECTIONS[-1][1]

#: On a new campaign, every active user who is not staff is ticked as an annotator when
#: there are at most this many (a small team); none otherwise.
PRESELECT_UP_TO = 10

#: Separators of the invite field: commas, semicolons, white space.
INVITE_SPLIT = re.compile(r"[\s,;]+")


class CampaignForm(forms.ModelForm):  # type: ignore[type-arg]  # generic in the stubs only
    labels_text = forms.CharField(
        label="Labels",
        initial="\n".join(DEFAULT_LABELS),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One label per line (or separated by commas): 2 to 20 distinct labels. "
        "Annotators press 1..K in this order.",
    )
    invite = forms.CharField(
        label="Invite by username or email",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Usernames or email addresses of people with an account here, separated by "
        "commas or new lines. They are added to the annotators ticked below.",
    )
    # A text field for a JSON list: "a, b" -> ["a", "b"], blank -> None (every key).
    card_metadata = forms.CharField(required=False, max_length=2000)

    class Meta:
        model = Campaign
        fields = list(CAMPAIGN_SETTINGS)
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "annotators": forms.CheckboxSelectMultiple,
            "show_suggestions": forms.RadioSelect,
        }

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        # A ModelMultipleChoiceField (the stubs type fields[...] as the base Field).
        self.fields["annotators"].queryset = users  # type: ignore[attr-defined]
        self.fields["annotators"].required = False
        self.renames: dict[str, str] = {}
        for name, (label, help_text) in FIELD_TEXT.items():
            self.fields[name].label, self.fields[name].help_text = label, help_text
        for name in LEARNER_FIELDS:
            default = getattr(Campaign._meta.get_field(name), "default", None)
            shown = RECOMMENDED.get(name, f"{default:g}" if isinstance(default, float) else default)
            self.fields[name].help_text += f" Recommended: {shown}."
        if self.instance.pk:
            self.fields["labels_text"].initial = "\n".join(self.instance.labels)
            self.fields["labels_text"].help_text += (
                " To rename a label, write old -> new on its line (pos -> positive): its "
                "labels, decisions and gold items follow. Labels in use cannot be removed or "
                "moved; add new ones at the end."
            )
            chosen = self.instance.card_metadata
            if isinstance(chosen, list):
                self.initial["card_metadata"] = ", ".join(str(k) for k in chosen) or "-"
        elif not self.is_bound:
            # A small team: tick everyone but staff (and the creator); a large site: no one.
            team = users.filter(is_staff=False, is_superuser=False)
            if user is not None:
                team = team.exclude(pk=user.pk)
            if team.count() <= PRESELECT_UP_TO:
                self.initial["annotators"] = list(team)
        # Settings a form may leave out keep their current value (or the default).
        for name in OPTIONAL_SETTINGS:
            self.fields[name].required = False

    def section_fields(self) -> list[tuple[str, list[tuple[forms.BoundField, bool]]]]:
        """The form's sections for the template: (title, [(field, whether it is wide)])."""
        return [
            (title, [(self[name], name in WIDE_FIELDS) for name in names])
            for title, names in SECTIONS
        ]

    def _clean_optional(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if value in (None, "") and name not in self.data:
            return getattr(self.instance, name)
        return value

    def clean_show_suggestions(self) -> Any:
        return self._clean_optional("show_suggestions")

    def clean_evaluation_size(self) -> Any:
        return self._clean_optional("evaluation_size")

    def clean_label_goal(self) -> Any:
        return self._clean_optional("label_goal")

    def clean_annotator_goal(self) -> Any:
        return self._clean_optional("annotator_goal")

    def clean_card_metadata(self) -> list[str] | None:
        if "card_metadata" not in self.data:
            return self.instance.card_metadata if self.instance.pk else None
        raw = (self.cleaned_data.get("card_metadata") or "").strip()
        if not raw:
            return None
        if raw == "-":
            return []
        return list(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))

    def clean_invite(self) -> list[Any]:
        """Usernames or emails -> active users; every unknown one is named in the error."""
        User = get_user_model()
        found, unknown = [], []
        for name in INVITE_SPLIT.split(self.cleaned_data.get("invite") or ""):
            if not name:
                continue
            users = User.objects.filter(is_active=True)
            match = list(users.filter(**{User.USERNAME_FIELD: name})) or (
                list(users.filter(email__iexact=name)) if "@" in name else []
            )
            if len(match) == 1:
                found.append(match[0])
            elif len(match) > 1:
                raise ValidationError(
                    f"{len(match)} accounts use the email {name!r}: invite by username."
                )
            else:
                unknown.append(name)
        if unknown:
            raise ValidationError(
                "No active account has the username or email "
                + ", ".join(repr(u) for u in unknown)
                + ". Ask an administrator to create it first."
            )
        return found

    def clean_labels_text(self) -> list[str]:
        labels, renames = parse_label_lines(self.cleaned_data["labels_text"])
        if renames and not self.instance.pk:
            raise ValidationError("A new campaign has no labels to rename yet.")
        validate_label_set(labels)
        if self.instance.pk:
            check_labels_in_use(self.instance, labels, renames)
        self.renames = renames
        return labels

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "annotators" in data and data.get("invite"):
            chosen = list(data["annotators"])
            data["annotators"] = chosen + [u for u in data["invite"] if u not in chosen]
        return data

    def proposed(self) -> Campaign:
        """The campaign as it would be saved (valid form): settings and label set."""
        campaign: Campaign = self.instance
        campaign.labels = self.cleaned_data["labels_text"]
        return campaign

    def save(self, commit: bool = True) -> Campaign:
        self.instance.labels = self.cleaned_data["labels_text"]
        if not commit:
            return super().save(commit=False)
        with transaction.atomic():
            if self.instance.pk and self.renames:
                Campaign.objects.select_for_update().filter(pk=self.instance.pk).exists()
                rename_labels(self.instance, self.renames)
            return super().save(commit=True)


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV or TSV with a header row, JSON Lines, a JSON array, Label Studio JSON "
        "tasks, Parquet, an Arrow file or a zipped datasets folder (save_to_disk). Text as UTF-8."
    )
    text_column = forms.CharField(
        required=False,
        max_length=200,
        help_text="Leave empty to detect it (text, sentence, review, content…).",
    )
    gold_column = forms.CharField(
        required=False,
        max_length=200,
        help_text="Optional gold labels; detected from label, gold, sentiment… when empty, "
        "none with -. Every other column is kept as item metadata.",
    )
    # docs/platform.md, "Near-duplicates".
    near_duplicates = forms.FloatField(
        required=False,
        min_value=0.5,
        max_value=1.0,
        label="Near-duplicate threshold",
        help_text="Optional: once embedded, list new items whose cosine similarity to an "
        "earlier item is at least this (0.5 to 1.0, e.g. 0.95). Empty: no check.",
    )

    def __init__(self, *args: Any, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes
        self.fields["file"].help_text += f" At most {filesizeformat(max_bytes)}."

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        # Checked before reading, so a huge file is never loaded into memory.
        if upload.size > self.max_bytes:
            raise ValidationError(
                f"The file is {upload.size:,} bytes; the limit is {self.max_bytes:,} bytes."
            )
        return upload


MAX_ROW_ID = 2**63 - 1  # a larger id is a form error, not an overflow in the database


class LabelActionForm(forms.Form):
    """One annotator action on the item they were served: label it, skip it, or undo; or
    change one of their earlier labels (``edit``, with ``label``), or bring back the items
    they skipped (``unskip``)."""

    ACTIONS = ("label", "skip", "undo", "edit", "unskip")

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    item = forms.IntegerField(required=False, min_value=1, max_value=MAX_ROW_ID)
    value = forms.CharField(required=False, max_length=200)
    comment = forms.CharField(required=False, max_length=2000)
    label = forms.IntegerField(required=False, min_value=1, max_value=MAX_ROW_ID)

    def __init__(self, *args: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        if action in ("label", "skip") and not data.get("item"):
            raise ValidationError("Which item? The form lost its item; reload the page.")
        if action == "edit" and not data.get("label"):
            raise ValidationError("Which label? The form lost it; reload the page.")
        if action in ("label", "edit") and data.get("value") not in self.labels:
            raise ValidationError(f"Choose one of the labels: {', '.join(self.labels)}.")
        return data


class DecisionForm(forms.Form):
    """A manager's verdict on an item in review."""

    item = forms.IntegerField(min_value=1)
    value = forms.CharField(max_length=200)

    def __init__(self, *args: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels

    def clean_value(self) -> str:
        value = str(self.cleaned_data["value"])
        if value not in self.labels:
            raise ValidationError(f"Choose one of the labels: {', '.join(self.labels)}.")
        return value


class TokenForm(forms.Form):
    """Create (``name``) or revoke (``revoke`` = token id) a personal API token."""

    name = forms.CharField(required=False, max_length=100)
    revoke = forms.IntegerField(required=False, min_value=1)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("revoke") and not (data.get("name") or "").strip():
            raise ValidationError("Give the new token a name (what will use it?).")
        return data
