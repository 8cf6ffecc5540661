"""Gold mixing and adaptive overlap through the real assignment and rating services."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Lease, Rating
from annotation.services.assignment import lease_next_clip
from annotation.services.gold import gold_block_size, set_gold_reference
from annotation.services.ratings import submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate


def _submit(clip_id, user, score):
    # Ratings need the rater's lease on the clip (issue 10); these tests pick the clip themselves.
    Lease.objects.get_or_create(
        clip_id=clip_id,
        annotator=user,
        defaults={"expires_at": timezone.now() + timedelta(minutes=10)},
    )
    return submit_rating(
        clip_id=clip_id,
        annotator=user,
        scores=dict.fromkeys(DIMENSION_KEYS, score),
        seconds_spent=3,
        idempotency_key=uuid.uuid4(),
    )


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
            _submit(lease.clip_id, user, 3)
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
    _submit(first.clip_id, user, 3)
    assert lease_next_clip(round_id=quiet.pk, annotator=user) is None


def test_disagreement_adds_raters_up_to_the_maximum(db):
    round_ = make_round(ratings_per_clip=2, disagreement_std=1.0, max_ratings_per_clip=4)
    users = [make_user(f"u{i}", "annotator") for i in range(5)]
    split = make_clip(round_, make_condition("s", "s"))
    calm = make_clip(round_, make_condition("c", "c"))

    _submit(split.pk, users[0], 1)
    _submit(split.pk, users[1], 5)  # std 2 > 1: a third rater
    assert Clip.objects.get(pk=split.pk).target_ratings == 3
    _submit(split.pk, users[2], 3)  # (1, 5, 3): std 1.63 > 1: a fourth
    assert Clip.objects.get(pk=split.pk).target_ratings == 4
    _submit(split.pk, users[3], 5)  # still split, but the round's maximum is 4
    assert Clip.objects.get(pk=split.pk).target_ratings == 4
    assert lease_next_clip(round_id=round_.pk, annotator=users[4]).clip_id == calm.pk

    _submit(calm.pk, users[4], 3)  # the lease holder
    _submit(calm.pk, users[0], 4)  # std 0.5 <= 1: done at two
    assert Clip.objects.get(pk=calm.pk).target_ratings == 2

    off = make_round("off", ratings_per_clip=2)  # no threshold: never raised
    clip = make_clip(off, make_condition("o", "o"))
    _submit(clip.pk, users[0], 1)
    _submit(clip.pk, users[1], 5)
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
    errors, rated = [], []
    barrier = threading.Barrier(len(users))

    def work(user):
        try:
            barrier.wait()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                lease = lease_next_clip(round_id=round_.pk, annotator=user)
                if lease is not None:
                    _submit(lease.clip_id, user, 5)
                    rated.append(user.pk)
                    return
                current = Clip.objects.get(pk=clip.pk)
                if current.target_ratings >= 4 and current.rating_count >= current.target_ratings:
                    return
                time.sleep(0.01)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    clip.refresh_from_db()
    assert clip.target_ratings == 4
    assert clip.rating_count == 4 == Rating.objects.filter(clip=clip, is_current=True).count()
    assert len(rated) == 3 == len(set(rated))
    assert ClipLabel.objects.get(clip=clip).count == 4
