"""What the labeling page tells the annotator around the item: metadata, goals, what they just
did, their last labels (editable), the end of the queue; and the site's error and sign-in
pages (docs/platform.md, "The labeling page")."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling import views
from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, EmbeddingJob, Item, Label
from tests.support.clients import logged_in

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def items(campaign: Campaign) -> list[Item]:
    campaign.gold_rate = 0
    campaign.save()
    body = (
        "text,source,stars,note\n"
        "first text about a film,imdb,4,"
        + "x" * 500
        + "\nsecond text,rt,2,\nthird text here,imdb,5,ok\n"
    )
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    return list(Item.objects.filter(campaign=campaign).order_by("position"))


def _url(campaign: Campaign) -> str:
    return reverse("campaign-label", args=[campaign.pk])


def _label(client: Client, campaign: Campaign, item: Item, value: str, **extra: Any) -> Any:
    client.get(_url(campaign))
    return client.post(
        _url(campaign), {"action": "label", "item": item.pk, "value": value}, **extra
    )


def test_the_card_shows_the_metadata_the_campaign_chose(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = logged_in(annotator)
    text = client.get(_url(campaign)).content.decode()
    assert "<dt>source</dt><dd>imdb</dd>" in text and "<dt>stars</dt><dd>4</dd>" in text
    note = re.search(r"<dt>note</dt><dd>(x*)…</dd>", text)
    assert note and len(note.group(1)) < views.CARD_METADATA_CHARS  # long values are cut

    Campaign.objects.filter(pk=campaign.pk).update(card_metadata=["stars", "missing"])
    text = client.get(_url(campaign)).content.decode()
    assert "<dt>stars</dt>" in text and "<dt>source</dt>" not in text


def test_goals_show_the_campaign_and_the_annotator_progress(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = logged_in(annotator)
    _label(client, campaign, items[0], "positive")
    text = client.get(_url(campaign)).content.decode()
    assert 'value="1" max="3"' in text and "1 / 3 items fully labeled" in text
    assert "goal-mine" not in text  # no personal goal set

    Campaign.objects.filter(pk=campaign.pk).update(label_goal=2, annotator_goal=5)
    text = client.get(_url(campaign)).content.decode()
    assert 'value="1" max="2"' in text and 'value="1" max="5"' in text
    assert "1 labeled by you</span> (goal: 5)" in text


def test_the_campaign_progress_is_kept_as_labels_change_not_counted_per_render(
    campaign: Campaign, manager: Any, annotator: Any, items: list[Item], django_user_model: Any
) -> None:
    """docs/scaling.md, "The labeling card's progress": Campaign.n_fully_labeled follows
    labels, undos, edits, overlap changes and deletions, and always equals a full count."""
    from labeling import annotation, consensus, items_page
    from tests.support.clients import api_as

    def kept() -> int:
        fresh = Campaign.objects.get(pk=campaign.pk)
        assert fresh.n_fully_labeled == consensus.items_done(fresh)
        return fresh.n_fully_labeled

    other = django_user_model.objects.create_user("other2", password="x")
    campaign.annotators.add(other)
    annotation.submit_label(items[0], annotator, "positive")
    annotation.submit_label(items[1], annotator, "negative")
    assert kept() == 2
    annotation.submit_label(items[0], annotator, "positive")  # a double submission
    assert kept() == 2
    label = Label.objects.get(item=items[1], annotator=annotator)
    annotation.relabel(campaign, annotator, label.pk, "positive")
    assert kept() == 2
    annotation.undo_last(campaign, annotator)  # the edited label of items[1]
    assert kept() == 1
    # Two labels per item: items[0] has one of two.
    response = api_as(manager).patch(
        f"/api/v1/campaigns/{campaign.pk}/", {"overlap": 2}, format="json"
    )
    assert response.status_code == 200, response.content
    assert kept() == 0
    annotation.submit_label(items[0], other, "negative")
    assert kept() == 1
    annotation.submit_label(items[2], other, "negative")
    assert kept() == 1
    annotation.undo_last(campaign, other)  # items[2]: still below the overlap
    assert kept() == 1
    annotation.undo_last(campaign, other)  # items[0]: falls below it
    assert kept() == 0
    annotation.submit_label(items[0], other, "positive")
    assert kept() == 1
    EmbeddingJob.objects.filter(campaign=campaign).update(status="done")  # deletion waits
    items_page.delete_items(campaign, Item.objects.filter(pk=items[0].pk))
    assert kept() == 0
    # The card reads the kept number (no count of the labels per render).
    client = logged_in(annotator)
    response = client.get(_url(campaign))
    assert response.context["n_done"] == 0


def test_the_card_confirms_a_label_and_an_undo(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = logged_in(annotator)
    text = _label(client, campaign, items[0], "positive", **HTMX).content.decode()
    assert "Labeled “positive” on «first text about a film»." in text
    text = client.post(_url(campaign), {"action": "undo", "item": items[0].pk}, **HTMX)
    assert "Undid “positive” on «first text about a film»." in text.content.decode()
    # Without JavaScript the confirmation comes as a message on the next page.
    response = _label(client, campaign, items[0], "negative", follow=True)
    assert "Labeled “negative” on «first text about a film»." in response.content.decode()


def test_the_history_lists_the_last_labels_and_edits_one(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = logged_in(annotator)
    _label(client, campaign, items[0], "positive")
    _label(client, campaign, items[1], "negative")
    version = Campaign.objects.get(pk=campaign.pk).label_version
    text = client.get(_url(campaign)).content.decode()
    history = text[text.index('id="history-title"') :]
    assert history.index("second text") < history.index("first text about a film")
    first = Label.objects.get(item=items[0])

    response = client.post(
        _url(campaign), {"action": "edit", "label": first.pk, "value": "negative"}, **HTMX
    )
    assert response.status_code == 200
    assert "Changed «first text about a film» from “positive” to “negative”." in (
        response.content.decode()
    )
    active = Label.objects.filter(item=items[0], undone_at__isnull=True).get()
    assert active.value == "negative" and active.pk != first.pk
    first.refresh_from_db()
    assert first.undone_at is not None  # kept, withdrawn
    assert Campaign.objects.get(pk=campaign.pk).label_version == version + 1
    assert Assignment.objects.get(item=items[0]).state == Assignment.State.LABELED


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "edit", "value": "negative"}, "Which label?"),
        ({"action": "edit", "label": "MINE", "value": "great"}, "Choose one of the labels"),
        ({"action": "edit", "label": "abc", "value": "negative"}, "Enter a whole number"),
        ({"action": "edit", "label": "THEIRS", "value": "negative"}, "not one of yours"),
        ({"action": "edit", "label": "999999", "value": "negative"}, "not one of yours"),
    ],
)
def test_bad_edits_are_refused_without_changing_anything(
    campaign: Campaign,
    annotator: Any,
    manager: Any,
    items: list[Item],
    form: dict[str, str],
    message: str,
) -> None:
    mine = _label(logged_in(annotator), campaign, items[0], "positive")
    assert mine.status_code == 302
    _label(logged_in(manager), campaign, items[1], "positive")
    ids = {
        "MINE": str(Label.objects.get(annotator=annotator).pk),
        "THEIRS": str(Label.objects.get(annotator=manager).pk),
    }
    data = {k: ids.get(v, v) for k, v in form.items()}
    before = list(Label.objects.values_list("pk", "value", "undone_at"))

    response = logged_in(annotator).post(_url(campaign), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert list(Label.objects.values_list("pk", "value", "undone_at")) == before


def test_after_skipping_the_rest_the_page_says_so_and_brings_them_back(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = logged_in(annotator)
    _label(client, campaign, items[0], "positive")
    for item in items[1:]:
        client.get(_url(campaign))
        client.post(_url(campaign), {"action": "skip", "item": item.pk})
    text = client.get(_url(campaign)).content.decode()
    assert "you skipped the remaining 2 items" in text
    assert "Show skipped items again" in text
    assert 'hx-trigger="every 10s"' in text  # and it looks for new work meanwhile

    response = client.post(_url(campaign), {"action": "unskip"}, **HTMX)
    text = response.content.decode()
    assert "2 skipped item(s) back in your queue." in text
    served = re.search(r'id="item-text" data-item="(\d+)"', text)
    assert served and int(served.group(1)) in {items[1].pk, items[2].pk}
    assert 'hx-trigger="every 10s"' not in text  # an item: no polling
    assert _label(client, campaign, items[1], "negative").status_code == 302


def test_the_empty_card_without_skips_polls_for_new_items(
    campaign: Campaign, annotator: Any, manager: Any
) -> None:
    text = logged_in(annotator).get(_url(campaign)).content.decode()
    assert "every item is labeled or being labeled by someone else" in text
    assert 'hx-trigger="every 10s"' in text and "Show skipped items again" not in text
    Campaign.objects.filter(pk=campaign.pk).update(stopped_at="2026-01-01T00:00Z")
    text = logged_in(annotator).get(_url(campaign)).content.decode()
    assert "stopped by its managers" in text and "hx-trigger" not in text


def test_every_label_has_a_key_up_to_twenty(campaign: Campaign, annotator: Any) -> None:
    labels = [f"class-{i}" for i in range(1, 21)]
    Campaign.objects.filter(pk=campaign.pk).update(labels=labels, gold_rate=0)
    import_file(campaign, campaign.created_by, b"text\nan item\n", "d.csv")
    text = logged_in(annotator).get(_url(campaign)).content.decode()
    keys = re.findall(r'data-key="(\w)" aria-keyshortcuts="\w"><kbd>\w</kbd> (class-\d+)<', text)
    assert [name for _, name in keys] == labels
    assert [k for k, _ in keys] == list("1234567890abcdefghij")
    assert not {"s", "u"} & {k for k, _ in keys}  # skip and undo keep theirs


def test_the_wrong_password_message_shows_once(annotator: Any) -> None:
    response = Client().post(reverse("login"), {"username": "annotator", "password": "wrong"})
    assert response.content.decode().count("Please enter a correct username") == 1


def test_error_pages_are_styled_and_lead_back(
    campaign: Campaign, annotator: Any, outsider: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.DEBUG = False
    not_found = logged_in(outsider).get(_url(campaign))
    assert not_found.status_code == 404
    text = not_found.content.decode()
    assert "Page not found" in text and 'href="/"' in text and "carve.css" in text

    forbidden = logged_in(annotator).get(reverse("campaign-create"))
    assert forbidden.status_code == 403
    assert "You may not do that" in forbidden.content.decode()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(views.annotation, "next_assignment", broken)
    client = logged_in(annotator)
    client.raise_request_exception = False
    failed = client.get(_url(campaign))
    assert failed.status_code == 500
    text = failed.content.decode()
    assert "Something went wrong on our side" in text and 'href="/"' in text
    assert "boom" not in text and "Traceback" not in text
