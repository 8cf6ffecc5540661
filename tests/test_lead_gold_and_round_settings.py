"""Leads' gold form on the clip page and the round settings form, through the test client."""

from html import escape

import pytest
from django.contrib.messages import get_messages

from annotation.models import Clip, GoldReference, Round
from annotation.services.gold import set_gold_reference
from annotation.services.rounds import RoundSettingsError, update_round_settings
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate


@pytest.fixture
def clip(db):
    return make_clip(make_round(gold_rate=0.2), make_condition("g", "g"))


def _gold_form(value=4, **overrides) -> dict:
    form = {key: str(value) for key in DIMENSION_KEYS}
    form.update(overrides)
    return form


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Gold reference on the clip page -----------------------------------------------------------


def test_clip_page_shows_the_gold_form_then_the_current_reference(clip, client, lead):
    client.force_login(lead)
    html = client.get(f"/lead/clips/{clip.pk}/").content.decode()
    assert "Not a gold clip" in html and "Remove the gold mark" not in html
    for dim in DIMENSIONS:  # one labelled radio group per dimension
        assert f'<legend title="{escape(dim.question)}">{dim.name}</legend>' in html
        assert html.count(f'name="{dim.key}"') == 5

    response = client.post(
        f"/lead/clips/{clip.pk}/gold/", _gold_form(4, visual_motion="2", note=" too calm ")
    )
    assert response.status_code == 302 and response.url == f"/lead/clips/{clip.pk}/"
    gold = GoldReference.objects.get(clip=clip)
    assert gold.scores() == {**dict.fromkeys(DIMENSION_KEYS, 4), "visual_motion": 2}
    assert (gold.note, gold.created_by) == ("too calm", lead)

    page = client.get(f"/lead/clips/{clip.pk}/")
    html = page.content.decode()
    assert "is a gold clip" in _messages(page)[0]
    assert 'id="gold-reference"' in html and "Note: too calm" in html
    assert "Remove the gold mark" in html
    assert 'name="visual_motion" value="2" required checked' in html  # form starts from it

    # Saving again replaces the reference.
    client.post(f"/lead/clips/{clip.pk}/gold/", _gold_form(5), follow=True)
    assert GoldReference.objects.get(clip=clip).scores() == dict.fromkeys(DIMENSION_KEYS, 5)

    response = client.post(f"/lead/clips/{clip.pk}/gold/remove/", follow=True)
    assert not GoldReference.objects.filter(clip=clip).exists()
    assert "no longer a gold clip" in _messages(response)[0]
    assert "Not a gold clip" in response.content.decode()


@pytest.mark.parametrize(
    "form, expected",
    [
        (
            _gold_form(3, visual_appeal="7"),
            "visual_appeal must be a whole number from 1 to 5, got 7",
        ),
        (_gold_form(3, text_consistency="0"), "text_consistency must be a whole number"),
        (_gold_form(3, image_consistency="x"), "got 'x'"),
        ({k: "3" for k in DIMENSION_KEYS[:-1]}, "character_consistency must be a whole number"),
    ],
)
def test_bad_gold_scores_are_refused_with_a_message_and_nothing_saved(
    clip, client, lead, form, expected
):
    set_gold_reference(clip_id=clip.pk, scores=dict.fromkeys(DIMENSION_KEYS, 2), note="before")
    client.force_login(lead)
    response = client.post(f"/lead/clips/{clip.pk}/gold/", form, follow=True)
    assert response.status_code == 200
    (message,) = _messages(response)
    assert message.startswith("Gold reference not saved:") and expected in message
    gold = GoldReference.objects.get(clip=clip)  # the earlier reference is untouched
    assert (gold.scores(), gold.note) == (dict.fromkeys(DIMENSION_KEYS, 2), "before")


def test_bad_gold_scores_on_a_plain_clip_save_nothing(clip, client, lead):
    client.force_login(lead)
    response = client.post(
        f"/lead/clips/{clip.pk}/gold/", _gold_form(3, visual_smoothness="6"), follow=True
    )
    assert (
        response.status_code == 200 and response.redirect_chain[-1][0] == f"/lead/clips/{clip.pk}/"
    )
    (message,) = _messages(response)
    assert message.startswith("Gold reference not saved: visual_smoothness must be a whole")
    assert message.endswith("got 6")
    assert "Not a gold clip" in response.content.decode()
    assert not GoldReference.objects.exists()


