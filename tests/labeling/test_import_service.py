"""Importing a file into a campaign: all or nothing, merged with what is already there."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings

from labeling.imports.parse import UploadRejected
from labeling.imports.write import describe, import_file, import_limits
from labeling.models import Campaign, Item, Upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign() -> Campaign:
    user = get_user_model().objects.create_user("manager", password="x")
    return Campaign.objects.create(name="Sentiment", created_by=user)


def test_import_creates_items_in_file_order(campaign: Campaign) -> None:
    data = b"text,label,src\nGood,positive,a\nBad,negative,b\n ,positive,c\nGood,,d\n"
    out = import_file(campaign, campaign.created_by, data, "first.csv")
    assert (out.n_created, out.n_existing) == (2, 0)
    items = list(Item.objects.filter(campaign=campaign))
    assert [(i.text, i.gold, i.position, i.metadata) for i in items] == [
        ("Good", "positive", 0, {"src": "a"}),
        ("Bad", "negative", 1, {"src": "b"}),
    ]
    upload = Upload.objects.get()
    assert (upload.n_rows, upload.n_created, upload.n_blank, upload.n_duplicates) == (4, 2, 1, 1)


def test_a_second_upload_merges_known_texts_and_numbers_on(campaign: Campaign) -> None:
    import_file(campaign, campaign.created_by, b"text\nA\nB\n", "one.csv")
    out = import_file(campaign, campaign.created_by, b'{"text": "B"}\n{"text": "C"}\n', "two.jsonl")
    assert (out.n_created, out.n_existing) == (1, 1)
    assert list(Item.objects.values_list("text", "position")) == [("A", 0), ("B", 1), ("C", 2)]
    assert Upload.objects.get(filename="two.jsonl").n_duplicates == 1


def test_a_rejected_file_writes_nothing(campaign: Campaign) -> None:
    with pytest.raises(UploadRejected, match="not in the label set"):
        import_file(campaign, campaign.created_by, b"text,label\nok,positive\nno,maybe\n", "x.csv")
    assert not Item.objects.exists() and not Upload.objects.exists()


def test_a_gold_label_that_contradicts_an_earlier_upload_is_refused(campaign: Campaign) -> None:
    import_file(campaign, campaign.created_by, b"text,label\nFine,positive\n", "a.csv")
    with pytest.raises(UploadRejected) as info:
        import_file(campaign, campaign.created_by, b"text,label\nNew,\nFine,negative\n", "b.csv")
    assert info.value.errors == [
        "Texts already in the campaign have a different gold label: "
        "line 3 ('positive' before, 'negative' now)."
    ]
    assert Item.objects.count() == 1 and Upload.objects.count() == 1


@override_settings(CARVE_UPLOAD_MAX_ROWS=1)
def test_limits_come_from_settings(campaign: Campaign) -> None:
    assert import_limits().max_rows == 1
    with pytest.raises(UploadRejected, match="the limit is 1 rows"):
        import_file(campaign, campaign.created_by, b"text\na\nb\n", "x.csv")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["only"], "needs 2 to 20 labels"),
        ([f"l{i}" for i in range(21)], "needs 2 to 20 labels"),
        (["Yes", "yes "], "distinct"),
        (["a", " "], "blank"),
        ("a,b", "list of strings"),
    ],
)
def test_label_sets_are_validated(campaign: Campaign, labels: object, message: str) -> None:
    campaign.labels = labels
    with pytest.raises(ValidationError, match=message):
        campaign.full_clean()


def test_the_default_label_set_is_negative_positive(campaign: Campaign) -> None:
    campaign.full_clean()
    assert campaign.labels == ["negative", "positive"]


def test_migrations_match_the_models() -> None:
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)


def test_the_import_message_points_at_texts_that_span_lines(campaign: Campaign) -> None:
    data = b'text\nfine\n"merged\nnext\nend"\nlast\n'
    outcome = import_file(campaign, campaign.created_by, data, "d.csv")
    message = describe(outcome)
    assert "1 text(s) span several lines (starting on line(s) 3)" in message
    assert "a quote is left open there" in message
