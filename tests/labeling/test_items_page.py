"""The items page (docs/platform.md, "The items page"): filters, pages, history, actions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labeling import annotation, campaign_learner, items_page, review
from labeling.embeddings import chunks
from labeling.embeddings import jobs as embedding_jobs
from labeling.embeddings.embedders import FakeEmbedder
from labeling.embeddings.pool import embeddings
from labeling.imports.write import import_file
from labeling.models import (
    Assignment,
    Campaign,
    Decision,
    EmbeddingChunk,
    EmbeddingJob,
    Item,
    Label,
    Upload,
)
from tests.labeling.builders import embedded_campaign
from tests.support.clients import logged_in

pytestmark = pytest.mark.django_db


def _url(campaign: Campaign) -> str:
    return reverse("campaign-items", args=[campaign.pk])


def _ids(client: Client, campaign: Campaign, **query: Any) -> list[int]:
    """The item ids the page lists for ``query`` (position order)."""
    response = client.get(_url(campaign), query)
    assert response.status_code == 200, response.content.decode()[:2000]
    page = response.context["page"]
    return [item.pk for item in page.items]


@pytest.fixture
def items(campaign: Campaign) -> list[Item]:
    body = (
        "text,label,genre\n"
        "A wonderful film,positive,drama\n"
        "A dull film,negative,comedy\n"
        "Plain text one,,drama\n"
        "Plain text two,,comedy\n"
        "Plain text three,,drama\n"
    )
    import_file(campaign, campaign.created_by, body.encode(), "first.csv")
    return list(Item.objects.filter(campaign=campaign).order_by("position"))


@pytest.fixture
def people(campaign: Campaign) -> tuple[Any, Any]:
    users = get_user_model().objects
    a, b = users.create_user("ann"), users.create_user("bob")
    campaign.annotators.add(a, b)
    return a, b


def test_only_managers_see_the_items_page(
    client: Client, campaign: Campaign, annotator: Any, outsider: Any, items: list[Item]
) -> None:
    assert client.get(_url(campaign)).status_code == 302
    assert logged_in(annotator).get(_url(campaign)).status_code == 403
    assert logged_in(outsider).get(_url(campaign)).status_code == 404
    detail = reverse("campaign-item", args=[campaign.pk, items[0].pk])
    assert logged_in(annotator).get(detail).status_code == 403
    post = {"action": "delete", "ids": items[0].pk, "confirm": "1"}
    assert logged_in(annotator).post(_url(campaign), post).status_code == 403
    assert Item.objects.filter(pk=items[0].pk).exists()


def test_the_campaign_page_links_to_the_items(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    page = logged_in(manager).get(reverse("campaign-detail", args=[campaign.pk]))
    assert _url(campaign) in page.content.decode()


def test_each_filter(
    campaign: Campaign, manager: Any, items: list[Item], people: tuple[Any, Any]
) -> None:
    a, b = people
    wonderful, dull, one, two, three = items
    annotation.submit_label(one, a, "positive", "clearly")
    annotation.submit_label(two, a, "negative")
    annotation.submit_label(two, b, "positive")  # disagree: no final label, in review
    annotation.submit_label(three, b, "negative")
    Decision.objects.create(item=three, value="positive", decided_by=manager)
    Assignment.objects.create(
        item=dull, annotator=b, state=Assignment.State.SKIPPED, expires_at=timezone.now()
    )
    Item.objects.filter(pk=wonderful.pk).update(evaluation=True, predicted=1, confidence=0.9)
    Item.objects.filter(pk=dull.pk).update(predicted=0, confidence=0.55)
    client = logged_in(manager)

    assert _ids(client, campaign) == [i.pk for i in items]
    assert _ids(client, campaign, q="PLAIN text t") == [two.pk, three.pk]
    assert _ids(client, campaign, state="unlabeled") == [wonderful.pk, dull.pk]
    assert _ids(client, campaign, state="labeled") == [one.pk, two.pk, three.pk]
    assert _ids(client, campaign, state="skipped") == [dull.pk]
    # The final label: the decision, or labels that agree; "any": any active label.
    assert _ids(client, campaign, label="positive") == [one.pk, three.pk]
    assert _ids(client, campaign, label="negative") == []
    assert _ids(client, campaign, label="negative", label_of="any") == [two.pk, three.pk]
    assert _ids(client, campaign, annotator=b.pk) == [two.pk, three.pk]
    assert _ids(client, campaign, gold="yes") == [wonderful.pk, dull.pk]
    assert _ids(client, campaign, gold="no") == [one.pk, two.pk, three.pk]
    assert _ids(client, campaign, evaluation="yes") == [wonderful.pk]
    assert _ids(client, campaign, review="in") == [two.pk]
    assert _ids(client, campaign, meta="genre=comedy") == [dull.pk, two.pk]
    assert _ids(client, campaign, meta="nokey=x") == []
    assert _ids(client, campaign, conf_min="0.6") == [wonderful.pk]
    assert _ids(client, campaign, conf_min="0.5", conf_max="0.6") == [dull.pk]
    upload = Upload.objects.get(campaign=campaign)
    assert _ids(client, campaign, upload=upload.pk, gold="yes") == [wonderful.pk, dull.pk]

    # Partially labeled: with two labels per item, one label is not enough.
    Campaign.objects.filter(pk=campaign.pk).update(overlap=2)
    assert _ids(client, campaign, state="partial") == [one.pk]
    assert _ids(client, campaign, state="labeled") == [two.pk, three.pk]

    # Undone labels do not count.
    Label.objects.filter(item=one).update(undone_at=timezone.now())
    assert _ids(client, campaign, state="unlabeled") == [wonderful.pk, dull.pk, one.pk]


def test_filters_stay_in_the_links_and_htmx_gets_the_results_only(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    client = logged_in(manager)
    full = client.get(_url(campaign), {"q": "plain"}).content.decode()
    assert 'hx-push-url="true"' in full and 'id="item-filters"' in full
    assert 'value="plain"' in full
    part = client.get(_url(campaign), {"q": "plain"}, headers={"HX-Request": "true"})
    text = part.content.decode()
    assert text.lstrip().startswith('<div id="items-results">')
    assert "<html" not in text and "Plain text one" in text and "wonderful" not in text


def test_pages_seek_by_position(campaign: Campaign, manager: Any) -> None:
    body = "text\n" + "".join(f"row {i}\n" for i in range(120))
    import_file(campaign, campaign.created_by, body.encode(), "d.csv")
    client = logged_in(manager)
    first = client.get(_url(campaign))
    page = first.context["page"]
    assert page.count == 120 and len(page.items) == 50 and page.prev_before is None
    assert f"after={page.next_after}" in first.content.decode()
    second = client.get(_url(campaign), {"after": page.next_after}).context["page"]
    assert [i.position for i in second.items] == list(range(50, 100))
    third = client.get(_url(campaign), {"after": second.next_after}).context["page"]
    assert [i.position for i in third.items] == list(range(100, 120))
    assert third.next_after is None
    back = client.get(_url(campaign), {"before": third.prev_before}).context["page"]
    assert [i.position for i in back.items] == list(range(50, 100))
    assert back.next_after == 99
    # Seeking back from beyond the end: the page holds the last items, and no "next" link.
    last = client.get(_url(campaign), {"before": 1000}).context["page"]
    assert [i.position for i in last.items] == list(range(70, 120))
    assert last.next_after is None and last.prev_before == 70
    # Filters count what matches, and page through it too.
    only = client.get(_url(campaign), {"q": "row 1"}).context["page"]
    assert only.count == 31 and len(only.items) == 31  # row 1, 10-19, 100-119


@pytest.mark.parametrize(
    "query",
    [
        {"after": "abc"},
        {"after": "99999999999999999999"},
        {"before": "-5"},
        {"conf_min": "nan"},
        {"conf_min": "0.9", "conf_max": "0.1"},
        {"state": "bogus"},
        {"annotator": "abc"},
        {"annotator": "999999"},
        {"upload": "99999999999999999999999"},
        {"label": "not-a-label"},
        {"meta": "no equals sign"},
        {"q": "x" * 500},
    ],
)
def test_bad_query_strings_are_400_not_500(
    campaign: Campaign, manager: Any, items: list[Item], query: dict[str, str]
) -> None:
    response = logged_in(manager).get(_url(campaign), query)
    assert response.status_code == 400
    assert 'id="filter-errors"' in response.content.decode()


def test_odd_but_valid_queries(campaign: Campaign, manager: Any, items: list[Item]) -> None:
    client = logged_in(manager)
    assert _ids(client, campaign, after=2**31 - 1) == []
    assert _ids(client, campaign, unknown="filter", meta="a'b\"c=%") == []
    assert _ids(client, campaign, q="%_\\") == []
    huge = reverse("campaign-item", args=[campaign.pk, 2**64])
    assert client.get(huge).status_code == 404


@pytest.mark.parametrize(
    "post",
    [
        {"action": "explode", "ids": "1"},
        {"action": "review", "ids": "abc"},
        {"action": "review", "ids": "99999999999999999999999"},
        {"action": "review", "ids": "\u00b2"},  # a digit to isdigit(), not to int()
        {"action": "review", "ids": "\u2460"},
        {"action": "review"},
        {"action": "delete_upload"},
        {"action": "delete_upload", "upload": "999999", "confirm": "1"},
        {"action": "delete_upload", "upload": "x"},
    ],
)
def test_bad_posts_change_nothing_and_say_why(
    campaign: Campaign, manager: Any, items: list[Item], post: dict[str, str]
) -> None:
    response = logged_in(manager).post(_url(campaign), post, follow=True)
    assert response.status_code in (200, 400)
    assert any(m.level_tag == "error" for m in response.context["messages"])
    assert Item.objects.filter(campaign=campaign).count() == 5


def test_deleted_or_foreign_ids_are_ignored(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    other = Campaign.objects.create(name="other", created_by=manager)
    import_file(other, manager, b"text\nsomewhere else\n", "o.csv")
    foreign = Item.objects.get(campaign=other)
    post = {"action": "review", "ids": [foreign.pk, 10**9]}
    logged_in(manager).post(_url(campaign), post)
    assert not Item.objects.filter(review_requested_at__isnull=False).exists()


def test_history_shows_labels_undos_skips_and_decisions(
    campaign: Campaign, manager: Any, items: list[Item], people: tuple[Any, Any]
) -> None:
    a, b = people
    item = items[2]
    Item.objects.filter(pk=item.pk).update(predicted=1, confidence=0.73, evaluation=True)
    annotation.submit_label(item, a, "negative", "not sure")
    annotation.undo_last(campaign, a, item.pk)
    annotation.submit_label(item, a, "positive")
    Assignment.objects.create(
        item=item, annotator=b, state=Assignment.State.SKIPPED, expires_at=timezone.now()
    )
    review.decide(item, manager, "positive")
    response = logged_in(manager).get(reverse("campaign-item", args=[campaign.pk, item.pk]))
    text = response.content.decode()
    kinds = [e.what for e in response.context["events"]]
    assert sorted(kinds) == ["decision", "label", "label", "skip", "undone"]
    assert "<s>negative</s>" in text and "“not sure”" in text
    assert "decided <strong>positive</strong>" in text
    assert "positive, confidence 0.73" in text and "yes (never trained on)" in text
    assert response.context["final"] == "positive"


def test_send_to_review_and_a_decision_takes_it_off(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    client = logged_in(manager)
    client.post(_url(campaign), {"action": "review", "ids": [items[0].pk, items[3].pk]})
    assert review.review_items(campaign)[:2] == [items[0].pk, items[3].pk]
    page = client.get(reverse("campaign-review", args=[campaign.pk])).content.decode()
    assert f'id="review-{items[0].pk}"' in page
    assert _ids(client, campaign, review="requested") == [items[0].pk, items[3].pk]
    client.post(
        reverse("campaign-review", args=[campaign.pk]), {"item": items[0].pk, "value": "positive"}
    )
    assert review.review_items(campaign) == [items[3].pk]


def test_send_all_matching_to_review(campaign: Campaign, manager: Any, items: list[Item]) -> None:
    logged_in(manager).post(f"{_url(campaign)}?q=plain", {"action": "review", "all_matching": "1"})
    requested = Item.objects.filter(review_requested_at__isnull=False)
    assert sorted(requested.values_list("pk", flat=True)) == [i.pk for i in items[2:]]


def test_mark_gold_uses_the_final_label_and_refuses_items_without_one(
    campaign: Campaign, manager: Any, items: list[Item], people: tuple[Any, Any]
) -> None:
    a, b = people
    annotation.submit_label(items[2], a, "positive")
    annotation.submit_label(items[3], a, "positive")
    annotation.submit_label(items[3], b, "negative")
    post = {"action": "gold", "ids": [items[2].pk, items[3].pk, items[4].pk]}
    response = logged_in(manager).post(_url(campaign), post, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any("Marked 1 item(s) gold" in m for m in shown)
    assert any("2 item(s) have no final label" in m for m in shown)
    assert Item.objects.get(pk=items[2].pk).gold == "positive"
    assert Item.objects.get(pk=items[3].pk).gold == ""


def test_delete_asks_first(campaign: Campaign, manager: Any, items: list[Item]) -> None:
    client = logged_in(manager)
    response = client.post(_url(campaign), {"action": "delete", "ids": [items[1].pk]})
    assert response.status_code == 200
    assert 'id="confirm-delete"' in response.content.decode()
    assert Item.objects.filter(campaign=campaign).count() == 5


def _assert_pool_matches_items(campaign: Campaign) -> None:
    """Positions are 0..n-1 and the stored chunks tile them with each item's own vector."""
    rows = list(
        Item.objects.filter(campaign=campaign).order_by("position").values_list("position", "text")
    )
    assert [p for p, _ in rows] == list(range(len(rows)))
    pool = embeddings(campaign)
    assert pool is not None
    np.testing.assert_allclose(pool.matrix, FakeEmbedder().encode([t for _, t in rows]))
    keys = list(
        Item.objects.filter(campaign=campaign)
        .order_by("position")
        .values_list("text_sha256", flat=True)
    )
    for c in chunks.refs(campaign.pk, "fake-32", len(keys)):
        assert chunks.rows_digest(keys[c.start : c.stop]) == c.digest