def test_gold_form_is_for_leads_only(clip, client, annotator):
    set_gold_reference(clip_id=clip.pk, scores=dict.fromkeys(DIMENSION_KEYS, 2))
    assert client.post(f"/lead/clips/{clip.pk}/gold/", _gold_form(4)).status_code == 302  # login
    client.force_login(annotator)
    assert client.post(f"/lead/clips/{clip.pk}/gold/", _gold_form(4)).status_code == 403
    assert client.post(f"/lead/clips/{clip.pk}/gold/remove/").status_code == 403
    assert GoldReference.objects.get(clip=clip).scores() == dict.fromkeys(DIMENSION_KEYS, 2)
    client.force_login(make_user("boss", "admin"))  # admins can do what leads do
    assert client.post(f"/lead/clips/{clip.pk}/gold/remove/").status_code == 302
    assert not GoldReference.objects.exists()


def test_gold_handlers_refuse_get_and_unknown_clips(clip, client, lead):
    client.force_login(lead)
    assert client.get(f"/lead/clips/{clip.pk}/gold/").status_code == 405
    assert client.post("/lead/clips/999999/gold/", _gold_form(3)).status_code == 404
    assert client.post("/lead/clips/999999/gold/remove/").status_code == 404


# --- Round settings ------------------------------------------------------------------------------


def _round_form(round_: Round, **overrides) -> dict:
    form = {
        "ratings_per_clip": str(round_.ratings_per_clip),
        "lease_minutes": str(round_.lease_minutes),
        "gold_rate": str(round_.gold_rate),
        "disagreement_std": "" if round_.disagreement_std is None else str(round_.disagreement_std),
        "max_ratings_per_clip": str(round_.max_ratings_per_clip),
        "status": round_.status,
    }
    form.update(overrides)
    return form


def _settings(round_: Round) -> tuple:
    round_.refresh_from_db()
    return (
        round_.ratings_per_clip,
        round_.lease_minutes,
        round_.gold_rate,
        round_.disagreement_std,
        round_.max_ratings_per_clip,
        round_.status,
    )


def test_dashboard_links_to_the_round_settings_page(db, client, lead):
    round_ = make_round(disagreement_std=1.5)
    client.force_login(lead)
    html = client.get(f"/lead/?round={round_.pk}").content.decode()
    assert f'href="/lead/rounds/{round_.pk}/"' in html and "disagreement std 1.5" in html


def test_lead_saves_round_settings(db, client, lead):
    round_ = make_round()
    client.force_login(lead)
    page = client.get(f"/lead/rounds/{round_.pk}/")
    assert page.status_code == 200 and 'name="disagreement_std" value=""' in page.content.decode()
    response = client.post(
        f"/lead/rounds/{round_.pk}/",
        _round_form(
            round_,
            ratings_per_clip="4",
            lease_minutes="15",
            gold_rate="0.1",
            disagreement_std="1.25",
            max_ratings_per_clip="6",
            status="closed",
        ),
        follow=True,
    )
    assert response.redirect_chain == [(f"/lead/rounds/{round_.pk}/", 302)]
    assert _messages(response) == ["Settings of r1 saved."]
    assert _settings(round_) == (4, 15, 0.1, 1.25, 6, "closed")
    # A blank disagreement std turns adaptive overlap off.
    client.post(f"/lead/rounds/{round_.pk}/", _round_form(round_, disagreement_std=" "))
    assert _settings(round_)[3] is None


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"max_ratings_per_clip": "2"}, "max ratings per clip (2) must be at least the ratings"),
        ({"ratings_per_clip": "6"}, "max ratings per clip (5) must be at least the ratings"),
        ({"ratings_per_clip": "0"}, "ratings per clip must be a whole number from 1 to 20"),
        ({"ratings_per_clip": "2.5"}, "got '2.5'"),
        ({"max_ratings_per_clip": "21"}, "max ratings per clip must be a whole number from 1"),
        ({"lease_minutes": "0"}, "lease minutes must be a whole number from 1"),
        ({"lease_minutes": "40000"}, "lease minutes must be a whole number from 1 to 32767"),
        ({"gold_rate": "1.5"}, "gold rate must be between 0 and 1, got 1.5"),
        ({"gold_rate": "-0.1"}, "gold rate must be between 0 and 1"),
        ({"gold_rate": "nan"}, "gold rate must be a number"),
        ({"gold_rate": ""}, "gold rate must be a number, got ''"),
        ({"disagreement_std": "-1"}, "disagreement std must not be negative"),
        ({"disagreement_std": "inf"}, "disagreement std must be a number"),
        ({"status": "paused"}, "status must be one of open, closed, got 'paused'"),
    ],
)
def test_bad_round_settings_are_refused_with_a_message_and_nothing_saved(
    db, client, lead, overrides, expected
):
    round_ = make_round()
    before = _settings(round_)
    client.force_login(lead)
    # Every other field changed too: one bad value refuses the whole form.
    form = {
        **_round_form(round_, lease_minutes="30", gold_rate="0.5", disagreement_std="1"),
        **overrides,
    }
    response = client.post(f"/lead/rounds/{round_.pk}/", form)
    assert response.status_code == 400
    (message,) = _messages(response)
    assert message.startswith("Settings not saved:") and expected in message, message
    assert _settings(round_) == before
    # The form comes back with what the lead typed, to correct it.
    html = response.content.decode()
    assert f'name="lease_minutes" value="{form["lease_minutes"]}"' in html


