"""The campaign form (docs/platform.md, "Campaign settings"): its sections, inviting
annotators, the confirmation before a learner rebuild, and renaming labels in use (pages and
API)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from labeling import annotation, campaign_learner
from labeling.imports.write import import_file
from labeling.models import Campaign, Decision, Item, Label, LearnerSnapshot
from tests.labeling.builders import embedded_campaign
from tests.support.clients import api_as
from tests.support.clients import logged_in as _client

pytestmark = pytest.mark.django_db


def _post(campaign: Campaign | None = None, **overrides: Any) -> dict[str, Any]:
    """The form as the page posts it: every field, with the campaign's current values."""
    c = campaign or Campaign(name="Hotel reviews")
    data = {
        "name": c.name,
        "instructions": c.instructions,
        "labels_text": "\n".join(c.labels),
        "depth": str(c.depth),
        "n_gates": str(c.n_gates),
        "projection_dim": str(c.projection_dim),
        "radius": str(c.radius),
        "softness": "" if c.softness is None else str(c.softness),
        "batch_size": str(c.batch_size),
        "seed": str(c.seed),
        "overlap": str(c.overlap),
        "gold_rate": str(c.gold_rate),
        "retrain_every": str(c.retrain_every),
        "show_suggestions": c.show_suggestions,
        "evaluation_size": str(c.evaluation_size),
        "label_goal": "" if c.label_goal is None else str(c.label_goal),
        "annotator_goal": "" if c.annotator_goal is None else str(c.annotator_goal),
        "card_metadata": "",
        "invite": "",
    }
    if campaign is not None:
        data["annotators"] = [u.pk for u in campaign.annotators.all()]
    data.update(overrides)
    return data


def _edit(campaign: Campaign) -> str:
    return reverse("campaign-edit", args=[campaign.pk])


def _in_use(campaign: Campaign, annotator: Any, manager: Any) -> list[Item]:
    """Gold items of both labels, an active label, an undone one and a decision."""
    import_file(
        campaign, manager, b"text,label\nLoved it,positive\nHated it,negative\nMeh,\n", "d.csv"
    )
    items = list(Item.objects.filter(campaign=campaign).order_by("position"))
    annotation.submit_label(items[2], annotator, "negative")
    undone = Label.objects.create(item=items[1], annotator=manager, value="positive")
    Label.objects.filter(pk=undone.pk).update(undone_at=undone.created_at)
    Decision.objects.create(item=items[2], value="positive", decided_by=manager)
    return items


# --- layout ------------------------------------------------------------------------------------


def test_the_form_has_four_sections_with_the_learner_settings_collapsed(manager: Any) -> None:
    page = _client(manager).get(reverse("campaign-create")).content.decode()
    titles = re.findall(r'class="section"[^>]*>\s*<(?:legend|summary)>([^<]+)<', page)
    assert titles == ["Basics", "Annotators", "Labeling", "Advanced: learner settings"]
    basics = page.split('id="field-invite"')[0]
    assert 'for="id_name"' in basics and 'for="id_labels_text"' in basics
    assert 'for="id_depth"' not in basics
    advanced = page.split("<summary>Advanced: learner settings</summary>")[1]
    assert "<details" in page.split("<summary>")[0]
    assert '<details class="section" open' not in page
    for name in ("depth", "n_gates", "projection_dim", "radius", "softness", "batch_size", "seed"):
        assert f'for="id_{name}"' in advanced
    assert "Recommended: 32." in advanced and "Recommended: blank." in advanced
    assert "ball" in advanced and "box" not in advanced  # the radius bounds a ball
    # Each label comes right before its own input, then its help.
    for name in ("name", "overlap", "evaluation_size", "card_metadata", "seed"):
        block = page.split(f'id="field-{name}"')[1].split('<div class="field')[0]
        assert block.index(f'for="id_{name}"') < block.index(f'id="id_{name}"')
        assert block.index(f'id="id_{name}"') < block.index(f'id="id_{name}_helptext"')


