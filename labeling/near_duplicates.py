"""Near-duplicates (docs/platform.md, "Near-duplicates"): items of an upload whose embedding
is almost that of an earlier item, found once the upload is embedded, then merged or kept.

An upload imported with a threshold (``Upload.near_duplicate_threshold``) is checked once the
campaign's embeddings cover its items (a finished embedding job sends
:func:`check_campaign`): each new item's nearest earlier item (lower position: earlier
uploads, and the items before it in its own upload) by cosine similarity, in blocks of
:data:`BLOCK_ROWS` rows so memory stays bounded whatever the pool size. A pair at or above
the threshold is stored as a :class:`~labeling.models.NearDuplicate` (the later item first).
``near_duplicates_checked_at`` makes the check happen once.

Merging keeps the earlier item: the later one's labels move to it where that annotator has
not labeled it yet (else they move as withdrawn labels, history that is never trained on,
and are counted: no label row is deleted), then the later item is deleted by
the items page's deletion (:func:`labeling.items_page.delete_items`), which renumbers the
positions, moves the embedding rows and rebuilds the learner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from numpy.typing import NDArray

from labeling import items_page, queue
from labeling.embeddings.pool import Pool, embeddings
from labeling.models import Assignment, Campaign, Decision, Item, Label, NearDuplicate, Upload

logger = logging.getLogger(__name__)

#: Rows of each block of the similarity computation: two 2048-row blocks give a 16 MB
#: product, and the normalised copies of the blocks are as small.
BLOCK_ROWS = 2048
#: Float32 dot products of unit vectors can miss 1.0 by a few ulps.
TOLERANCE = 1e-6
# Ids per IN (...) query: under SQLite's bound-parameter limit at any number of pairs.
ID_BATCH = 10_000
# Pairs merged per request ("all open" on the page): each costs a few queries, so a bigger
# batch would outlast an HTTP timeout; the page says how many remain.
MERGE_BATCH = 500
MIN_THRESHOLD, MAX_THRESHOLD = 0.5, 1.0
Status = NearDuplicate.Status


# --- the computation ---------------------------------------------------------------------


def _unit(block: NDArray[np.float32]) -> NDArray[np.float32]:
    """The rows of ``block`` scaled to unit length (zero rows stay zero), as a new array."""
    out = np.array(block, dtype=np.float32, copy=True)
    norms = np.linalg.norm(out, axis=1)
    norms[norms == 0] = 1.0
    out /= norms[:, None]
    return out


def nearest_earlier(
    matrix: NDArray[np.float32], rows: Sequence[int] | NDArray[np.intp], block: int = BLOCK_ROWS
) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
    """For each row ``r`` of ``rows``: the most similar row of ``matrix`` before it (rows
    ``0..r-1``) by cosine similarity, and that similarity.

    Returns ``(similarity, partner)``, both of shape (len(rows),); a row with nothing before
    it gets similarity -inf and partner -1. Computed in ``block`` x ``block`` products of
    L2-normalised float32 rows, so memory is O(block x (block + dim)) beyond the inputs.
    """
    wanted = np.asarray(rows, dtype=np.intp)
    order = np.argsort(wanted, kind="stable")
    best = np.full(len(wanted), -np.inf, dtype=np.float32)
    partner = np.full(len(wanted), -1, dtype=np.intp)
    for at in range(0, len(wanted), block):
        chosen = order[at : at + block]
        queries = wanted[chosen]
        q = _unit(matrix[queries])
        top = int(queries.max())  # no column at or after the last query row can count
        q_best = np.full(len(chosen), -np.inf, dtype=np.float32)
        q_partner = np.full(len(chosen), -1, dtype=np.intp)
        for start in range(0, top, block):
            stop = min(start + block, top)
            sims = q @ _unit(matrix[start:stop]).T
            if stop > int(queries.min()):  # some columns are not earlier than some queries
                columns = np.arange(start, stop)
                sims[columns[None, :] >= queries[:, None]] = -np.inf
            arg = np.argmax(sims, axis=1)
            val = sims[np.arange(len(chosen)), arg]
            better = val > q_best
            q_best[better] = val[better]
            q_partner[better] = arg[better] + start
        best[chosen] = q_best
        partner[chosen] = q_partner
    return best, partner


# --- checking uploads --------------------------------------------------------------------


def pending_uploads(campaign_id: int) -> QuerySet[Upload]:
    """The campaign's uploads with a threshold that were not checked yet."""
    return Upload.objects.filter(
        campaign_id=campaign_id,
        near_duplicate_threshold__isnull=False,
        near_duplicates_checked_at__isnull=True,
    ).order_by("pk")