def test_round_settings_are_for_leads_only(db, client, annotator):
    round_ = make_round()
    before = _settings(round_)
    assert client.get(f"/lead/rounds/{round_.pk}/").status_code == 302
    client.force_login(annotator)
    assert client.get(f"/lead/rounds/{round_.pk}/").status_code == 403
    response = client.post(f"/lead/rounds/{round_.pk}/", _round_form(round_, status="closed"))
    assert response.status_code == 403
    assert _settings(round_) == before
    client.force_login(make_user("lead2", "lead"))
    assert client.get("/lead/rounds/999999/").status_code == 404


def _round_with_progress():
    """Round of 3 with clips at 0, 2 and 3 ratings, and one raised to 4 by adaptive overlap."""
    round_ = make_round(ratings_per_clip=3, max_ratings_per_clip=6)
    raters = [make_user(f"rater{i}", "annotator") for i in range(4)]
    clips = {}
    for name, ratings, target in (
        ("fresh", 0, 3),
        ("half", 2, 3),
        ("done", 3, 3),
        ("raised", 3, 4),
    ):
        clip = make_clip(round_, make_condition(name, name), target_ratings=target)
        for rater in raters[:ratings]:
            rate(clip, rater, 3)
        clips[name] = clip
    return round_, clips


def _targets(clips) -> dict:
    return {name: Clip.objects.get(pk=c.pk).target_ratings for name, c in clips.items()}


def test_new_ratings_per_clip_leaves_existing_clips_alone_unless_applied(db, client, lead):
    round_, clips = _round_with_progress()
    client.force_login(lead)
    client.post(f"/lead/rounds/{round_.pk}/", _round_form(round_, ratings_per_clip="5"))
    assert round_.__class__.objects.get(pk=round_.pk).ratings_per_clip == 5
    assert _targets(clips) == {"fresh": 3, "half": 3, "done": 3, "raised": 4}


def test_raising_ratings_per_clip_applied_to_existing_clips(db, client, lead):
    round_, clips = _round_with_progress()
    client.force_login(lead)
    client.post(
        f"/lead/rounds/{round_.pk}/",
        _round_form(round_, ratings_per_clip="4", apply_to_existing_clips="on"),
    )
    # Every clip below 4 gets 4 (the finished one reopens); the raised one already has it.
    assert _targets(clips) == {"fresh": 4, "half": 4, "done": 4, "raised": 4}


def test_lowering_ratings_per_clip_applied_never_goes_below_the_ratings_a_clip_has(db):
    round_, clips = _round_with_progress()
    update_round_settings(round_id=round_.pk, ratings_per_clip=1, apply_to_existing_clips=True)
    # Clips still collecting (the raised one too) drop to 1 but not below their ratings, so
    # they finish with what they have; finished ones stay as they are.
    assert _targets(clips) == {"fresh": 1, "half": 2, "done": 3, "raised": 3}
    assert all(c.rating_count <= c.target_ratings for c in Clip.objects.filter(round=round_))


def test_update_round_settings_service_checks(db):
    round_ = make_round()
    with pytest.raises(RoundSettingsError, match="unknown round setting"):
        update_round_settings(round_id=round_.pk, name="renamed")
    with pytest.raises(RoundSettingsError, match="does not exist"):
        update_round_settings(round_id=999999, gold_rate=0.5)
    with pytest.raises(RoundSettingsError, match="whole number"):
        update_round_settings(round_id=round_.pk, ratings_per_clip=True)
    # Cross-field checks use the stored value for fields not given.
    with pytest.raises(RoundSettingsError, match=r"max ratings per clip \(2\)"):
        update_round_settings(round_id=round_.pk, max_ratings_per_clip=2)
    updated = update_round_settings(round_id=round_.pk, gold_rate=1, disagreement_std=None)
    assert (updated.gold_rate, updated.disagreement_std) == (1.0, None)
    assert _settings(round_)[2] == 1.0
