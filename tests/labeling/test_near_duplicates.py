"""Near-duplicates (docs/platform.md, "Near-duplicates"): the check after an upload is
embedded, the page and the API that merge or keep the pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling import annotation, campaign_learner, near_duplicates
from labeling.embeddings import chunks
from labeling.embeddings.embedders import FakeEmbedder
from labeling.embeddings.pool import embeddings
from labeling.imports import jobs as import_jobs
from labeling.models import (
    Campaign,
    Decision,
    EmbeddingChunk,
    EmbeddingJob,
    Item,
    Label,
    NearDuplicate,
    Upload,
)
from tests.support.clients import api_as, logged_in
from tests.support.processes import wait_for

DIM = 32
MODEL = "fake-32"


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return v / np.linalg.norm(v)


def _near(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from the unit vector ``base``."""
    noise = np.random.default_rng(seed).standard_normal(DIM)
    noise -= noise @ base * base
    noise /= np.linalg.norm(noise)
    return cosine * base + np.sqrt(1 - cosine**2) * noise


def _import(campaign: Campaign, texts: Sequence[str], threshold: float | None = None) -> Upload:
    """Import ``texts`` as one upload (the way the import job stores the threshold)."""
    body = "text\n" + "".join(f"{t}\n" for t in texts)
    job = import_jobs.start_import(
        campaign,
        campaign.created_by,
        body.encode(),
        f"u{Upload.objects.count()}.csv",
        background=False,
        near_duplicates=threshold,
    )
    assert job.status == "done", (job.errors, job.error)
    assert job.upload is not None
    return job.upload


def _embed(campaign: Campaign, vectors: dict[str, np.ndarray]) -> None:
    """Store the campaign's embedding matrix with the given vector per text (the others from
    FakeEmbedder), as one chunk, and mark its embedding jobs done."""
    rows = list(
        Item.objects.filter(campaign=campaign)
        .order_by("position")
        .values_list("text", "text_sha256")
    )
    fake = FakeEmbedder().encode([t for t, _ in rows])
    matrix = np.stack([vectors.get(t, fake[i]) for i, (t, _) in enumerate(rows)]).astype(np.float32)
    EmbeddingChunk.objects.filter(campaign=campaign).delete()
    chunks.write(campaign.pk, MODEL, 0, [k for _, k in rows], matrix)
    EmbeddingJob.objects.filter(campaign=campaign).update(
        status="done", model_name=MODEL, n_total=len(rows), n_done=len(rows)
    )


def _pairs(campaign: Campaign) -> set[tuple[str, str]]:
    return {
        (p.item.text, p.duplicate_of.text)
        for p in NearDuplicate.objects.filter(campaign=campaign).select_related(
            "item", "duplicate_of"
        )
    }


def _assert_pool_matches_items(campaign: Campaign, vectors: dict[str, np.ndarray]) -> None:
    """Positions are 0..n-1 and the stored rows are each item's own vector."""
    rows = list(
        Item.objects.filter(campaign=campaign).order_by("position").values_list("position", "text")
    )
    assert [p for p, _ in rows] == list(range(len(rows)))
    pool = embeddings(campaign)
    assert pool is not None
    fake = FakeEmbedder().encode([t for _, t in rows])
    expected = np.stack([vectors.get(t, fake[i]) for i, (_, t) in enumerate(rows)])
    np.testing.assert_allclose(pool.matrix, expected, atol=1e-6)


# --- the computation ---------------------------------------------------------------------


def test_nearest_earlier_is_the_brute_force_answer_in_small_blocks() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((700, 16)).astype(np.float32) * rng.uniform(0.1, 5, (700, 1))
    matrix = matrix.astype(np.float32)
    matrix[123] = 0.0  # a zero row is similar to nothing
    rows = np.array([0, 5, 64, 65, 123, 300, 301, 699, 128, 127])
    best, partner = near_duplicates.nearest_earlier(matrix, rows, block=64)

    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-30)
    for r, b, p in zip(rows, best, partner, strict=True):
        if r == 0:
            assert p == -1 and b == -np.inf
            continue
        sims = unit[:r] @ unit[r]
        assert p == int(np.argmax(sims)) and p < r
        assert b == pytest.approx(float(sims.max()), abs=1e-5)


