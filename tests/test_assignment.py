"""Assignment and ratings on the real Postgres: quotas, leases, skips, idempotency, concurrency."""

import random
import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Lease, Rating
from annotation.services.assignment import lease_next_clip
from annotation.services.labels import recompute_all_labels
from annotation.services.ratings import RatingError, skip_clip, submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round, scores
from tests.faults import all_at_once
from tests.lead_data import rate


def hold(clip_id, user, minutes=10):
    """Give ``user`` a lease on this very clip, as the assignment service would (ratings, skips
    and flags need one); an existing lease of theirs, expired or not, is left as it is."""
    Lease.objects.get_or_create(
        clip_id=clip_id,
        annotator=user,
        defaults={"expires_at": timezone.now() + timedelta(minutes=minutes)},
    )


@pytest.mark.django_db
def test_database_rejects_scores_outside_1_5_and_second_current_rating(annotator):
    round_ = make_round()
    clip = make_ready_clips(round_, 1)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(clip=clip, annotator=annotator, **scores(3, visual_motion=7))
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(clip=clip, annotator=annotator, **scores(0))
    Rating.objects.create(clip=clip, annotator=annotator, **scores(3))
    with pytest.raises(IntegrityError), transaction.atomic():
        Rating.objects.create(clip=clip, annotator=annotator, **scores(4))


@pytest.mark.django_db
def test_service_rejects_bad_scores_with_clear_messages(annotator):
    clip = make_ready_clips(make_round(), 1)[0]
    for bad, message in [
        (scores(3, visual_motion=7), "visual_motion must be from 1 to 5, got 7"),
        ({k: 3 for k in DIMENSION_KEYS[:5]}, "missing score(s) for character_consistency"),
        (scores(3, visual_appeal="x"), "visual_appeal must be a whole number"),
        ({**scores(3), "colour": 2}, "unknown dimension(s) colour"),
    ]:
        with pytest.raises(RatingError, match=message.replace("(", r"\(").replace(")", r"\)")):
            submit_rating(
                clip_id=clip.pk, annotator=annotator, scores=bad, idempotency_key=uuid.uuid4()
            )
    assert not Rating.objects.exists() and not ClipLabel.objects.exists()


@pytest.mark.django_db
def test_reload_returns_the_leased_clip_and_closest_to_completion_first(annotator):
    round_ = make_round()
    clips = make_ready_clips(round_, 3)
    other = make_user("bob", "annotator")
    rate(clips[2].pk, other)  # clip 2 is closest to completion
    lease = lease_next_clip(round_id=round_.pk, annotator=annotator)
    assert lease.clip_id == clips[2].pk
    assert lease_next_clip(round_id=round_.pk, annotator=annotator).clip_id == clips[2].pk
    nxt = lease_next_clip(round_id=round_.pk, annotator=annotator, exclude=[clips[2].pk])
    assert nxt.clip_id not in (clips[2].pk,)
    # Two leases (current + preloaded) are the most one annotator holds.
    assert (
        lease_next_clip(round_id=round_.pk, annotator=annotator, exclude=[clips[2].pk, nxt.clip_id])
        is None
    )


@pytest.mark.django_db
def test_quota_no_annotator_twice_and_expired_lease_frees_slot():
    round_ = make_round(ratings_per_clip=2)
    clip = make_ready_clips(round_, 1)[0]
    a, b, c = (make_user(n, "annotator") for n in "abc")
    assert lease_next_clip(round_id=round_.pk, annotator=a).clip_id == clip.pk
    assert lease_next_clip(round_id=round_.pk, annotator=b).clip_id == clip.pk
    assert lease_next_clip(round_id=round_.pk, annotator=c) is None  # both slots leased
    Lease.objects.filter(annotator=b).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_next_clip(round_id=round_.pk, annotator=c).clip_id == clip.pk
    rate(clip.pk, a)
    with pytest.raises(RatingError, match="already rated"):
        rate(clip.pk, a)
    # b's lease expired and c took the slot: b's late submit is refused, nothing is lost.
    with pytest.raises(RatingError, match="expired"):
        rate(clip.pk, b)
    rate(clip.pk, c)
    clip.refresh_from_db()
    assert clip.rating_count == 2 and lease_next_clip(round_id=round_.pk, annotator=b) is None


@pytest.mark.django_db
def test_repeated_submit_with_same_key_saves_once(annotator):
    clip = make_ready_clips(make_round(), 1)[0]
    key = uuid.uuid4()
    hold(clip.pk, annotator)
    first = submit_rating(
        clip_id=clip.pk, annotator=annotator, scores=scores(4), idempotency_key=key
    )
    again = submit_rating(
        clip_id=clip.pk, annotator=annotator, scores=scores(4), idempotency_key=key
    )
    assert first.created and not again.created and first.rating.pk == again.rating.pk
    clip.refresh_from_db()
    assert clip.rating_count == 1 and Rating.objects.count() == 1