def test_a_learner_field_error_opens_the_advanced_section(manager: Any) -> None:
    response = _client(manager).post(reverse("campaign-create"), _post(n_gates="0"))
    page = response.content.decode()
    assert response.status_code == 200
    assert '<details class="section" open>' in page
    block = page.split('id="field-n_gates"')[1]
    assert block.index('id="id_n_gates"') < block.index('class="errorlist')


# --- annotators --------------------------------------------------------------------------------


def test_a_small_team_is_preselected_without_staff_or_the_creator(
    manager: Any, annotator: Any, staff: Any, outsider: Any
) -> None:
    form = _client(manager).get(reverse("campaign-create")).context["form"]
    assert {u.username for u in form.initial["annotators"]} == {"annotator", "outsider"}


def test_a_larger_site_preselects_nobody(manager: Any) -> None:
    User = get_user_model()
    for i in range(11):
        User.objects.create_user(f"user{i}")
    form = _client(manager).get(reverse("campaign-create")).context["form"]
    assert not form.initial.get("annotators")


def test_annotators_are_invited_by_username_or_email(manager: Any, annotator: Any) -> None:
    User = get_user_model()
    bob = User.objects.create_user("bob", email="Bob@Example.org")
    response = _client(manager).post(
        reverse("campaign-create"), _post(invite="annotator,\nbob@example.org ; annotator")
    )
    assert response.status_code == 302, response.context["form"].errors
    assert set(Campaign.objects.get().annotators.all()) == {annotator, bob}


def test_an_unknown_invitee_is_named_and_nothing_is_saved(manager: Any, annotator: Any) -> None:
    User = get_user_model()
    User.objects.create_user("gone", is_active=False)
    response = _client(manager).post(
        reverse("campaign-create"), _post(invite="annotator, nobody, gone, x@example.org")
    )
    assert response.status_code == 200 and not Campaign.objects.exists()
    error = " ".join(response.context["form"].errors["invite"])
    assert "'nobody', 'gone', 'x@example.org'" in error and "'annotator'" not in error
    page = response.content.decode().split('id="field-invite"')[1].split('<div class="field')[0]
    assert "nobody" in page and "errorlist" in page  # the error sits at its field


# --- labeling settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("stars, source ,stars", ["stars", "source"]), ("", None), ("-", [])],
)
def test_card_metadata_is_typed_as_comma_separated_columns(
    campaign: Campaign, manager: Any, typed: str, stored: list[str] | None
) -> None:
    response = _client(manager).post(_edit(campaign), _post(campaign, card_metadata=typed))
    assert response.status_code == 302, response.context["form"].errors
    campaign.refresh_from_db()
    assert campaign.card_metadata == stored
    form = _client(manager).get(_edit(campaign)).context["form"]
    shown = form["card_metadata"].value() or ""
    assert shown == (typed if typed != "stars, source ,stars" else "stars, source")


def test_an_old_form_without_the_new_settings_keeps_them(campaign: Campaign, manager: Any) -> None:
    new = ("card_metadata", "label_goal", "annotator_goal", "evaluation_size", "show_suggestions")
    Campaign.objects.filter(pk=campaign.pk).update(
        **dict(zip(new, (["stars"], 500, 50, 7, "off"), strict=True))
    )
    old = _post(campaign, name="Renamed")
    for name in (*new, "invite"):
        old.pop(name)
    response = _client(manager).post(_edit(campaign), old)
    assert response.status_code == 302, response.context["form"].errors
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert (campaign.card_metadata, campaign.label_goal, campaign.annotator_goal) == (
        ["stars"],
        500,
        50,
    )
    assert (campaign.evaluation_size, campaign.show_suggestions) == (7, "off")


# --- confirming a rebuild ----------------------------------------------------------------------


