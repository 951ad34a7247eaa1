"""The annotator's labeling page: plain form posts and htmx swaps, with permissions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, Item, Label
from tests.support.clients import logged_in as _client

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(campaign: Campaign) -> list[Item]:
    campaign.gold_rate = 0
    campaign.save()
    import_file(campaign, campaign.created_by, b"text\nfirst text\nsecond text\n", "d.csv")
    return list(Item.objects.filter(campaign=campaign).order_by("position"))


def _url(campaign: Campaign) -> str:
    return reverse("campaign-label", args=[campaign.pk])


def test_anonymous_users_are_sent_to_login(client: Client, campaign: Campaign) -> None:
    response = client.get(_url(campaign))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.post(_url(campaign), {"action": "undo"}).status_code == 302


def test_an_annotator_not_on_the_campaign_gets_404(campaign: Campaign, outsider: Any) -> None:
    client = _client(outsider)
    assert client.get(_url(campaign)).status_code == 404
    assert client.post(_url(campaign), {"action": "undo"}).status_code == 404


def test_the_manager_may_label_too(campaign: Campaign, manager: Any, items: list[Item]) -> None:
    response = _client(manager).get(_url(campaign))
    assert response.status_code == 200 and b"first text" in response.content


def test_the_page_shows_one_item_with_a_keyed_button_per_label(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    text = _client(annotator).get(_url(campaign)).content.decode()
    assert "first text" in text and "second text" not in text
    assert 'data-key="1"' in text and "negative" in text
    assert 'data-key="2"' in text and "positive" in text
    assert 'data-key="s"' in text
    assert 'data-key="u"' not in text  # nothing to undo yet
    assert Assignment.objects.get().item == items[0]


def test_a_plain_form_post_stores_the_label_and_redirects_to_the_next_item(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    response = client.post(
        _url(campaign),
        {"action": "label", "item": items[0].pk, "value": "positive", "comment": "clear"},
    )
    assert response.status_code == 302 and response["Location"] == _url(campaign)
    label = Label.objects.get()
    assert (label.item, label.value, label.comment) == (items[0], "positive", "clear")
    assert "second text" in client.get(_url(campaign)).content.decode()


def test_an_htmx_post_returns_the_next_card_only(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    response = client.post(
        _url(campaign),
        {"action": "label", "item": items[0].pk, "value": "negative"},
        headers={"HX-Request": "true"},
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert text.lstrip().startswith('<section id="label-card"')
    assert "<html" not in text and "second text" in text
    assert 'data-key="u"' in text and "1 labeled by you" in text


def test_a_double_submitted_label_is_stored_once(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    form = {"action": "label", "item": items[0].pk, "value": "negative"}
    client.post(_url(campaign), form)
    client.post(_url(campaign), form)
    assert Label.objects.count() == 1


def test_skip_and_undo(campaign: Campaign, annotator: Any, items: list[Item]) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    client.post(_url(campaign), {"action": "label", "item": items[0].pk, "value": "negative"})
    client.get(_url(campaign))  # serves items[1]
    client.post(_url(campaign), {"action": "skip", "item": items[1].pk})
    assert "Nothing to label right now" in client.get(_url(campaign)).content.decode()
    client.post(_url(campaign), {"action": "undo"})
    assert Label.objects.get().undone_at is not None
    assert "first text" in client.get(_url(campaign)).content.decode()  # served again


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "label", "value": "positive"}, "The form lost its item"),
        ({"action": "label", "item": "ITEM", "value": "great"}, "Choose one of the labels"),
        ({"action": "delete", "item": "ITEM"}, "Select a valid choice"),
    ],
)
def test_bad_posts_are_refused_with_a_message(
    campaign: Campaign, annotator: Any, items: list[Item], form: dict[str, Any], message: str
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    data = {k: (items[0].pk if v == "ITEM" else v) for k, v in form.items()}
    response = client.post(_url(campaign), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Label.objects.count() == 0


def test_an_item_never_served_to_the_annotator_cannot_be_labeled(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))  # serves items[0]
    response = client.post(
        _url(campaign), {"action": "label", "item": items[1].pk, "value": "positive"}
    )
    assert response.status_code == 400
    assert "not served to you" in response.content.decode()
    assert Label.objects.count() == 0


def test_the_campaign_list_shows_progress_and_a_label_link(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    client.post(_url(campaign), {"action": "label", "item": items[0].pk, "value": "negative"})
    text = client.get(reverse("campaign-list")).content.decode()
    assert _url(campaign) in text
    assert re.search(r'<td class="num">1</td>\s*<td class="num">2</td>', text)


def test_a_label_for_a_skipped_item_is_refused(
    campaign: Campaign, annotator: Any, items: list[Item]
) -> None:
    client = _client(annotator)
    client.get(_url(campaign))
    client.post(_url(campaign), {"action": "skip", "item": items[0].pk})
    response = client.post(
        _url(campaign), {"action": "label", "item": items[0].pk, "value": "positive"}
    )
    assert response.status_code == 400
    assert "You skipped this item" in response.content.decode()
    assert Label.objects.count() == 0
