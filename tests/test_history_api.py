"""An annotator's history and corrections over HTTP: only their own ratings, the undo window,
reopening, and a correction that supersedes (never edits) the rating and updates the label."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Rating
from tests.conftest import client_for, make_user
from tests.factories import make_ready_clips, make_round, scores
from tests.lead_data import rate

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_rounds(db):
    r1, r2 = make_round("h1"), make_round("h2")
    return r1, make_ready_clips(r1, 3), r2, make_ready_clips(r2, 1)


def test_history_lists_only_my_current_ratings_newest_first(two_rounds, annotator, settings):
    settings.LABELHUB_UNDO_WINDOW_SECONDS = 60
    r1, clips, r2, other_clips = two_rounds
    someone = make_user("sam", "annotator")
    mine = [rate(clips[0], annotator, 2), rate(clips[1], annotator, 4)]
    rate(other_clips[0], annotator, 5)
    rate(clips[0], someone, 1)
    Rating.objects.filter(pk=mine[0].pk).update(created_at=timezone.now() - timedelta(minutes=5))

    c = client_for(annotator)
    body = c.get(f"/api/me/ratings/?round={r1.pk}").json()
    assert body["undo_window_seconds"] == 60
    rows = body["ratings"]
    assert [r["rating_id"] for r in rows] == [mine[1].pk, mine[0].pk]  # newest first, round only
    assert rows[0]["scores"] == scores(4) and rows[0]["undoable"] is True
    assert rows[1]["undoable"] is False  # five minutes ago: outside the window
    assert rows[0]["poster_url"] == f"/media/clip/{clips[1].pk}/poster"
    assert rows[0]["prompt"] == clips[1].condition.prompt
    assert "annotator" not in rows[0]

    all_rounds = c.get("/api/me/ratings/?limit=2").json()["ratings"]
    assert len(all_rounds) == 2 and all_rounds[0]["clip_id"] == other_clips[0].pk
    assert c.get("/api/me/ratings/?limit=0").status_code == 400
    assert c.get("/api/me/ratings/?round=x").status_code == 400


def test_correction_supersedes_and_updates_the_label(two_rounds, annotator):
    _r1, clips, _r2, _ = two_rounds
    someone = make_user("sam", "annotator")
    old = rate(clips[0], annotator, 3)
    rate(clips[0], someone, 5)
    c = client_for(annotator)

    reopened = c.get(f"/api/me/ratings/{old.pk}/").json()
    assert reopened["scores"] == scores(3)
    assert reopened["clip"]["id"] == clips[0].pk and reopened["clip"]["video_url"]

    resp = c.post(
        f"/api/me/ratings/{old.pk}/",
        {**scores(3, visual_motion=1), "seconds_spent": 2.5},
        content_type="application/json",
    )
    assert resp.status_code == 201, resp.content
    new_id = resp.json()["rating_id"]
    old.refresh_from_db()
    new = Rating.objects.get(pk=new_id)
    assert not old.is_current and old.scores() == scores(3)  # the original row is kept, unchanged
    assert new.is_current and new.supersedes_id == old.pk and new.visual_motion == 1
    label = ClipLabel.objects.get(clip=clips[0])
    assert label.count == 2 and label.visual_motion_mean == 3.0  # (1 + 5) / 2
    assert Clip.objects.get(pk=clips[0].pk).rating_count == 2  # a correction is not a new rating

    # The history shows the correction in place of the original.
    rows = c.get("/api/me/ratings/").json()["ratings"]
    assert [(r["rating_id"], r["corrected"]) for r in rows] == [(new_id, True)]
    # The superseded rating can be neither reopened nor corrected again.
    assert c.get(f"/api/me/ratings/{old.pk}/").status_code == 404
    again = c.post(f"/api/me/ratings/{old.pk}/", scores(2), content_type="application/json")
    assert again.status_code == 409 and "already corrected" in again.json()["detail"]


def test_bad_corrections_get_clear_errors_and_change_nothing(two_rounds, annotator):
    _r1, clips, _r2, _ = two_rounds
    someone = make_user("sam", "annotator")
    mine = rate(clips[0], annotator, 3)
    theirs = rate(clips[1], someone, 3)
    c = client_for(annotator)

    out_of_range = c.post(
        f"/api/me/ratings/{mine.pk}/", scores(3, visual_appeal=6), content_type="application/json"
    )
    assert out_of_range.status_code == 400 and "visual_appeal" in out_of_range.json()
    missing = {k: v for k, v in scores(3).items() if k != "text_consistency"}
    assert (
        c.post(f"/api/me/ratings/{mine.pk}/", missing, content_type="application/json").status_code
        == 400
    )
    unknown = c.post(
        f"/api/me/ratings/{mine.pk}/", {**scores(3), "clip_id": 9}, content_type="application/json"
    )
    assert unknown.status_code == 400 and "clip_id" in unknown.json()["detail"]
    # Someone else's rating: not found, never corrected.
    assert c.get(f"/api/me/ratings/{theirs.pk}/").status_code == 404
    foreign = c.post(f"/api/me/ratings/{theirs.pk}/", scores(1), content_type="application/json")
    assert foreign.status_code == 404
    assert Rating.objects.count() == 2 and Rating.objects.filter(is_current=False).count() == 0


def test_history_needs_the_annotator_role(two_rounds, annotator):
    _r1, clips, _r2, _ = two_rounds
    mine = rate(clips[0], annotator, 3)
    nobody = make_user("nora")
    c = client_for(nobody)
    assert c.get("/api/me/ratings/").status_code == 403
    assert (
        c.post(
            f"/api/me/ratings/{mine.pk}/", scores(1), content_type="application/json"
        ).status_code
        == 403
    )
    assert Client().get("/api/me/ratings/").status_code in (401, 403)


def test_a_correction_that_creates_disagreement_raises_the_target(annotator):
    round_ = make_round("overlap", ratings_per_clip=2, disagreement_std=1.0, max_ratings_per_clip=4)
    (clip,) = make_ready_clips(round_, 1)
    someone = make_user("sam", "annotator")
    mine = rate(clip, annotator, 5)
    rate(clip, someone, 5)
    assert Clip.objects.get(pk=clip.pk).target_ratings == 2  # agreeing: no extra rater
    resp = client_for(annotator).post(
        f"/api/me/ratings/{mine.pk}/", scores(5, visual_motion=1), content_type="application/json"
    )
    assert resp.status_code == 201
    assert ClipLabel.objects.get(clip=clip).visual_motion_std == 2.0  # 1 vs 5: above 1.0
    assert Clip.objects.get(pk=clip.pk).target_ratings == 3