# --- detection ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_planted_near_duplicates_are_found_above_the_threshold_only(campaign: Campaign) -> None:
    old = [f"old {i}" for i in range(30)]
    new = ["copy of old 3", "close to old 5", "new first", "new second", "unrelated"]
    base = {t: _unit(i) for i, t in enumerate(old + new)}
    vectors = dict(base)
    vectors["old 29"] = _near(base["old 28"], 0.99, 1)  # within the unchecked first upload
    vectors["copy of old 3"] = _near(base["old 3"], 0.97, 2)  # above 0.95
    vectors["close to old 5"] = _near(base["old 5"], 0.90, 3)  # below 0.95
    vectors["new second"] = _near(base["new first"], 0.999, 4)  # earlier item of its upload
    _import(campaign, old)
    upload = _import(campaign, new, threshold=0.95)
    later = _import(campaign, ["a later copy of old 3"])  # no threshold: never checked
    vectors["a later copy of old 3"] = _near(base["old 3"], 0.999, 5)

    _embed(campaign, vectors)
    assert near_duplicates.check_campaign(campaign.pk) == 2

    assert _pairs(campaign) == {("copy of old 3", "old 3"), ("new second", "new first")}
    pair = NearDuplicate.objects.get(item__text="copy of old 3")
    assert pair.similarity == pytest.approx(0.97, abs=1e-5) and pair.status == "open"
    upload.refresh_from_db()
    later.refresh_from_db()
    assert upload.near_duplicates_checked_at is not None
    assert later.near_duplicates_checked_at is None
    # Checked once: a second run (a redelivered task) adds nothing.
    assert near_duplicates.check_campaign(campaign.pk) == 0
    assert NearDuplicate.objects.count() == 2


@pytest.mark.django_db
def test_a_threshold_of_one_finds_identical_vectors(campaign: Campaign) -> None:
    base = _unit(7)
    _import(campaign, ["first"])
    _import(campaign, ["second", "third"], threshold=1.0)
    _embed(campaign, {"first": base, "second": base, "third": _near(base, 0.999, 1)})
    near_duplicates.check_campaign(campaign.pk)
    assert _pairs(campaign) == {("second", "first")}


@pytest.mark.django_db
def test_no_threshold_no_check(campaign: Campaign) -> None:
    base = _unit(1)
    _import(campaign, ["one"])
    upload = _import(campaign, ["two"])
    _embed(campaign, {"one": base, "two": base})
    assert near_duplicates.check_campaign(campaign.pk) == 0
    assert not NearDuplicate.objects.exists()
    upload.refresh_from_db()
    assert upload.near_duplicate_threshold is None and upload.near_duplicates_checked_at is None
    assert near_duplicates.pending_campaigns() == []


@pytest.mark.django_db
def test_the_check_waits_until_every_item_is_embedded(campaign: Campaign) -> None:
    base = _unit(1)
    _import(campaign, ["one"])
    _embed(campaign, {"one": base})
    upload = _import(campaign, ["two"], threshold=0.9)  # its embedding job is queued
    assert near_duplicates.pending_campaigns() == [campaign.pk]
    assert near_duplicates.check_campaign(campaign.pk) == 0
    upload.refresh_from_db()
    assert upload.near_duplicates_checked_at is None
    _embed(campaign, {"one": base, "two": base})
    assert near_duplicates.check_campaign(campaign.pk) == 1
    assert near_duplicates.pending_campaigns() == []


# --- merge and keep ----------------------------------------------------------------------