def test_deleting_items_keeps_the_pool_and_the_loop_working(
    campaign: Campaign, manager: Any, annotator: Any, settings: Any
) -> None:
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 16  # several chunks: some move, some are rewritten
    items, _ = embedded_campaign(campaign, 60)
    assert campaign_learner.update_learner(campaign.pk).status
    victim = items[5]
    annotation.submit_label(victim, annotator, "positive")
    annotation.submit_label(items[6], annotator, "negative")
    version = Campaign.objects.get(pk=campaign.pk).label_version
    doomed = [victim.pk, items[20].pk, items[21].pk, items[59].pk]
    client = logged_in(manager)
    response = client.post(
        _url(campaign), {"action": "delete", "ids": doomed, "confirm": "1"}, follow=True
    )
    assert any(
        "Deleted 4 item(s) with their 1 label(s)" in str(m) for m in response.context["messages"]
    )
    assert not Item.objects.filter(pk__in=doomed).exists()
    assert not Label.objects.filter(item_id=victim.pk).exists()
    assert not Assignment.objects.filter(item_id=victim.pk).exists()
    after = Campaign.objects.get(pk=campaign.pk)
    assert after.label_version > version and after.learner_pending
    _assert_pool_matches_items(campaign)
    assert not EmbeddingJob.objects.filter(status="queued").exists()  # nothing to re-embed

    # The learner rebuilds without them, and labeling carries on.
    out = campaign_learner.update_learner(campaign.pk)
    assert out.status != "no-embeddings"
    assert not set(doomed) & set(campaign_learner.ranked_queue(campaign))
    for _ in range(3):
        assignment = annotation.next_assignment(after, annotator)
        assert assignment is not None and assignment.item_id not in doomed
        annotation.submit_label(assignment.item, annotator, "positive")
    campaign_learner.update_learner(campaign.pk)