def request_check(campaign_id: int) -> bool:
    """Send :func:`check_campaign` as a task if an upload of the campaign waits for it (an
    embedding job finished). Returns whether a message was sent."""
    if not pending_uploads(campaign_id).exists():
        return False
    return queue.try_send(queue.NEAR_DUPLICATES, campaign_id)


def pending_campaigns(older_than: float = 0.0) -> list[int]:
    """Campaigns with an upload to check (made at least ``older_than`` seconds ago): what a
    starting worker and the resend sweep send again (a campaign whose items are not all
    embedded yet does nothing until its job finishes)."""
    uploads = Upload.objects.filter(
        near_duplicate_threshold__isnull=False,
        near_duplicates_checked_at__isnull=True,
        created_at__lte=timezone.now() - timedelta(seconds=older_than),
    )
    return sorted(set(uploads.values_list("campaign_id", flat=True)))


def check_campaign(campaign_id: int) -> int:
    """Check every pending upload of the campaign whose items are all embedded. Returns the
    pairs stored. Idempotent: an upload is checked once (``near_duplicates_checked_at``)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return 0
    uploads = list(pending_uploads(campaign_id))
    if not uploads:
        return 0
    pool = embeddings(campaign)
    if pool is None:
        return 0  # items are still being embedded: the job that finishes sends this again
    return sum(check_upload(campaign, upload, pool) for upload in uploads)


def check_upload(campaign: Campaign, upload: Upload, pool: Pool) -> int:
    """Find and store the near-duplicates of ``upload``'s items; returns the pairs stored
    (0 also when another run checked it first, or the pool no longer holds its items)."""
    threshold = upload.near_duplicate_threshold
    if threshold is None:
        return 0
    ids = list(Item.objects.filter(upload=upload).order_by("position").values_list("pk", flat=True))
    rows = pool.locate(ids)
    if (rows < 0).any():
        logger.info("upload %s: items not in the pool yet; checked later", upload.pk)
        return 0
    similarity, partner = nearest_earlier(pool.matrix, rows)
    found = [
        (item_id, int(pool.items[p]), float(min(s, 1.0)))
        for item_id, s, p in zip(ids, similarity, partner, strict=True)
        if p >= 0 and s >= threshold - TOLERANCE
    ]
    with transaction.atomic():
        # The lock item deletion takes: the items named here cannot vanish before the insert.
        Campaign.objects.select_for_update().filter(pk=campaign.pk).first()
        mine = Upload.objects.filter(pk=upload.pk, near_duplicates_checked_at__isnull=True)
        if not mine.update(near_duplicates_checked_at=timezone.now()):
            return 0  # checked by another run meanwhile
        named = sorted({i for pair in found for i in pair[:2]})
        alive: set[int] = set()
        for at in range(0, len(named), ID_BATCH):  # within SQLite's parameter limit
            alive.update(
                Item.objects.filter(
                    pk__in=named[at : at + ID_BATCH], campaign=campaign
                ).values_list("pk", flat=True)
            )
        new_pairs = [
            NearDuplicate(campaign=campaign, item_id=item, duplicate_of_id=earlier, similarity=sim)
            for item, earlier, sim in found
            if item in alive and earlier in alive
        ]
        NearDuplicate.objects.bulk_create(new_pairs, batch_size=1000, ignore_conflicts=True)
    logger.info("upload %s: %d near-duplicate(s) at >= %.3f", upload.pk, len(new_pairs), threshold)
    return len(new_pairs)


# --- merge or keep -----------------------------------------------------------------------


@dataclass(frozen=True)
class Merged:
    """What a merge did: pairs merged (their later items deleted), labels moved to the kept
    items, labels moved as withdrawn (the annotator had labeled the kept item already),
    decisions moved and dropped (the kept item had its own), and the ids asked for that were
    not open pairs of the campaign."""

    pairs: int
    labels_moved: int
    labels_withdrawn: int
    decisions_moved: int
    decisions_dropped: int
    not_open: list[int]

    def describe(self) -> str:
        text = (
            f"Merged {self.pairs} near-duplicate pair(s): moved {self.labels_moved} label(s) "
            f"to the items kept, and {self.labels_withdrawn} as withdrawn labels (that "
            "annotator had labeled the item kept already; kept in its history)."
        )
        if self.decisions_moved or self.decisions_dropped:
            text += (
                f" Decisions: {self.decisions_moved} moved, {self.decisions_dropped} dropped "
                "(the item kept had its own)."
            )
        if self.not_open:
            text += f" {len(self.not_open)} pair(s) were not open (merged or kept already)."
        return text


def open_pairs(campaign: Campaign) -> QuerySet[NearDuplicate]:
    return NearDuplicate.objects.filter(campaign=campaign, status=Status.OPEN)


def merge(campaign: Campaign, pair_ids: Iterable[int]) -> Merged:
    """Merge the open pairs ``pair_ids`` of ``campaign``: all or nothing, in one transaction.

    Raises :class:`labeling.items_page.EmbeddingBusy` (nothing changed) while an embedding
    job of the campaign is queued or running, as deleting items does.
    """
    wanted = list(dict.fromkeys(pair_ids))
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(pk=campaign.pk).first()
        pairs = list(
            open_pairs(campaign)
            .filter(pk__in=wanted)
            .select_related("item", "duplicate_of")
            .order_by("-item__position", "pk")
        )
        # The latest items first: in a chain c -> b -> a, c's labels reach b before b's
        # (with them) move on to a.
        # What the later items hold now: counted where it ends up (in a chain a label may
        # move twice, or move and then be withdrawn).
        later_ids = [pair.item_id for pair in pairs]
        labels = dict(
            Label.objects.filter(item_id__in=later_ids, undone_at__isnull=True).values_list(
                "pk", "item_id"
            )
        )
        decisions = dict(
            Decision.objects.filter(item_id__in=later_ids).values_list("pk", "item_id")
        )
        doomed: set[int] = set()
        merged = []
        for pair in pairs:
            if pair.item_id in doomed or pair.duplicate_of_id in doomed:
                continue  # two pairs of one item: the first one merged it
            _move_labels(pair.item, pair.duplicate_of)
            _move_decisions(pair.item, pair.duplicate_of)
            # From the rows, not the loaded pair: an earlier merge of this call may have
            # given the later item its gold.
            gold = Item.objects.filter(pk=pair.item_id).values_list("gold", flat=True).first()
            if gold:
                Item.objects.filter(pk=pair.duplicate_of_id, gold="").update(gold=gold)
            doomed.add(pair.item_id)
            merged.append(pair.pk)
        ours = [pk for pk, item in labels.items() if item in doomed]
        moved = (
            Label.objects.filter(pk__in=ours, undone_at__isnull=True)
            .exclude(item_id__in=doomed)
            .count()
        )
        ours_d = [pk for pk, item in decisions.items() if item in doomed]
        d_moved = Decision.objects.filter(pk__in=ours_d).exclude(item_id__in=doomed).count()
        if doomed:
            # The pairs of the deleted items go with them (their rows reference the items).
            NearDuplicate.objects.filter(
                Q(item_id__in=doomed) | Q(duplicate_of_id__in=doomed)
            ).delete()
            items_page.delete_items(campaign, Item.objects.filter(pk__in=doomed))
    found = {pair.pk for pair in pairs}
    return Merged(
        len(merged),
        moved,
        len(ours) - moved,
        d_moved,
        len(ours_d) - d_moved,
        [pk for pk in wanted if pk not in found],
    )


def _move_labels(later: Item, earlier: Item) -> None:
    """Move ``later``'s active labels to ``earlier`` for the annotators who have no active
    label there (with their assignment, so the item is not served to them again); the others,
    and its undone labels, move as history (withdrawn: ``undone_at`` set), so no label row is
    deleted with ``later``."""
    have = set(
        Label.objects.filter(item=earlier, undone_at__isnull=True).values_list(
            "annotator_id", flat=True
        )
    )
    now = timezone.now()
    for label in Label.objects.filter(item=later, undone_at__isnull=True).order_by("pk"):
        if label.annotator_id in have:
            Label.objects.filter(pk=label.pk).update(item=earlier, undone_at=now)
            continue
        Label.objects.filter(pk=label.pk).update(item=earlier)
        have.add(label.annotator_id)
        held = Assignment.objects.filter(item=earlier, annotator_id=label.annotator_id)
        if held.exists():
            held.update(state=Assignment.State.LABELED)
        else:
            Assignment.objects.filter(item=later, annotator_id=label.annotator_id).update(
                item=earlier
            )
    Label.objects.filter(item=later, undone_at__isnull=False).update(item=earlier)


def _move_decisions(later: Item, earlier: Item) -> None:
    """A manager's decisions on ``later`` move to ``earlier`` if it has none (else they are
    deleted with ``later``)."""
    if not Decision.objects.filter(item=earlier).exists():
        Decision.objects.filter(item=later).update(item=earlier)


def keep(campaign: Campaign, pair_ids: Iterable[int]) -> tuple[int, list[int]]:
    """Mark the open pairs ``pair_ids`` kept (both items stay). Returns (how many, the ids
    that were not open pairs of the campaign)."""
    wanted = list(dict.fromkeys(pair_ids))
    with transaction.atomic():
        qs = open_pairs(campaign).filter(pk__in=wanted)
        found = set(qs.values_list("pk", flat=True))
        n = qs.update(status=Status.KEPT)
    return n, [pk for pk in wanted if pk not in found]


@dataclass(frozen=True)
class PairView:
    """An open pair as the page and the API show it: both items with their active labels."""

    pair: NearDuplicate
    item_labels: list[Label]
    duplicate_labels: list[Label]


def with_labels(pairs: Sequence[NearDuplicate]) -> list[PairView]:
    """``pairs`` (with ``item`` and ``duplicate_of`` loaded) and each item's active labels."""
    ids = {i for p in pairs for i in (p.item_id, p.duplicate_of_id)}
    labels: dict[int, list[Label]] = {}
    active = Label.objects.filter(item_id__in=ids, undone_at__isnull=True)
    for label in active.select_related("annotator").order_by("pk"):
        labels.setdefault(label.item_id, []).append(label)
    return [
        PairView(p, labels.get(p.item_id, []), labels.get(p.duplicate_of_id, [])) for p in pairs
    ]


def annotate_uploads(campaign: Campaign, uploads: list[Upload]) -> list[Upload]:
    """Set ``n_near_duplicates`` (open pairs whose later item came with it) on each upload,
    counted from the pairs (index on campaign and status), not from the items."""
    counts = dict(
        open_pairs(campaign)
        .order_by()
        .values_list("item__upload_id")
        .annotate(n=Count("pk"))
        .values_list("item__upload_id", "n")
    )
    for upload in uploads:
        upload.n_near_duplicates = counts.get(upload.pk, 0)  # type: ignore[attr-defined]
    return uploads