@pytest.fixture
def paired(campaign: Campaign, manager: Any, annotator: Any, django_user_model: Any) -> Any:
    """A campaign of 12 items whose last upload has two near-duplicates of earlier items,
    with labels; returns (vectors, pair of 'dup of item 2', pair of 'dup of item 7')."""
    Campaign.objects.filter(pk=campaign.pk).update(evaluation_size=0)
    campaign.refresh_from_db()
    other = django_user_model.objects.create_user("second")
    campaign.annotators.add(other)
    old = [f"item {i}" for i in range(10)]
    vectors = {t: _unit(i) for i, t in enumerate(old)}
    vectors["dup of item 2"] = _near(vectors["item 2"], 0.98, 1)
    vectors["dup of item 7"] = _near(vectors["item 7"], 0.97, 2)
    _import(campaign, old)
    _import(campaign, ["dup of item 2", "fresh", "dup of item 7"], threshold=0.95)
    _embed(campaign, vectors)
    assert near_duplicates.check_campaign(campaign.pk) == 2
    assert campaign_learner.update_learner(campaign.pk).status
    items = {i.text: i for i in Item.objects.filter(campaign=campaign)}
    # item 2 / its copy: the annotator labeled only the copy (moved); "second" labeled
    # both (the copy's label moves as a withdrawn one).
    annotation.submit_label(items["dup of item 2"], annotator, "positive")
    annotation.submit_label(items["dup of item 2"], other, "negative")
    annotation.submit_label(items["item 2"], other, "positive")
    Decision.objects.create(item=items["dup of item 2"], value="positive", decided_by=manager)
    first = NearDuplicate.objects.get(item__text="dup of item 2")
    second = NearDuplicate.objects.get(item__text="dup of item 7")
    return vectors, first, second


