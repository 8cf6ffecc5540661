"""The annotators' hot path through the real API: SQL statements per next-clip and per submit.

Budgets: next-clip <= 6 statements, submit <= 8, each counting the 3 every authenticated API
request makes (session, user, roles). The shared round-totals cache is cleared before each
measured request, so the budgets hold on a cold cache too. The tests run with real transactions
(``transaction=True``), so no test savepoints are counted: the figures are the server's.
"""

import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Lease, Rating
from annotation.services.gold import set_gold_reference
from tests.conftest import client_for, make_user
from tests.factories import make_ready_clips, make_round, scores

pytestmark = pytest.mark.django_db(transaction=True)

NEXT_MAX_QUERIES = 6
SUBMIT_MAX_QUERIES = 8


def next_clip(client, round_id, budget, *, exclude=()):
    cache.clear()
    with budget(NEXT_MAX_QUERIES):
        response = client.post(
            f"/api/rounds/{round_id}/next/",
            {"exclude": list(exclude)},
            content_type="application/json",
        )
    return response


def submit(client, clip_id, budget, value=3, **overrides):
    cache.clear()
    with budget(SUBMIT_MAX_QUERIES):
        response = client.post(
            f"/api/clips/{clip_id}/ratings/",
            {
                **scores(value, **overrides),
                "seconds_spent": 4.0,
                "idempotency_key": str(uuid.uuid4()),
            },
            content_type="application/json",
        )
    return response


def test_next_and_submit_stay_within_budget_and_answer_correctly(django_assert_max_num_queries):
    budget = django_assert_max_num_queries
    round_ = make_round("hot", ratings_per_clip=2)
    clips = make_ready_clips(round_, 3)
    anna, bob = make_user("anna", "annotator"), make_user("bob", "annotator")
    a, b = client_for(anna), client_for(bob)

    first = next_clip(a, round_.pk, budget)
    assert first.status_code == 200, first.content
    body = first.json()
    clip_id = body["clip"]["id"]
    assert clip_id == clips[0].pk and body["clip"]["prompt"] == "prompt 0"
    assert body["clip"]["frames"] == 8 and body["clip"]["character_reference_url"] is None
    assert body["progress"] == {
        "rated_by_me": 0,
        "round": "hot",
        "round_ratings_done": 0,
        "round_ratings_target": 6,
        "clips_left": 3,
    }
    # A reload shows the held clip again; the prefetch (exclude it) leases the next one.
    assert next_clip(a, round_.pk, budget).json()["clip"]["id"] == clip_id
    prefetch = next_clip(a, round_.pk, budget, exclude=[clip_id]).json()["clip"]["id"]
    assert prefetch == clips[1].pk
    # Two held clips are the most: a third request with both excluded gets nothing.
    assert next_clip(a, round_.pk, budget, exclude=[clip_id, prefetch]).status_code == 204

    done = submit(a, clip_id, budget, 2, visual_motion=4)
    assert done.status_code == 201, done.content
    assert done.json()["progress"]["rated_by_me"] == 1
    rating = Rating.objects.get(pk=done.json()["rating_id"])
    assert (rating.clip_id, rating.annotator_id, rating.visual_motion) == (clip_id, anna.pk, 4)
    label = ClipLabel.objects.get(clip_id=clip_id)
    assert label.count == 1 and label.visual_motion_mean == 4.0 and label.overall == 14 / 6
    assert Clip.objects.get(pk=clip_id).rating_count == 1
    assert not Lease.objects.filter(clip_id=clip_id, annotator=anna).exists()

    # Bob is sent to the clip closest to completion; his rating updates count, label, progress.
    assert next_clip(b, round_.pk, budget).json()["clip"]["id"] == clip_id
    done = submit(b, clip_id, budget, 4)
    assert done.json()["progress"] == {
        "rated_by_me": 1,
        "round": "hot",
        "round_ratings_done": 2,
        "round_ratings_target": 6,
        "clips_left": 2,
    }
    label = ClipLabel.objects.get(clip_id=clip_id)
    assert (label.count, label.visual_smoothness_mean, label.visual_smoothness_std) == (2, 3.0, 1.0)

    # Refusals cost no more: a clip not leased to the caller, a repeated idempotency key.
    refused = submit(b, clips[2].pk, budget)
    assert refused.status_code == 403 and "do not hold this clip" in refused.json()["detail"]
    assert Rating.objects.count() == 2


