"""Campaign pages: who may see and change what, and what the forms accept."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from labeling.models import Campaign, EmbeddingJob, ImportJob, Item, Upload
from tests.support.clients import logged_in as _client

pytestmark = pytest.mark.django_db


def _campaign_post(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Hotel reviews",
        "instructions": "Overall verdict of the guest.",
        "labels_text": "negative\npositive",
        "depth": "2",
        "n_gates": "32",
        "projection_dim": "64",
        "radius": "1.0",
        "batch_size": "4",
        "seed": "0",
        "overlap": "1",
        "gold_rate": "0.1",
        "retrain_every": "50",
    }
    data.update(overrides)
    return data


def _csv(body: str, name: str = "reviews.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, body.encode("utf-8"), content_type="text/csv")


# --- anonymous -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("campaign-list", []),
        ("campaign-create", []),
        ("campaign-detail", [1]),
        ("campaign-edit", [1]),
    ],
)
def test_it_sends_anonymous_users_to_login(client: Client, name: str, args: list[int]) -> None:
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_it_sends_anonymous_upload_to_login(client: Client, campaign: Campaign) -> None:
    response = client.post(reverse("campaign-upload", args=[campaign.pk]), {"file": _csv("t\na")})
    assert response.status_code == 302
    assert Item.objects.count() == 0


def test_login_page_logs_a_user_in(client: Client, manager: Any) -> None:
    response = client.post(reverse("login"), {"username": "manager", "password": "pw-manager"})
    assert response.status_code == 302
    assert response["Location"] == reverse("campaign-list")


# --- annotators and outsiders ----------------------------------------------------------------


def test_annotator_sees_only_assigned_campaigns(
    campaign: Campaign, annotator: Any, other_manager: Any
) -> None:
    Campaign.objects.create(name="Secret project", created_by=other_manager)
    response = _client(annotator).get(reverse("campaign-list"))
    assert response.status_code == 200
    assert b"Movie reviews" in response.content
    assert b"Secret project" not in response.content
    assert b"New campaign" not in response.content


def test_annotator_can_open_assigned_campaign_without_manager_controls(
    campaign: Campaign, annotator: Any
) -> None:
    response = _client(annotator).get(reverse("campaign-detail", args=[campaign.pk]))
    assert response.status_code == 200
    assert b"Is the review positive?" in response.content
    assert b"Upload texts" not in response.content
    assert reverse("campaign-edit", args=[campaign.pk]).encode() not in response.content


def test_outsider_gets_404_for_a_campaign_not_assigned(campaign: Campaign, outsider: Any) -> None:
    client = _client(outsider)
    assert client.get(reverse("campaign-detail", args=[campaign.pk])).status_code == 404
    assert client.get(reverse("campaign-edit", args=[campaign.pk])).status_code == 404
    response = client.post(reverse("campaign-upload", args=[campaign.pk]), {"file": _csv("t\na")})
    assert response.status_code == 404


def test_annotator_cannot_create_campaigns(annotator: Any) -> None:
    client = _client(annotator)
    assert client.get(reverse("campaign-create")).status_code == 403
    assert client.post(reverse("campaign-create"), _campaign_post()).status_code == 403
    assert Campaign.objects.count() == 0


def test_annotator_cannot_edit_or_upload(campaign: Campaign, annotator: Any) -> None:
    client = _client(annotator)
    edit = reverse("campaign-edit", args=[campaign.pk])
    assert client.get(edit).status_code == 403
    assert client.post(edit, _campaign_post(name="Hijacked")).status_code == 403
    upload = reverse("campaign-upload", args=[campaign.pk])
    assert client.post(upload, {"file": _csv("text\nhello\n")}).status_code == 403
    assert client.post(reverse("campaign-embed", args=[campaign.pk])).status_code == 403
    campaign.refresh_from_db()
    assert campaign.name == "Movie reviews"
    assert Item.objects.count() == 0


def test_a_manager_cannot_open_another_managers_campaign(
    campaign: Campaign, other_manager: Any
) -> None:
    assert (
        _client(other_manager).get(reverse("campaign-detail", args=[campaign.pk])).status_code
        == 404
    )


def test_staff_see_and_manage_every_campaign(campaign: Campaign, staff: Any) -> None:
    client = _client(staff)
    assert b"Movie reviews" in client.get(reverse("campaign-list")).content
    response = client.post(reverse("campaign-edit", args=[campaign.pk]), _campaign_post())
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Hotel reviews"


# --- creating and editing ----------------------------------------------------------------------


def test_manager_creates_a_campaign_with_labels_settings_and_annotators(
    manager: Any, annotator: Any
) -> None:
    response = _client(manager).post(
        reverse("campaign-create"),
        _campaign_post(
            labels_text="negative, neutral\npositive",
            n_gates="16",
            projection_dim="0",
            radius="2.5",
            batch_size="8",
            seed="7",
            annotators=[annotator.pk],
        ),
    )
    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("campaign-detail", args=[campaign.pk])
    assert campaign.labels == ["negative", "neutral", "positive"]
    assert (campaign.n_gates, campaign.projection_dim, campaign.radius) == (16, 0, 2.5)
    assert (campaign.batch_size, campaign.seed, campaign.created_by) == (8, 7, manager)
    assert list(campaign.annotators.all()) == [annotator]


def test_the_create_form_defaults_to_negative_positive_and_recommended_settings(
    manager: Any,
) -> None:
    response = _client(manager).get(reverse("campaign-create"))
    form = response.context["form"]
    assert form["labels_text"].value() == "negative\npositive"
    assert (form["n_gates"].value(), form["projection_dim"].value()) == (32, 64)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("positive", "needs 2 to 20 labels, got 1"),
        ("\n".join(f"l{i}" for i in range(21)), "needs 2 to 20 labels, got 21"),
        ("Good\ngood", "must be distinct"),
    ],
)
def test_it_rejects_a_bad_label_set(manager: Any, labels: str, message: str) -> None:
    response = _client(manager).post(reverse("campaign-create"), _campaign_post(labels_text=labels))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["labels_text"])
    assert Campaign.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_gates", "0"), ("n_gates", "513"), ("radius", "0"), ("batch_size", "65"), ("name", "")],
)
def test_it_rejects_out_of_range_settings(manager: Any, field: str, value: str) -> None:
    response = _client(manager).post(reverse("campaign-create"), _campaign_post(**{field: value}))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert Campaign.objects.count() == 0


def test_editing_cannot_drop_a_label_that_gold_items_use(campaign: Campaign, manager: Any) -> None:
    client = _client(manager)
    client.post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"file": _csv("text,label\nLoved it,positive\nHated it,negative\n")},
    )
    response = client.post(
        reverse("campaign-edit", args=[campaign.pk]), _campaign_post(labels_text="bad\ngood")
    )
    assert response.status_code == 200
    assert "'negative', 'positive'" in " ".join(response.context["form"].errors["labels_text"])
    campaign.refresh_from_db()
    assert campaign.labels == ["negative", "positive"]


# --- uploading -----------------------------------------------------------------------------


def test_upload_imports_items_queues_an_embedding_job_and_reports_counts(
    campaign: Campaign, manager: Any
) -> None:
    body = "review,sentiment,stars\nGreat film,positive,5\n  ,negative,1\nGreat film,positive,5\n"
    response = _client(manager).post(
        reverse("campaign-upload", args=[campaign.pk]), {"file": _csv(body)}, follow=True
    )
    assert response.status_code == 200
    assert list(Item.objects.values_list("text", "gold", "metadata")) == [
        ("Great film", "positive", {"stars": "5"})
    ]
    text = response.content.decode()
    assert "Imported 1 new item(s) from reviews.csv" in text
    assert "1 blank text(s) skipped" in text and "1 duplicate(s) merged" in text
    job = EmbeddingJob.objects.get()
    assert (job.campaign, job.status) == (campaign, EmbeddingJob.Status.QUEUED)
    assert 'data-status="queued"' in text
    assert 'hx-trigger="load delay:1s"' in text  # the progress bar polls while pending


def test_upload_with_chosen_columns(campaign: Campaign, manager: Any) -> None:
    body = "id,body,verdict\n1,Fine hotel,positive\n"
    _client(manager).post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"file": _csv(body), "text_column": "body", "gold_column": "verdict"},
    )
    item = Item.objects.get()
    assert (item.text, item.gold, item.metadata) == ("Fine hotel", "positive", {"id": "1"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "file is empty."),
        (b"  \n\n", "The file is empty."),
        (b"text\n", "no data rows"),
        (b"id,stars\n1,5\n", "text column"),
        ("text\nsch\u00f6n\n".encode("utf-16"), "UTF-8"),
        (b"text,label\nGood,great\nBad,awful\n", "not in the label set"),
    ],
)
def test_a_rejected_upload_shows_its_errors_and_imports_nothing(
    campaign: Campaign, manager: Any, body: bytes, message: str
) -> None:
    response = _client(manager).post(
        reverse("campaign-upload", args=[campaign.pk]),
        {"file": SimpleUploadedFile("data.csv", body)},
    )
    assert response.status_code == 400
    assert message in " ".join(response.context["upload_form"].errors["file"])
    assert (Item.objects.count(), Upload.objects.count(), EmbeddingJob.objects.count()) == (0, 0, 0)


def test_an_upload_over_the_size_limit_is_refused_by_the_form_before_parsing(
    campaign: Campaign, manager: Any, settings: Any, monkeypatch: Any
) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the file was read although it is over the limit")

    monkeypatch.setattr("labeling.imports.jobs.start_import", must_not_run)
    settings.CARVE_UPLOAD_MAX_BYTES = 100
    response = _client(manager).post(
        reverse("campaign-upload", args=[campaign.pk]), {"file": _csv("text\n" + "x" * 200)}
    )
    assert response.status_code == 400
    assert "the limit is 100 bytes" in " ".join(response.context["upload_form"].errors["file"])
    assert Item.objects.count() == 0


def test_a_request_body_far_over_the_limit_is_refused_before_csrf_reads_it(
    campaign: Campaign, settings: Any
) -> None:
    settings.CARVE_UPLOAD_MAX_BYTES = 1000
    client = Client(enforce_csrf_checks=True)  # anonymous, no token: the size check comes first
    body = "text\n" + "x" * 100_000
    response = client.post(reverse("campaign-upload", args=[campaign.pk]), {"file": _csv(body)})
    assert response.status_code == 413
    assert b"uploads are limited to 1,000 bytes" in response.content
    assert Item.objects.count() == 0


def test_an_htmx_poll_after_the_session_expired_redirects_the_whole_page(
    campaign: Campaign, client: Client
) -> None:
    url = reverse("campaign-detail", args=[campaign.pk])
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{reverse('login')}?next={url}"


def test_upload_without_a_file_is_a_form_error(campaign: Campaign, manager: Any) -> None:
    response = _client(manager).post(reverse("campaign-upload", args=[campaign.pk]), {})
    assert response.status_code == 400
    assert "file" in response.context["upload_form"].errors


def test_upload_page_rejects_get(campaign: Campaign, manager: Any) -> None:
    response = _client(manager).get(reverse("campaign-upload", args=[campaign.pk]))
    assert response.status_code == 405


# --- the progress part -----------------------------------------------------------------------


def test_a_queued_job_shows_an_empty_bar_and_is_resent_when_stuck(
    campaign: Campaign, annotator: Any
) -> None:
    job = EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    text = _client(annotator).get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert 'value="0"' in text and "0 / ? items" in text
    job.refresh_from_db()
    assert job.sent_at is not None  # never sent before (e.g. broker down): the page re-sent it


def test_htmx_request_gets_only_the_progress_part(campaign: Campaign, annotator: Any) -> None:
    EmbeddingJob.objects.create(
        campaign=campaign, model_name="fake-32", status="running", n_total=200, n_done=50
    )
    response = _client(annotator).get(
        reverse("campaign-detail", args=[campaign.pk]), headers={"HX-Request": "true"}
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert text.lstrip().startswith('<div id="embedding-status"')
    assert "<html" not in text
    assert 'value="25"' in text and "50 / 200 items" in text
    assert 'hx-trigger="load delay:1s"' in text


def test_a_finished_job_stops_the_polling(campaign: Campaign, annotator: Any) -> None:
    EmbeddingJob.objects.create(
        campaign=campaign, model_name="fake-32", status="done", n_total=4, n_done=4, dim=32
    )
    response = _client(annotator).get(
        reverse("campaign-detail", args=[campaign.pk]), headers={"HX-Request": "true"}
    )
    text = response.content.decode()
    assert 'data-status="done"' in text and "32 dimensions" in text
    assert "hx-trigger" not in text and 'value="100"' in text


def test_a_failed_job_shows_its_error_and_the_manager_can_retry(
    campaign: Campaign, manager: Any
) -> None:
    EmbeddingJob.objects.create(
        campaign=campaign, model_name="fake-32", status="failed", error="OSError: no model"
    )
    client = _client(manager)
    text = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "The embedding job failed: OSError: no model" in text
    assert "Retry embedding" in text
    annotator_view = _client(campaign.annotators.get()).get(
        reverse("campaign-detail", args=[campaign.pk])
    )
    assert "The embedding job failed. A campaign manager" in annotator_view.content.decode()
    assert "OSError" not in annotator_view.content.decode()  # no server details
    response = client.post(reverse("campaign-embed", args=[campaign.pk]))
    assert response.status_code == 302
    assert EmbeddingJob.objects.filter(status="queued").count() == 1


def test_staff_can_browse_the_platform_rows_in_django_admin(
    campaign: Campaign, staff: Any, django_user_model: Any
) -> None:
    staff.is_superuser = True
    staff.save()
    EmbeddingJob.objects.create(campaign=campaign, model_name="fake-32")
    job = ImportJob.objects.create(campaign=campaign, created_by=staff, data=b"secret,rows")
    client = _client(staff)
    for model in ("campaign", "upload", "item", "embeddingjob", "importjob"):
        assert client.get(f"/admin/labeling/{model}/").status_code == 200, model
    page = client.get(f"/admin/labeling/importjob/{job.pk}/change/")
    assert page.status_code == 200 and b"secret,rows" not in page.content


def test_a_campaign_can_be_created_with_a_deeper_network(manager: Any) -> None:
    client = _client(manager)
    bad = client.post(reverse("campaign-create"), _campaign_post(depth="5"))
    assert bad.status_code == 200 and "depth" in bad.context["form"].errors
    response = client.post(reverse("campaign-create"), _campaign_post(depth="3"))
    campaign = Campaign.objects.get(name="Hotel reviews")
    assert response.status_code == 302 and campaign.depth == 3
    page = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "depth 3, default gates per layer" in page
    dashboard = client.get(reverse("campaign-dashboard", args=[campaign.pk])).content.decode()
    assert "depth 3 ·" in dashboard
    from labeling.campaign_learner import learner_config

    config = learner_config(campaign, 384)
    assert (config.depth, config.layer_gates) == (3, (8, 2))


def test_label_softness_is_automatic_unless_the_manager_fixes_it(manager: Any) -> None:
    from labeling.campaign_learner import learner_config

    client = _client(manager)
    bad = client.post(reverse("campaign-create"), _campaign_post(softness="0.5"))
    assert bad.status_code == 200 and "softness" in bad.context["form"].errors
    client.post(reverse("campaign-create"), _campaign_post())
    campaign = Campaign.objects.get(name="Hotel reviews")
    assert campaign.softness is None
    config = learner_config(campaign, 384)
    assert config.auto_delta  # blank: cross-validated on the labels
    page = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert "softness automatic" in page
    post = _campaign_post(softness="0")
    post["labels_text"] = "\n".join(campaign.labels)
    response = client.post(reverse("campaign-edit", args=[campaign.pk]), post)
    assert response.status_code == 302, response.context["form"].errors
    campaign.refresh_from_db()
    config = learner_config(campaign, 384)
    assert campaign.softness == 0 and (config.delta, config.auto_delta) == (0.0, False)


def test_an_upload_that_fails_on_the_server_says_so_without_the_internal_error(
    campaign: Campaign, manager: Any, monkeypatch: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail /srv/secret")

    monkeypatch.setattr("labeling.imports.write.write_items", broken)
    response = _client(manager).post(
        reverse("campaign-upload", args=[campaign.pk]), {"file": _csv("text\nfine review\n")}
    )
    assert response.status_code == 500
    shown = " ".join(response.context["upload_form"].errors["file"])
    assert "nothing was imported" in shown and "secret" not in response.content.decode()
    job = ImportJob.objects.get()  # the detail stays on the job row for the manager's logs
    assert (job.status, Item.objects.count()) == ("failed", 0) and "secret" in job.error


def test_pages_carry_a_content_security_policy(campaign: Campaign, annotator: Any) -> None:
    response = _client(annotator).get(reverse("campaign-label", args=[campaign.pk]))
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