@pytest.mark.django_db
def test_merge_moves_labels_deletes_the_later_item_and_keeps_the_pool(
    campaign: Campaign, manager: Any, annotator: Any, paired: Any
) -> None:
    vectors, first, second = paired
    kept_id, doomed_id = first.duplicate_of_id, first.item_id
    version = Campaign.objects.get(pk=campaign.pk).label_version
    response = api_as(manager).post(
        f"/api/v1/campaigns/{campaign.pk}/near-duplicates/merge/",
        {"ids": [first.pk, 999_999]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["merged"] == 1 and body["not_open"] == [999_999]
    assert (body["labels_moved"], body["labels_withdrawn"]) == (1, 1)
    assert (body["decisions_moved"], body["decisions_dropped"]) == (1, 0)
    assert "moved 1 label(s)" in body["detail"] and "1 as withdrawn" in body["detail"]
    # No label row is lost: the second annotator's label on the copy is history of the kept
    # item, withdrawn, and their own label there stays the active one.
    withdrawn = Label.objects.get(item_id=kept_id, annotator__username="second", value="negative")
    assert withdrawn.undone_at is not None

    assert not Item.objects.filter(pk=doomed_id).exists()
    kept = dict(
        Label.objects.filter(item_id=kept_id, undone_at__isnull=True).values_list(
            "annotator__username", "value"
        )
    )
    assert kept == {"annotator": "positive", "second": "positive"}
    assert Decision.objects.filter(item_id=kept_id).count() == 1
    assert NearDuplicate.objects.filter(pk=second.pk, status="open").exists()
    assert not NearDuplicate.objects.filter(pk=first.pk).exists()  # gone with its item

    # Positions 0..n-1, every stored row the vector of the item now at its position.
    del vectors["dup of item 2"]
    _assert_pool_matches_items(campaign, vectors)
    after = Campaign.objects.get(pk=campaign.pk)
    assert after.label_version > version and after.learner_pending
    out = campaign_learner.update_learner(campaign.pk)
    assert out.status == "updated" and out.snapshot is not None
    training_items = {row[0] for row in out.snapshot.training}
    assert kept_id in training_items and doomed_id not in training_items
    # The annotator is not served the item they labeled through the merge.
    for _ in range(3):
        served = annotation.next_assignment(after, annotator)
        assert served is not None and served.item_id not in (kept_id, doomed_id)
        annotation.submit_label(served.item, annotator, "negative")


@pytest.mark.django_db
def test_the_page_lists_pairs_side_by_side_and_merges_and_keeps_with_htmx(
    campaign: Campaign, manager: Any, paired: Any
) -> None:
    _, first, second = paired
    client = logged_in(manager)
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    page = client.get(url).content.decode()
    assert "2 open pairs" in page
    assert "dup of item 2" in page and "item 7" in page and "0.980" in page
    assert "positive (annotator)" in page  # the labels each item has
    part = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<div id="near-duplicates-results">')

    kept = client.post(url, {"one": f"keep:{second.pk}"}, HTTP_HX_REQUEST="true")
    assert kept.status_code == 200
    assert "Kept both items of 1 pair(s)." in kept.content.decode()
    assert NearDuplicate.objects.get(pk=second.pk).status == "kept"

    merged = client.post(url, {"action": "merge", "all_open": "1"}, HTTP_HX_REQUEST="true")
    text = merged.content.decode()
    assert "Merged 1 near-duplicate pair(s): moved 1 label(s)" in text and "1 as withdrawn" in text
    assert "No open near-duplicate pairs." in text
    assert not Item.objects.filter(text="dup of item 2").exists()
    assert Item.objects.filter(text="dup of item 7").exists()  # kept

    # The campaign page reports the upload's count and links here.
    detail = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "0 near-duplicates found" in detail


@pytest.mark.django_db
def test_the_campaign_page_links_the_count(campaign: Campaign, manager: Any, paired: Any) -> None:
    detail = logged_in(manager).get(reverse("campaign-detail", args=[campaign.pk]))
    html = detail.content.decode()
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    assert f'href="{url}"' in html and "2 near-duplicates found" in html
    assert "not checked" in html  # the first upload had no threshold


@pytest.mark.django_db
def test_api_lists_and_keeps(campaign: Campaign, manager: Any, paired: Any) -> None:
    _, first, second = paired
    client = api_as(manager)
    listed = client.get(f"/api/v1/campaigns/{campaign.pk}/near-duplicates/?limit=1")
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 2 and len(body["results"]) == 1
    top = body["results"][0]
    assert top["id"] == first.pk and top["similarity"] == pytest.approx(0.98, abs=1e-5)
    assert top["item"]["text"] == "dup of item 2" and top["duplicate_of"]["text"] == "item 2"
    assert top["item"]["labels"] == {"annotator": "positive", "second": "negative"}
    assert top["duplicate_of"]["labels"] == {"second": "positive"}

    kept = client.post(
        f"/api/v1/campaigns/{campaign.pk}/near-duplicates/keep/",
        {"ids": [second.pk, second.pk]},
        format="json",
    )
    assert kept.json() == {"kept": 1, "not_open": []}
    again = client.post(
        f"/api/v1/campaigns/{campaign.pk}/near-duplicates/keep/",
        {"ids": [second.pk]},
        format="json",
    )
    assert again.json() == {"kept": 0, "not_open": [second.pk]}
    open_ids = [
        r["id"]
        for r in client.get(f"/api/v1/campaigns/{campaign.pk}/near-duplicates/").json()["results"]
    ]
    assert open_ids == [first.pk]
    kept_ids = client.get(f"/api/v1/campaigns/{campaign.pk}/near-duplicates/?status=kept").json()
    assert [r["id"] for r in kept_ids["results"]] == [second.pk]
    for bad in ({"ids": []}, {"ids": ["x"]}, {}, {"ids": [0]}):
        r = client.post(
            f"/api/v1/campaigns/{campaign.pk}/near-duplicates/merge/", bad, format="json"
        )
        assert r.status_code == 400, bad
    assert (
        client.get(f"/api/v1/campaigns/{campaign.pk}/near-duplicates/?status=x").status_code == 400
    )


@pytest.mark.django_db
def test_no_merge_while_embedding_runs(campaign: Campaign, manager: Any, paired: Any) -> None:
    _, first, _ = paired
    EmbeddingJob.objects.create(campaign=campaign, model_name=MODEL)  # queued
    r = api_as(manager).post(
        f"/api/v1/campaigns/{campaign.pk}/near-duplicates/merge/",
        {"ids": [first.pk]},
        format="json",
    )
    assert r.status_code == 409 and "being embedded" in r.json()["detail"]
    # Nothing changed, not even the labels moved before the deletion was refused.
    assert Item.objects.filter(pk=first.item_id).exists()
    assert Label.objects.filter(item_id=first.item_id).count() == 2
    assert NearDuplicate.objects.get(pk=first.pk).status == "open"


@pytest.mark.django_db
def test_only_managers(
    campaign: Campaign, annotator: Any, outsider: Any, other_manager: Any, paired: Any
) -> None:
    _, first, _ = paired
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    api = f"/api/v1/campaigns/{campaign.pk}/near-duplicates/"
    assert logged_in(annotator).get(url).status_code == 403
    assert logged_in(outsider).get(url).status_code == 404
    assert logged_in(other_manager).get(url).status_code == 404
    assert logged_in(annotator).post(url, {"one": f"merge:{first.pk}"}).status_code == 403
    assert api_as(annotator).get(api).status_code == 403
    assert api_as(outsider).get(api).status_code == 404
    post = api_as(annotator).post(f"{api}merge/", {"ids": [first.pk]}, format="json")
    assert post.status_code == 403
    post = api_as(annotator).post(f"{api}keep/", {"ids": [first.pk]}, format="json")
    assert post.status_code == 403
    assert NearDuplicate.objects.get(pk=first.pk).status == "open"
    assert Item.objects.filter(pk=first.item_id).exists()


@pytest.mark.django_db
def test_bad_page_input_is_a_clear_400(campaign: Campaign, manager: Any, paired: Any) -> None:
    client = logged_in(manager)
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    assert client.get(url, {"page": "x"}).status_code == 400
    for bad in (
        {"action": "merge"},
        {"action": "explode", "ids": "1"},
        {"one": "merge:x"},
        {"action": "keep", "ids": "1 two"},
        # Past int()'s 4,300 digits, and past the id column (these were 500s).
        {"action": "keep", "ids": "9" * 5000},
        {"one": "keep:" + "9" * 19},
        {"one": "merge:" + "9" * 19},
    ):
        r = client.post(url, bad)
        assert r.status_code == 400, bad
    assert NearDuplicate.objects.filter(status="open").count() == 2


# --- the option at import ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["0.3", "1.5", "abc", "nan"])
def test_a_bad_threshold_is_a_400(campaign: Campaign, manager: Any, bad: str) -> None:
    api = api_as(manager)
    url = f"/api/v1/campaigns/{campaign.pk}/imports/"
    as_file = api.post(
        url,
        {"file": SimpleUploadedFile("a.csv", b"text\nhello\n"), "near_duplicates": bad},
        format="multipart",
    )
    assert as_file.status_code == 400 and "near_duplicates" in as_file.json()
    value: Any = bad if bad in ("abc", "nan") else float(bad)
    as_json = api.post(url, {"items": [{"text": "hello"}], "near_duplicates": value}, format="json")
    assert as_json.status_code == 400 and "near_duplicates" in as_json.json()
    web = logged_in(manager).post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"file": SimpleUploadedFile("a.csv", b"text\nhello\n"), "near_duplicates": bad},
    )
    assert web.status_code == 400
    assert not Item.objects.exists() and not Upload.objects.exists()


