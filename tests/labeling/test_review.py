"""The review queue: disagreements and contradictions go to a manager, who decides."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from labeling import annotation, consensus, review
from labeling.imports.write import import_file
from labeling.models import Campaign, Decision, Item, Label, LearnerSnapshot
from tests.support.clients import logged_in as _client

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(campaign: Campaign) -> Item:
    """An item two annotators labeled differently (overlap 2)."""
    campaign.overlap = 2
    campaign.save()
    import_file(campaign, campaign.created_by, b'text\n"Hard to say, really"\nplain\n', "d.csv")
    item = Item.objects.get(text="Hard to say, really")
    a, b = (get_user_model().objects.create_user(n) for n in ("ann", "bob"))
    annotation.submit_label(item, a, "positive")
    annotation.submit_label(item, b, "negative")
    return item


def _url(campaign: Campaign) -> str:
    return reverse("campaign-review", args=[campaign.pk])


def test_review_is_for_managers_only(
    client: Client, campaign: Campaign, annotator: Any, outsider: Any
) -> None:
    assert client.get(_url(campaign)).status_code == 302
    assert _client(annotator).get(_url(campaign)).status_code == 403
    assert _client(outsider).get(_url(campaign)).status_code == 404
    assert _client(annotator).post(_url(campaign), {"item": 1, "value": "x"}).status_code == 403


def test_disagreeing_labels_are_listed_with_who_said_what(
    campaign: Campaign, manager: Any, disputed: Item
) -> None:
    text = _client(manager).get(_url(campaign)).content.decode()
    assert f'id="review-{disputed.pk}"' in text
    assert "<strong>positive</strong> by ann" in text and "<strong>negative</strong> by bob" in text
    assert "plain" not in text


def test_a_decision_settles_the_item_for_the_learner(
    campaign: Campaign, manager: Any, disputed: Item
) -> None:
    response = _client(manager).post(_url(campaign), {"item": disputed.pk, "value": "negative"})
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert (decision.item, decision.value, decision.decided_by) == (disputed, "negative", manager)
    assert review.review_items(campaign) == []
    rows = consensus.consensus(campaign).rows
    assert rows == [[disputed.pk, 0]]
    assert Label.objects.filter(item=disputed).count() == 2  # the annotators' labels stay
    campaign.refresh_from_db()
    assert campaign.learner_pending  # the learner will pick the decision up


def test_items_in_the_learners_conflict_groups_are_listed(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    import_file(campaign, campaign.created_by, b"text\nsame words\nsame words!\n", "d.csv")
    a, b = Item.objects.order_by("position")
    annotation.submit_label(a, annotator, "positive")
    annotation.submit_label(b, annotator, "negative")
    LearnerSnapshot.objects.create(campaign=campaign, conflicts=[[a.pk, b.pk]], state=b"")
    assert review.review_items(campaign) == [a.pk, b.pk]
    review.decide(b, manager, "positive")
    assert review.review_items(campaign) == [a.pk]


def test_suspect_labels_follow_conflicts_in_rank_order_capped_and_leave_when_decided(
    campaign: Campaign, manager: Any, annotator: Any, settings: Any
) -> None:
    import_file(campaign, campaign.created_by, b"text\none\ntwo\nthree\nfour\n", "d.csv")
    a, b, c, d = Item.objects.order_by("position")
    for item in (a, b, c, d):
        annotation.submit_label(item, annotator, "positive")
    LearnerSnapshot.objects.create(
        campaign=campaign, conflicts=[[d.pk]], suspects=[c.pk, a.pk, b.pk], state=b""
    )
    settings.CARVE_REVIEW_SUSPECTS = 2
    assert review.review_items(campaign) == [d.pk, c.pk, a.pk]
    review.decide(c, manager, "negative")
    assert review.review_items(campaign) == [d.pk, a.pk, b.pk]
    page = _client(manager).get(_url(campaign))
    assert page.status_code == 200
    assert f'id="review-{b.pk}"' in page.content.decode()


@pytest.mark.parametrize(
    "form", [{"item": "ITEM", "value": "great"}, {"item": 999_999, "value": "positive"}, {}]
)
def test_a_bad_decision_is_refused(
    campaign: Campaign, manager: Any, disputed: Item, form: dict[str, Any]
) -> None:
    data = {k: (disputed.pk if v == "ITEM" else v) for k, v in form.items()}
    response = _client(manager).post(_url(campaign), data)
    assert response.status_code == 400
    assert Decision.objects.count() == 0


def test_decide_refuses_a_value_outside_the_label_set(
    campaign: Campaign, manager: Any, disputed: Item
) -> None:
    with pytest.raises(ValueError, match="not a label"):
        review.decide(disputed, manager, "maybe")


def test_the_database_finds_the_disagreements_consensus_finds(campaign: Campaign) -> None:
    """consensus.disagreements (the review page's and the dashboard's) is consensus()'s list:
    the same items in the same order (by first label), decided and undone ones left out."""
    campaign.overlap = 3
    campaign.save()
    import_file(campaign, campaign.created_by, b"text\na\nb\nc\nd\ne\n", "d.csv")
    a, b, c, d, e = Item.objects.order_by("position")
    u1, u2, u3 = (get_user_model().objects.create_user(n) for n in ("u1", "u2", "u3"))
    for item, votes in (
        (d, ["positive", "negative"]),  # first disagreement by label order
        (a, ["positive", "positive", "negative"]),
        (b, ["negative", "negative"]),  # agreement
        (c, ["positive", "negative"]),  # decided below
        (e, ["positive", "negative"]),  # one label undone below
    ):
        for user, value in zip((u1, u2, u3), votes, strict=False):
            annotation.submit_label(item, user, value)
    review.decide(c, campaign.created_by, "positive")
    annotation.undo_last(campaign, u2)  # u2's negative on e
    expected = consensus.consensus(campaign).disagreements
    assert expected == [d.pk, a.pk]
    assert consensus.disagreements(campaign) == expected
