"""Serving items and storing labels: leases, overlap, gold mix, double submissions, undo."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from labeling import annotation
from labeling.imports.write import import_file
from labeling.models import Assignment, Campaign, Item, Label

State = Assignment.State


def _items(campaign: Campaign, n: int, gold_every: int = 0) -> list[Item]:
    rows = [
        f"text {i},{'positive' if gold_every and i % gold_every == 0 else ''}" for i in range(n)
    ]
    import_file(campaign, campaign.created_by, ("text,label\n" + "\n".join(rows)).encode(), "d.csv")
    return list(Item.objects.filter(campaign=campaign).order_by("position"))


def _users(n: int) -> list[Any]:
    return [get_user_model().objects.create_user(f"a{i}") for i in range(n)]


@pytest.mark.django_db
class TestServing:
    def test_it_serves_items_in_pool_order_before_the_learner_ranks_them(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        items = _items(campaign, 3)
        campaign.gold_rate = 0
        first = annotator_next(campaign, annotator)
        assert first.item == items[0] and first.state == State.LEASED

    def test_the_same_lease_is_served_until_it_is_answered(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        _items(campaign, 3)
        assert annotator_next(campaign, annotator) == annotator_next(campaign, annotator)

    def test_the_learners_ranked_queue_comes_first(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        items = _items(campaign, 5)
        served = annotation.next_assignment(
            campaign, annotator, ranked=[items[3].pk, items[1].pk], rng=random.Random(0)
        )
        assert served is not None and served.item == items[3]

    def test_two_annotators_get_different_items(self, campaign: Campaign) -> None:
        _items(campaign, 2)
        a, b = _users(2)
        assert annotator_next(campaign, a).item != annotator_next(campaign, b).item

    def test_nothing_is_served_when_every_item_is_taken(self, campaign: Campaign) -> None:
        _items(campaign, 1)
        a, b = _users(2)
        annotator_next(campaign, a)
        assert annotation.next_assignment(campaign, b, rng=random.Random(0)) is None

    def test_an_expired_lease_is_reclaimed_by_someone_else(self, campaign: Campaign) -> None:
        (item,) = _items(campaign, 1)
        a, b = _users(2)
        lease = annotator_next(campaign, a)
        Assignment.objects.filter(pk=lease.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        taken = annotator_next(campaign, b)
        assert taken.item == item and taken.annotator == b

    def test_with_overlap_two_an_item_goes_to_two_annotators_but_not_three(
        self, campaign: Campaign
    ) -> None:
        campaign.overlap = 2
        campaign.save()
        (item,) = _items(campaign, 1)
        a, b, c = _users(3)
        assert annotator_next(campaign, a).item == item
        assert annotator_next(campaign, b).item == item
        assert annotation.next_assignment(campaign, c, rng=random.Random(0)) is None

    def test_an_annotator_never_gets_an_item_twice(self, campaign: Campaign) -> None:
        campaign.overlap = 2
        campaign.save()
        (item,) = _items(campaign, 1)
        (a,) = _users(1)
        annotation.submit_label(item, a, "positive")
        assert annotation.next_assignment(campaign, a, rng=random.Random(0)) is None

    def test_gold_items_are_mixed_in_at_the_configured_rate(self, campaign: Campaign) -> None:
        _items(campaign, 400, gold_every=10)  # 40 gold items
        campaign.gold_rate = 0.3
        rng = random.Random(1)
        users = _users(1)
        gold_served = 0
        for _ in range(200):
            served = annotation.next_assignment(campaign, users[0], rng=rng)
            assert served is not None
            gold_served += served.item.gold != ""
            annotation.skip(served.item, users[0])
        # 200 draws at 0.3; 40 gold items in all, so at most 40 can come up.
        assert 30 <= gold_served <= 40


def annotator_next(campaign: Campaign, user: Any) -> Assignment:
    served = annotation.next_assignment(campaign, user, rng=random.Random(0))
    assert served is not None
    return served


@pytest.mark.django_db
class TestLabels:
    def test_a_label_is_stored_and_closes_the_assignment(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        (item,) = _items(campaign, 1)
        annotator_next(campaign, annotator)
        out = annotation.submit_label(item, annotator, "negative", "sarcastic")
        assert out.created
        assert (out.label.value, out.label.comment) == ("negative", "sarcastic")
        assert Assignment.objects.get().state == State.LABELED

    def test_a_double_submission_is_stored_once(self, campaign: Campaign, annotator: Any) -> None:
        (item,) = _items(campaign, 1)
        first = annotation.submit_label(item, annotator, "negative")
        second = annotation.submit_label(item, annotator, "positive")
        assert not second.created and second.label == first.label
        assert Label.objects.count() == 1

    def test_a_label_outside_the_label_set_is_refused(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        (item,) = _items(campaign, 1)
        with pytest.raises(ValueError, match="'great' is not a label"):
            annotation.submit_label(item, annotator, "great")
        assert Label.objects.count() == 0

    def test_a_label_after_the_lease_expired_is_still_kept(self, campaign: Campaign) -> None:
        (item,) = _items(campaign, 1)
        a, b = _users(2)
        lease = annotator_next(campaign, a)
        Assignment.objects.filter(pk=lease.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        annotator_next(campaign, b)
        assert annotation.submit_label(item, a, "positive").created
        assert Label.objects.filter(item=item).count() == 1

    def test_undo_withdraws_the_latest_label_and_serves_its_item_again(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        first, second = _items(campaign, 2)
        annotation.submit_label(first, annotator, "positive")
        annotation.submit_label(second, annotator, "negative")
        undone = annotation.undo_last(campaign, annotator)
        assert undone is not None and undone.item == second and undone.undone_at is not None
        assert Label.objects.count() == 2  # kept, marked undone
        assert annotator_next(campaign, annotator).item == second
        relabel = annotation.submit_label(second, annotator, "positive")
        assert relabel.created and relabel.label.value == "positive"

    def test_undo_with_nothing_to_undo(self, campaign: Campaign, annotator: Any) -> None:
        assert annotation.undo_last(campaign, annotator) is None

    def test_skip_moves_on_without_a_label(self, campaign: Campaign, annotator: Any) -> None:
        first, second = _items(campaign, 2)
        annotator_next(campaign, annotator)
        annotation.skip(first, annotator)
        assert annotator_next(campaign, annotator).item == second
        assert Label.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("overlap", [1, 2])
def test_concurrent_claims_never_exceed_the_overlap(campaign: Campaign, overlap: int) -> None:
    """16 annotators claim at the same moment, from threads with their own connections."""
    campaign.overlap = overlap
    campaign.gold_rate = 0
    campaign.save()
    _items(campaign, 12)
    users = _users(16)
    barrier = threading.Barrier(len(users))
    served: dict[int, int | None] = {}
    errors: list[BaseException] = []

    def claim(user: Any) -> None:
        try:
            barrier.wait()
            got = annotation.next_assignment(campaign, user, rng=random.Random(user.pk))
            served[user.pk] = got.item_id if got else None
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    got = [item for item in served.values() if item is not None]
    counts = {item: got.count(item) for item in set(got)}
    assert max(counts.values()) <= overlap
    assert len(got) == min(len(users), 12 * overlap)  # everyone who could be served was


@pytest.mark.django_db
class TestStaleActions:
    def test_a_stale_skip_of_a_labeled_item_changes_nothing(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        (item,) = _items(campaign, 1)
        annotation.submit_label(item, annotator, "positive")
        assert not annotation.skip(item, annotator)
        assert Assignment.objects.get().state == State.LABELED
        (b,) = _users(1)
        assert annotation.next_assignment(campaign, b, rng=random.Random(0)) is None

    def test_an_annotator_gets_their_own_expired_lease_back(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        (item,) = _items(campaign, 1)
        lease = annotator_next(campaign, annotator)
        Assignment.objects.filter(pk=lease.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        again = annotator_next(campaign, annotator)
        assert again.pk == lease.pk and again.expires_at > timezone.now()

    def test_undo_names_its_label_so_a_double_click_withdraws_one(
        self, campaign: Campaign, annotator: Any
    ) -> None:
        first, second = _items(campaign, 2)
        annotation.submit_label(first, annotator, "positive")
        annotation.submit_label(second, annotator, "negative")
        assert annotation.undo_last(campaign, annotator, second.pk) is not None
        assert annotation.undo_last(campaign, annotator, second.pk) is None  # the double click
        assert Label.objects.filter(undone_at__isnull=True).count() == 1

    def test_undo_does_not_lease_an_item_someone_else_holds_now(self, campaign: Campaign) -> None:
        (item,) = _items(campaign, 1)
        a, b = _users(2)
        lease = annotator_next(campaign, a)
        Assignment.objects.filter(pk=lease.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        annotator_next(campaign, b)  # b holds the item now
        annotation.submit_label(item, a, "positive")  # a's late label is kept
        annotation.undo_last(campaign, a)
        assert Assignment.objects.get(annotator=a).state == State.SKIPPED
        assert annotation.current_assignment(campaign, a) is None