@pytest.mark.django_db
def test_the_threshold_reaches_the_upload_from_the_page_and_the_api(
    campaign: Campaign, manager: Any
) -> None:
    web = logged_in(manager).post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"file": SimpleUploadedFile("a.csv", b"text\nhello\n"), "near_duplicates": "0.93"},
    )
    assert web.status_code == 302
    assert Upload.objects.get(filename="a.csv").near_duplicate_threshold == 0.93
    api = api_as(manager)
    r = api.post(
        f"/api/v1/campaigns/{campaign.pk}/imports/",
        {"items": [{"text": "bye"}], "near_duplicates": 0.9},
        format="json",
    )
    assert r.status_code == 201 and r.json()["result"]["near_duplicates"] == 0.9
    assert Upload.objects.get(pk=r.json()["upload"]).near_duplicate_threshold == 0.9
    plain = api.post(
        f"/api/v1/campaigns/{campaign.pk}/imports/", {"items": [{"text": "no"}]}, format="json"
    )
    assert "near_duplicates" not in plain.json()["result"]
    assert Upload.objects.get(pk=plain.json()["upload"]).near_duplicate_threshold is None
    # A queued (background) job carries the option without showing it as a result.
    queued = api.post(
        f"/api/v1/campaigns/{campaign.pk}/imports/",
        {"items": [{"text": "later"}], "near_duplicates": 0.8, "background": True},
        format="json",
    )
    assert queued.status_code == 202 and queued.json()["result"] is None
    import_jobs.run_import_job(queued.json()["id"])
    assert (
        Upload.objects.get(filename="items.jsonl", items__text="later").near_duplicate_threshold
        == 0.8
    )