def test_deleting_an_upload_deletes_its_items_and_labels(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    embedded_campaign(campaign, 10)
    first = Upload.objects.get(campaign=campaign)
    import_file(campaign, manager, b"text\nwrong one\nwrong two\n", "wrong.csv")
    wrong = Upload.objects.exclude(pk=first.pk).get()
    embedding_jobs.run_embedding_job(EmbeddingJob.objects.get(status="queued").pk)
    for item in Item.objects.filter(upload=wrong):
        annotation.submit_label(item, annotator, "negative")
    client = logged_in(manager)
    confirm = client.post(_url(campaign), {"action": "delete_upload", "upload": wrong.pk})
    assert "the upload “wrong.csv”" in confirm.content.decode()
    response = client.post(
        _url(campaign), {"action": "delete_upload", "upload": wrong.pk, "confirm": "1"}
    )
    assert response.status_code == 302
    assert not Upload.objects.filter(pk=wrong.pk).exists()
    assert Item.objects.filter(campaign=campaign).count() == 10
    assert not Label.objects.filter(item__campaign=campaign).exists()
    assert Campaign.objects.get(pk=campaign.pk).learner_pending
    _assert_pool_matches_items(campaign)  # the upload's rows were the last: nothing moved


def test_no_deletion_while_embedding_runs(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    assert EmbeddingJob.objects.filter(campaign=campaign, status="queued").exists()
    response = logged_in(manager).post(
        _url(campaign), {"action": "delete", "ids": [items[0].pk], "confirm": "1"}, follow=True
    )
    assert any("being embedded" in str(m) for m in response.context["messages"])
    assert Item.objects.filter(campaign=campaign).count() == 5


def test_deleting_all_matching_a_filter(
    campaign: Campaign, manager: Any, items: list[Item]
) -> None:
    EmbeddingJob.objects.filter(campaign=campaign).update(status="failed")
    logged_in(manager).post(
        f"{_url(campaign)}?gold=yes", {"action": "delete", "all_matching": "1", "confirm": "1"}
    )
    left = Item.objects.filter(campaign=campaign).order_by("position")
    assert [(i.position, i.text) for i in left] == [
        (0, "Plain text one"),
        (1, "Plain text two"),
        (2, "Plain text three"),
    ]
    # The embedding of what is left is asked for again (the last job failed).
    assert EmbeddingJob.objects.filter(campaign=campaign, status="queued").exists()


def test_move_embeddings_rewrites_only_chunks_with_deleted_rows(
    campaign: Campaign, settings: Any
) -> None:
    settings.CARVE_EMBEDDING_CHUNK_ROWS = 10
    items, _ = embedded_campaign(campaign, 40)
    before = dict(EmbeddingChunk.objects.filter(campaign=campaign).values_list("pk", "start"))
    items_page.delete_items(campaign, Item.objects.filter(pk=items[12].pk))
    after = dict(EmbeddingChunk.objects.filter(campaign=campaign).values_list("pk", "start"))
    kept = set(before) & set(after)
    assert len(kept) == len(before) - 1 or len(before) == 1
    _assert_pool_matches_items(campaign)