def test_a_learner_change_is_confirmed_before_it_rebuilds_the_labels(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    _in_use(campaign, annotator, manager)
    LearnerSnapshot.objects.create(campaign=campaign, state=b"x", seconds=2.54, rebuilt=True)
    client = _client(manager)
    response = client.post(_edit(campaign), _post(campaign, seed="7", radius="2"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Saving rebuilds the learner" in page and "all 1 label." in page
    assert "about 2.5 s" in page and "Weight radius, Random seed changed" in page
    campaign.refresh_from_db()
    assert (campaign.seed, campaign.radius) == (0, 1.0)  # not saved yet
    response = client.post(_edit(campaign), _post(campaign, seed="7", confirm_rebuild="1"))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.seed == 7


def test_other_changes_save_at_once(campaign: Campaign, manager: Any, annotator: Any) -> None:
    _in_use(campaign, annotator, manager)
    client = _client(manager)
    # Not learner settings: name, goals, batch size (the queue, not the learner's state).
    response = client.post(_edit(campaign), _post(campaign, name="New", batch_size="8"))
    assert response.status_code == 302
    # n_gates does not count at depth 3 (deeper networks use per-layer defaults).
    Campaign.objects.filter(pk=campaign.pk).update(depth=3)
    campaign.refresh_from_db()
    response = client.post(_edit(campaign), _post(campaign, n_gates="16"))
    assert response.status_code == 302


def test_without_labels_a_learner_change_needs_no_confirmation(
    campaign: Campaign, manager: Any
) -> None:
    response = _client(manager).post(_edit(campaign), _post(campaign, depth="3"))
    assert response.status_code == 302


def test_adding_a_label_is_a_rebuild_to_confirm(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    _in_use(campaign, annotator, manager)
    response = _client(manager).post(
        _edit(campaign), _post(campaign, labels_text="negative\npositive\nmixed")
    )
    assert response.status_code == 200
    assert "number of labels changed" in response.content.decode()
    assert "The learner has not run yet" in response.content.decode()


# --- renaming labels ---------------------------------------------------------------------------


def _values(campaign: Campaign) -> tuple[list[str], list[str], list[str], list[str]]:
    labels = Label.objects.filter(item__campaign=campaign).order_by("pk")
    items = Item.objects.filter(campaign=campaign).order_by("position")
    return (
        list(Campaign.objects.get(pk=campaign.pk).labels),
        list(labels.values_list("value", flat=True)),
        list(Decision.objects.filter(item__campaign=campaign).values_list("value", flat=True)),
        list(items.values_list("gold", flat=True)),
    )


def test_renaming_labels_in_use_renames_every_stored_value(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    _in_use(campaign, annotator, manager)
    response = _client(manager).post(
        _edit(campaign), _post(campaign, labels_text="negative -> bad\npositive → good")
    )
    assert response.status_code == 302, response.context["form"].errors  # no rebuild to confirm
    assert _values(campaign) == (["bad", "good"], ["bad", "good"], ["good"], ["good", "bad", ""])


def test_two_labels_can_swap_names(campaign: Campaign, manager: Any, annotator: Any) -> None:
    _in_use(campaign, annotator, manager)
    post = _post(campaign, labels_text="negative -> positive, positive -> negative")
    assert _client(manager).post(_edit(campaign), post).status_code == 302
    assert _values(campaign) == (
        ["positive", "negative"],
        ["positive", "negative"],
        ["negative"],
        ["negative", "positive", ""],
    )


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("positive\nnegative", "keep their place in the order: 'negative' is label 1"),
        ("mixed\nnegative\npositive", "keep their place in the order"),
        ("bad\npositive", "must stay in the label set: 'negative'"),
        ("negative -> bad\nnegative -> worse\npositive", "renamed twice"),
        ("negative -> bad\nnegative\npositive", "cannot also stay under its old name"),
        ("neutral -> bad\nnegative\npositive", "not 'neutral'"),
        ("negative\npositive -> good\npositive", "cannot also stay under its old name"),
        ("negative -> positive\npositive", "must be distinct"),
        ("negative -> \npositive", "old -> new"),
    ],
)
def test_reordering_removing_or_unclear_renames_are_refused(
    campaign: Campaign, manager: Any, annotator: Any, typed: str, message: str
) -> None:
    _in_use(campaign, annotator, manager)
    before = _values(campaign)
    response = _client(manager).post(_edit(campaign), _post(campaign, labels_text=typed))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["labels_text"])
    assert _values(campaign) == before


def test_a_new_campaign_has_nothing_to_rename(manager: Any) -> None:
    response = _client(manager).post(reverse("campaign-create"), _post(labels_text="a -> b\nc"))
    assert "no labels to rename" in " ".join(response.context["form"].errors["labels_text"])


def test_unused_labels_may_still_move_and_go(campaign: Campaign, manager: Any) -> None:
    post = _post(campaign, labels_text="positive\nnegative\nmixed")
    assert _client(manager).post(_edit(campaign), post).status_code == 302
    post = _post(campaign, labels_text="mixed, positive")
    assert _client(manager).post(_edit(campaign), post).status_code == 302
    campaign.refresh_from_db()
    assert campaign.labels == ["mixed", "positive"]


def test_a_rename_keeps_the_learner_state_it_only_catches_up(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    items, _ = embedded_campaign(campaign, 30)
    for i, item in enumerate(items[:6]):
        annotation.submit_label(item, annotator, ["negative", "positive"][i % 2])
    first = campaign_learner.update_learner(campaign.pk).snapshot
    assert first is not None
    before = Campaign.objects.get(pk=campaign.pk)
    post = _post(before, labels_text="negative -> neg\npositive -> pos")
    assert _client(manager).post(_edit(campaign), post).status_code == 302
    after = Campaign.objects.get(pk=campaign.pk)
    assert not campaign_learner.forces_rebuild(before, after)
    again = campaign_learner.update_learner(campaign.pk).snapshot
    assert again is not None
    # Same configuration and class indices: the stored state is reused, not rebuilt.
    assert again.fingerprint == first.fingerprint and again.training == first.training
    assert again.rebuilt is False
    after.seed = 1
    assert campaign_learner.forces_rebuild(before, after)


# --- the API -----------------------------------------------------------------------------------


def test_the_api_renames_with_a_rename_map(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    _in_use(campaign, annotator, manager)
    url = f"/api/v1/campaigns/{campaign.pk}/"
    response = api_as(manager).patch(url, {"rename": {"positive": "good"}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["labels"] == ["negative", "good"] and "rename" not in response.json()
    assert _values(campaign) == (
        ["negative", "good"],
        ["negative", "good"],
        ["good"],
        ["good", "negative", ""],
    )
    # With `labels`, they are the names after the renames.
    response = api_as(manager).patch(
        url, {"labels": ["bad", "good", "meh"], "rename": {"negative": "bad"}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert _values(campaign)[0:3] == (["bad", "good", "meh"], ["bad", "good"], ["good"])


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"labels": ["positive", "negative"]}, "labels", "keep their place"),
        ({"rename": {"neutral": "x"}}, "rename", "not 'neutral'"),
        ({"rename": {"negative": "positive"}}, "rename", "distinct"),
        ({"labels": ["bad", "positive"]}, "labels", '"rename": {"old": "new"}'),
    ],
)
def test_the_api_refuses_what_the_form_refuses(
    campaign: Campaign, manager: Any, annotator: Any, body: Any, field: str, message: str
) -> None:
    _in_use(campaign, annotator, manager)
    response = api_as(manager).patch(f"/api/v1/campaigns/{campaign.pk}/", body, format="json")
    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert _values(campaign)[0] == ["negative", "positive"]


def test_the_api_saves_a_rebuild_without_confirmation(
    campaign: Campaign, manager: Any, annotator: Any
) -> None:
    _in_use(campaign, annotator, manager)
    url = f"/api/v1/campaigns/{campaign.pk}/"
    assert api_as(manager).patch(url, {"seed": 3}, format="json").status_code == 200
    assert Campaign.objects.get(pk=campaign.pk).seed == 3