@pytest.mark.django_db
def test_skipped_clip_goes_to_others_and_two_flags_pull_it():
    round_ = make_round()
    clip = make_ready_clips(round_, 1)[0]
    a, b, c = (make_user(n, "annotator") for n in "abc")
    lease_next_clip(round_id=round_.pk, annotator=a)
    skip_clip(clip_id=clip.pk, annotator=a, reason="unsure")
    assert lease_next_clip(round_id=round_.pk, annotator=a) is None
    assert lease_next_clip(round_id=round_.pk, annotator=b).clip_id == clip.pk
    skip_clip(clip_id=clip.pk, annotator=b, reason="does not play", broken=True)
    assert lease_next_clip(round_id=round_.pk, annotator=c).clip_id == clip.pk
    skip_clip(clip_id=clip.pk, annotator=c, reason="corrupt", broken=True)
    clip.refresh_from_db()
    assert clip.status == Clip.Status.PULLED
    assert lease_next_clip(round_id=round_.pk, annotator=make_user("d", "annotator")) is None
    with pytest.raises(RatingError, match="reason is required"):
        skip_clip(clip_id=clip.pk, annotator=a, reason="  ")


@pytest.mark.django_db
def test_label_mean_std_count_and_overall_by_hand(annotator):
    clip = make_ready_clips(make_round(), 1)[0]
    b, c = make_user("b", "annotator"), make_user("c", "annotator")
    rate(clip.pk, annotator, 1, visual_motion=5)
    rate(clip.pk, b, 2, visual_motion=5)
    rate(clip.pk, c, 3, visual_motion=2)
    label = ClipLabel.objects.get(clip=clip)
    assert label.count == 3
    assert label.visual_smoothness_mean == pytest.approx(2.0)
    assert label.visual_smoothness_std == pytest.approx((2 / 3) ** 0.5)  # population std of 1,2,3
    assert label.visual_motion_mean == pytest.approx(4.0)
    assert label.overall == pytest.approx((2.0 * 5 + 4.0) / 6)
    assert recompute_all_labels(dry_run=True).ok


@pytest.mark.django_db
def test_recompute_reports_and_fixes_a_tampered_label(annotator):
    clips = make_ready_clips(make_round(), 2)
    rate(clips[0].pk, annotator, 4)
    rate(clips[1].pk, annotator, 2)
    ClipLabel.objects.filter(clip=clips[1]).update(visual_appeal_mean=5.0)
    report = recompute_all_labels(dry_run=True)
    assert report.differing == [clips[1].pk] and report.clips == 2
    recompute_all_labels()
    assert recompute_all_labels(dry_run=True).ok
    assert ClipLabel.objects.get(clip=clips[1]).visual_appeal_mean == 2.0


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_overfill_or_double_rate_or_lose_aggregates():
    """12 threads lease and submit at once over 20 clips needing 3 ratings each (60 slots)."""
    round_ = make_round(ratings_per_clip=3)
    make_ready_clips(round_, 20)
    users = [make_user(f"ann{i}", "annotator") for i in range(12)]
    submitted = []

    def work(user):
        rng = random.Random(user.pk)
        while (lease := lease_next_clip(round_id=round_.pk, annotator=user)) is not None:
            result = submit_rating(
                clip_id=lease.clip_id,
                annotator=user,
                scores=scores(rng.randint(1, 5), visual_motion=rng.randint(1, 5)),
                idempotency_key=uuid.uuid4(),
            )
            submitted.append(result.rating.pk)

    all_at_once(work, users)
    assert len(submitted) == 60
    for clip in Clip.objects.filter(round=round_):
        ratings = Rating.objects.filter(clip=clip)
        assert clip.rating_count == ratings.count() == 3
        assert ratings.values("annotator").distinct().count() == 3
    assert recompute_all_labels(dry_run=True).ok
    assert ClipLabel.objects.filter(clip__round=round_, count=3).count() == 20


@pytest.mark.django_db
def test_correction_supersedes_the_rating_and_updates_the_label(annotator):
    from annotation.services.ratings import correct_rating

    clip = make_ready_clips(make_round(), 1)[0]
    first = rate(clip.pk, annotator, 2)
    new = correct_rating(rating_id=first.pk, annotator=annotator, scores=scores(4))
    first.refresh_from_db()
    assert not first.is_current and new.supersedes_id == first.pk and new.is_current
    clip.refresh_from_db()
    assert clip.rating_count == 1  # still one rater
    assert ClipLabel.objects.get(clip=clip).overall == pytest.approx(4.0)
    assert recompute_all_labels(dry_run=True).ok
    with pytest.raises(RatingError, match="already corrected"):
        correct_rating(rating_id=first.pk, annotator=annotator, scores=scores(5))