# --- through a real worker ---------------------------------------------------------------


def _close_texts() -> tuple[list[str], list[str], float]:
    """Texts whose FakeEmbedder vectors hold a few pairs of cosine >= 0.6 (found by search,
    deterministic): an earlier batch, a later batch, and a threshold between the pairs."""
    candidates = [f"sentence {i}" for i in range(400)]
    unit = FakeEmbedder().encode(candidates)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1)
    i, j = np.unravel_index(np.argsort(sims, axis=None)[::-1][:6:2], sims.shape)
    threshold = float(sims[i[-1], j[-1]]) - 0.01
    assert threshold >= 0.5
    later = sorted({candidates[max(a, b)] for a, b in zip(i, j, strict=True)})
    earlier = [t for t in candidates if t not in later]
    return earlier, later, threshold


def _expected(campaign: Campaign, upload: Upload) -> set[tuple[str, str]]:
    """The brute-force answer over the items' FakeEmbedder vectors, in position order."""
    rows = list(
        Item.objects.filter(campaign=campaign).order_by("position").values_list("text", "upload_id")
    )
    unit = FakeEmbedder().encode([t for t, _ in rows])
    found = set()
    assert upload.near_duplicate_threshold is not None
    for r, (text, up) in enumerate(rows):
        if up != upload.pk or r == 0:
            continue
        sims = unit[:r] @ unit[r]
        if sims.max() >= upload.near_duplicate_threshold:
            found.add((text, rows[int(np.argmax(sims))][0]))
    return found


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_an_api_import_with_a_threshold_is_checked_by_a_worker(
    campaign: Campaign, manager: Any, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker("nd")
    earlier, later, threshold = _close_texts()
    api = api_as(manager)
    url = f"/api/v1/campaigns/{campaign.pk}/imports/"
    first = api.post(url, {"items": [{"text": t} for t in earlier]}, format="json")
    assert first.status_code == 201
    second = api.post(
        url,
        {"items": [{"text": t} for t in later + ["sentence 999"]], "near_duplicates": threshold},
        format="json",
    )
    assert second.status_code == 201, second.content
    upload = Upload.objects.get(pk=second.json()["upload"])

    def checked() -> bool:
        upload.refresh_from_db()
        return upload.near_duplicates_checked_at is not None

    wait_for(checked, 120, "the near-duplicate check", worker.log)
    expected = _expected(campaign, upload)
    assert expected  # the search planted some
    assert _pairs(campaign) == expected
    listed = api.get(f"/api/v1/campaigns/{campaign.pk}/near-duplicates/").json()
    assert listed["count"] == len(expected)
    assert all(r["similarity"] >= threshold for r in listed["results"])


@pytest.mark.django_db
def test_the_page_says_why_it_cannot_merge_while_embedding(
    campaign: Campaign, manager: Any, paired: Any
) -> None:
    _, first, _ = paired
    EmbeddingJob.objects.create(campaign=campaign, model_name=MODEL)  # queued
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    r = logged_in(manager).post(url, {"one": f"merge:{first.pk}"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 400 and "being embedded" in r.content.decode()
    assert Item.objects.filter(pk=first.item_id).exists()


@pytest.mark.django_db
def test_a_chain_merges_into_the_earliest_item(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(evaluation_size=0)
    a = _unit(1)
    b = _near(a, 0.97, 2)
    vectors = {"a": a, "b": b, "c": _near(b, 0.99, 3)}
    _import(campaign, ["a", "x"])
    _import(campaign, ["b", "c"], threshold=0.95)
    Item.objects.filter(text="c").update(gold="positive")
    _embed(campaign, vectors)
    near_duplicates.check_campaign(campaign.pk)
    assert _pairs(campaign) == {("b", "a"), ("c", "b")}
    annotation.submit_label(Item.objects.get(text="c"), annotator, "negative")
    ids = list(NearDuplicate.objects.values_list("pk", flat=True))
    merged = near_duplicates.merge(campaign, ids)
    assert (merged.pairs, merged.labels_moved, merged.labels_withdrawn) == (2, 1, 0)
    assert list(Item.objects.order_by("position").values_list("text", "position")) == [
        ("a", 0),
        ("x", 1),
    ]
    kept = Item.objects.get(text="a")
    assert kept.gold == "positive"
    assert list(kept.labels.values_list("annotator__username", "value")) == [
        ("annotator", "negative")
    ]
    _assert_pool_matches_items(campaign, vectors)


@pytest.mark.django_db
def test_all_open_acts_on_a_batch_and_says_how_many_are_left(
    campaign: Campaign, manager: Any, paired: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(near_duplicates, "MERGE_BATCH", 1)
    client = logged_in(manager)
    url = reverse("campaign-near-duplicates", args=[campaign.pk])
    first = client.post(url, {"action": "keep", "all_open": "1"}, HTTP_HX_REQUEST="true")
    assert "Kept both items of 1 pair(s)." in first.content.decode()
    assert "1 open pair(s) left" in first.content.decode()
    assert NearDuplicate.objects.filter(status="open").count() == 1
    second = client.post(url, {"action": "keep", "all_open": "1"}, HTTP_HX_REQUEST="true")
    assert "open pair(s) left" not in second.content.decode()
    assert not NearDuplicate.objects.filter(status="open").exists()


@pytest.mark.django_db
def test_the_resend_sweep_sends_a_lost_check_again(
    campaign: Campaign, settings: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from labeling import resend, tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.check_near_duplicates, "delay", sent.append)
    monkeypatch.setattr(tasks.embed_campaign, "delay", lambda *a: None)
    _import(campaign, ["one"])
    upload = _import(campaign, ["two"], threshold=0.9)
    old = timezone.now() - timedelta(seconds=settings.CARVE_RESEND_SECONDS + 1)
    Upload.objects.filter(pk=upload.pk).update(created_at=old)
    resend.sweep()
    assert sent == []  # the embedding job is still active: its end sends the check
    EmbeddingJob.objects.filter(campaign=campaign).update(status="done")
    resend.sweep()
    assert sent == [campaign.pk]
    Upload.objects.filter(pk=upload.pk).update(near_duplicates_checked_at=timezone.now())
    resend.sweep()
    assert sent == [campaign.pk]  # checked: nothing more
