"""Forms: every input a view accepts is validated here."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

from labeling.models import CAMPAIGN_SETTINGS, DEFAULT_LABELS, Campaign, validate_label_set


def check_labels_in_use(campaign: Campaign, labels: list[str]) -> None:
    """Refuse a new label set that drops a value gold items, labels or decisions still use."""
    from labeling.models import Decision, Label

    gold = set(campaign.items.exclude(gold="").values_list("gold", flat=True))
    given = set(
        Label.objects.filter(item__campaign=campaign, undone_at__isnull=True)
        .values_list("value", flat=True)
        .distinct()
    ) | set(Decision.objects.filter(item__campaign=campaign).values_list("value", flat=True))
    for used, what in ((gold, "Gold labels of imported items"), (given, "Labels given")):
        missing = sorted(used - set(labels))
        if missing:
            raise ValidationError(
                f"{what} must stay in the label set: " + ", ".join(repr(m) for m in missing) + "."
            )


# Added after the first release: a form posted without them keeps the stored value.
OPTIONAL_SETTINGS = (
    "show_suggestions",
    "evaluation_size",
    "card_metadata",
    "label_goal",
    "annotator_goal",
)


class CampaignForm(forms.ModelForm):  # type: ignore[type-arg]  # generic in the stubs only
    labels_text = forms.CharField(
        label="Labels",
        initial="\n".join(DEFAULT_LABELS),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One label per line (or separated by commas): 2 to 20 distinct labels. "
        "Annotators press 1..K in this order.",
    )

    class Meta:
        model = Campaign
        fields = list(CAMPAIGN_SETTINGS)
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 4}),
            "annotators": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        # A ModelMultipleChoiceField (the stubs type fields[...] as the base Field).
        self.fields["annotators"].queryset = users  # type: ignore[attr-defined]
        self.fields["annotators"].required = False
        if self.instance.pk:
            self.fields["labels_text"].initial = "\n".join(self.instance.labels)
        # Settings a form may leave out keep their current value (or the default).
        for name in OPTIONAL_SETTINGS:
            self.fields[name].required = False

    def _clean_optional(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if value in (None, "") and name not in self.data:
            return getattr(self.instance, name)
        return value

    def clean_show_suggestions(self) -> Any:
        return self._clean_optional("show_suggestions")

    def clean_evaluation_size(self) -> Any:
        return self._clean_optional("evaluation_size")

    def clean_labels_text(self) -> list[str]:
        raw = self.cleaned_data["labels_text"]
        labels = [part.strip() for part in re.split(r"[\n,]", raw) if part.strip()]
        validate_label_set(labels)
        if self.instance.pk:
            check_labels_in_use(self.instance, labels)
        return labels

    def save(self, commit: bool = True) -> Campaign:
        self.instance.labels = self.cleaned_data["labels_text"]
        return super().save(commit=commit)


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with a header row, or JSON Lines (one object per line). UTF-8."
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


class LabelActionForm(forms.Form):
    """One annotator action on the item they were served: label it, skip it, or undo."""

    ACTIONS = ("label", "skip", "undo")

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    item = forms.IntegerField(required=False, min_value=1)
    value = forms.CharField(required=False, max_length=200)
    comment = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, labels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        action = data.get("action")
        if action in ("label", "skip") and not data.get("item"):
            raise ValidationError("Which item? The form lost its item; reload the page.")
        if action == "label" and data.get("value") not in self.labels:
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
