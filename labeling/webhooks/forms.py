"""The Webhooks page's forms (docs/platform.md, "Webhooks")."""

from __future__ import annotations

from django import forms

from labeling.webhooks import subscriptions


class WebhookForm(forms.Form):
    url = forms.URLField(
        label="URL",
        max_length=subscriptions.URL_MAX_LENGTH,
        assume_scheme="https",
        help_text="A worker POSTs each event here (http or https; redirects are not followed).",
        widget=forms.URLInput(attrs={"placeholder": "https://example.org/carve-hook", "size": 48}),
    )
    events = forms.MultipleChoiceField(
        choices=[(e, f"{e}: {subscriptions.DESCRIPTIONS[e]}") for e in subscriptions.EVENTS],
        widget=forms.CheckboxSelectMultiple,
        initial=list(subscriptions.EVENTS),
        error_messages={"required": "Choose at least one event."},
    )

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        problem = subscriptions.url_problem(url)
        if problem is not None:
            raise forms.ValidationError(problem)
        return url


class WebhookActionForm(forms.Form):
    """Remove, turn off/on or ping one webhook of the campaign."""

    webhook = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    action = forms.ChoiceField(choices=[(a, a) for a in ("delete", "toggle", "ping")])