def test_an_expired_lease_is_cleared_in_the_same_statements(django_assert_max_num_queries):
    budget = django_assert_max_num_queries
    round_ = make_round("lapsed", ratings_per_clip=1)
    clips = make_ready_clips(round_, 2)
    anna, bob = make_user("anna", "annotator"), make_user("bob", "annotator")
    a = client_for(anna)
    assert next_clip(a, round_.pk, budget).json()["clip"]["id"] == clips[0].pk
    Lease.objects.filter(annotator=anna).update(expires_at=timezone.now() - timedelta(seconds=1))
    # The lapsed lease frees its slot at once (bob gets the clip) and is deleted by the
    # statement that leases anna her next clip.
    assert next_clip(client_for(bob), round_.pk, budget).json()["clip"]["id"] == clips[0].pk
    assert next_clip(a, round_.pk, budget).json()["clip"]["id"] == clips[1].pk
    assert list(Lease.objects.filter(annotator=anna).values_list("clip_id", flat=True)) == [
        clips[1].pk
    ]
    # Her late submit of the lapsed clip is refused: its slot went to bob.
    refused = submit(a, clips[0].pk, budget)
    assert refused.status_code == 403 and "do not hold this clip" in refused.json()["detail"]


def test_gold_round_serves_gold_within_budget(django_assert_max_num_queries, lead):
    budget = django_assert_max_num_queries
    round_ = make_round("gold", gold_rate=1.0)  # every clip due is gold while one is left
    normal, gold = make_ready_clips(round_, 2)
    set_gold_reference(clip_id=gold.pk, scores=scores(4), created_by=lead)
    anna = make_user("anna", "annotator")
    a = client_for(anna)

    first = next_clip(a, round_.pk, budget).json()["clip"]["id"]
    assert first == gold.pk
    assert submit(a, gold.pk, budget, 4).status_code == 201
    # No unseen gold clip is left: the normal pool, in the same number of statements.
    assert next_clip(a, round_.pk, budget).json()["clip"]["id"] == normal.pk
    # A gold clip is never given more raters by adaptive overlap, and never counted as a slot.
    assert Clip.objects.get(pk=gold.pk).target_ratings == round_.ratings_per_clip


def test_team_round_within_budget_and_closed_to_others(django_assert_max_num_queries):
    budget = django_assert_max_num_queries
    round_ = make_round("team")
    clip = make_ready_clips(round_, 1)[0]
    member, outsider = make_user("member", "annotator"), make_user("outsider", "annotator")
    round_.annotators.add(member)

    refused = next_clip(client_for(outsider), round_.pk, budget)
    assert refused.status_code == 403 and "chosen team" in refused.json()["detail"]
    m = client_for(member)
    assert next_clip(m, round_.pk, budget).json()["clip"]["id"] == clip.pk
    assert submit(m, clip.pk, budget).status_code == 201
    assert Lease.objects.filter(annotator=outsider).count() == 0


def test_submit_that_raises_the_target_stays_within_budget(django_assert_max_num_queries):
    budget = django_assert_max_num_queries
    round_ = make_round("overlap", ratings_per_clip=2, disagreement_std=0.5, max_ratings_per_clip=3)
    clip = make_ready_clips(round_, 1)[0]
    raters = [client_for(make_user(name, "annotator")) for name in ("anna", "bob", "cara")]
    for rater, value in zip(raters[:2], (1, 5), strict=True):
        assert next_clip(rater, round_.pk, budget).json()["clip"]["id"] == clip.pk
        assert submit(rater, clip.pk, budget, value).status_code == 201
    # 1 vs 5 disagree (std 2 > 0.5): a third rater is wanted, and the third annotator gets it.
    assert Clip.objects.get(pk=clip.pk).target_ratings == 3
    assert next_clip(raters[2], round_.pk, budget).json()["clip"]["id"] == clip.pk


def test_unknown_and_closed_rounds_answer_within_budget(django_assert_max_num_queries):
    budget = django_assert_max_num_queries
    client = client_for(make_user("anna", "annotator"))
    assert next_clip(client, 987654, budget).status_code == 404
    closed = make_round("closed", status="closed")
    make_ready_clips(closed, 1)
    response = next_clip(client, closed.pk, budget)
    assert response.status_code == 409 and "closed" in response.json()["detail"]
