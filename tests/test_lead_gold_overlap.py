"""Gold mixing and adaptive overlap through the real assignment and rating services."""

import time

import pytest
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Lease, Rating
from annotation.services.assignment import lease_next_clip
from annotation.services.gold import gold_block_size, set_gold_reference
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.faults import all_at_once
from tests.lead_data import make_clip, make_condition, make_round, rate


def test_gold_clips_are_mixed_in_at_the_round_rate(db, lead):
    round_ = make_round(gold_rate=0.25)
    assert gold_block_size(0.25) == 4
    normal = [make_clip(round_, make_condition(f"n{i}", f"n{i}")) for i in range(12)]
    gold = [make_clip(round_, make_condition(f"g{i}", f"g{i}")) for i in range(4)]
    for clip in gold:
        set_gold_reference(
            clip_id=clip.pk, scores=dict.fromkeys(DIMENSION_KEYS, 3), created_by=lead
        )
    gold_ids = {c.pk for c in gold}

    served_by = {}
    for name in ("ann", "bob"):
        user = make_user(name, "annotator")
        served = []
        for _ in range(12):
            lease = lease_next_clip(round_id=round_.pk, annotator=user)
            served.append(lease.clip_id)
            rate(lease.clip_id, user, 3, seconds=3)
        served_by[name] = served
        # Exactly one gold clip in each block of four, never the same clip twice.
        for block in range(3):
            assert sum(c in gold_ids for c in served[block * 4 : block * 4 + 4]) == 1, served
        assert len(set(served)) == 12
    # Gold clips are served beyond their target (3): both annotators saw three of them.
    assert Rating.objects.filter(clip_id__in=gold_ids).count() == 6
    # A normal clip never gets more than its target.
    assert all(
        c.rating_count <= c.target_ratings
        for c in Clip.objects.filter(pk__in=[n.pk for n in normal])
    )

    # With a zero rate gold clips are never served.
    quiet = make_round("quiet")
    make_clip(quiet, make_condition("q", "q"))
    set_gold_reference(
        clip_id=make_clip(quiet, make_condition("qg", "qg")).pk,
        scores=dict.fromkeys(DIMENSION_KEYS, 3),
    )
    user = make_user("cid", "annotator")
    first = lease_next_clip(round_id=quiet.pk, annotator=user)
    rate(first.clip_id, user, 3, seconds=3)
    assert lease_next_clip(round_id=quiet.pk, annotator=user) is None


def test_disagreement_adds_raters_up_to_the_maximum(db):
    round_ = make_round(ratings_per_clip=2, disagreement_std=1.0, max_ratings_per_clip=4)
    users = [make_user(f"u{i}", "annotator") for i in range(5)]
    split = make_clip(round_, make_condition("s", "s"))
    calm = make_clip(round_, make_condition("c", "c"))

    rate(split.pk, users[0], 1, seconds=3)
    rate(split.pk, users[1], 5, seconds=3)  # std 2 > 1: a third rater
    assert Clip.objects.get(pk=split.pk).target_ratings == 3
    rate(split.pk, users[2], 3, seconds=3)  # (1, 5, 3): std 1.63 > 1: a fourth
    assert Clip.objects.get(pk=split.pk).target_ratings == 4
    rate(split.pk, users[3], 5, seconds=3)  # still split, but the round's maximum is 4
    assert Clip.objects.get(pk=split.pk).target_ratings == 4
    assert lease_next_clip(round_id=round_.pk, annotator=users[4]).clip_id == calm.pk

    rate(calm.pk, users[4], 3, seconds=3)  # the lease holder
    rate(calm.pk, users[0], 4, seconds=3)  # std 0.5 <= 1: done at two
    assert Clip.objects.get(pk=calm.pk).target_ratings == 2

    off = make_round("off", ratings_per_clip=2)  # no threshold: never raised
    clip = make_clip(off, make_condition("o", "o"))
    rate(clip.pk, users[0], 1, seconds=3)
    rate(clip.pk, users[1], 5, seconds=3)
    assert Clip.objects.get(pk=clip.pk).target_ratings == 2


@pytest.mark.django_db(transaction=True)
def test_adaptive_overlap_is_race_free_with_concurrent_annotators():
    # One clip with a rating of 1; every newcomer rates 5, so each submit leaves it split:
    # (1,5) std 2 -> target 3, (1,5,5) std 0.94 -> 4, then the round's maximum of 4 holds.
    round_ = make_round(
        ratings_per_clip=2, disagreement_std=0.5, max_ratings_per_clip=4, lease_minutes=5
    )
    clip = make_clip(round_, make_condition("race", "race"))
    rate(clip, make_user("first", "annotator"), 1)
    users = [make_user(f"t{i}", "annotator") for i in range(8)]
    rated = []

    def work(user):
        while True:
            lease = lease_next_clip(round_id=round_.pk, annotator=user)
            if lease is not None:
                rate(lease.clip_id, user, 5, seconds=3)
                rated.append(user.pk)
                return
            # Nothing for this user: done once nobody else holds the clip either (a holder's
            # submit may still raise the target and free a slot). No clock involved.
            if not Lease.objects.filter(clip=clip, expires_at__gt=timezone.now()).exists():
                return
            time.sleep(0.01)

    all_at_once(work, users)
    clip.refresh_from_db()
    assert clip.target_ratings == 4
    assert clip.rating_count == 4 == Rating.objects.filter(clip=clip, is_current=True).count()
    assert len(rated) == 3 == len(set(rated))
    assert ClipLabel.objects.get(clip=clip).count == 4
