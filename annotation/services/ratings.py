"""Submitting, correcting and skipping ratings; flags that pull a clip and the lead's restore.

Every write locks the clip row first (the same order as assignment), then writes the rating and
its ClipLabel in the same transaction, so concurrent submits never over-fill a clip or lose an
aggregate. A repeated submit with the same idempotency key returns the rating already saved.

The trust boundary: an annotator acts only on a clip the assignment service leased to them (a
correction only on their own rating), in an open round, while the clip is ready. Anything else
is refused before a row is written, so colluding accounts cannot choose which clips they rate,
and a flag counts only from someone who was shown the clip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotation.models import AuditEntry, Clip, Lease, Rating, Round, Skip
from annotation.services.assignment import active_lease_count
from annotation.services.labels import update_label
from annotation.services.overlap import raise_target_if_disagreeing
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN

MAX_SECONDS_SPENT = 24 * 3600


class RatingError(Exception):
    """A rating that cannot be saved; ``code`` says why (for the API's status code):
    ``invalid`` (400), ``forbidden`` (403: not the caller's clip), ``not_found`` (404),
    ``conflict`` (409: the round or clip no longer takes ratings, or it was done already)."""

    def __init__(self, message: str, *, code: str = "invalid"):
        super().__init__(message)
        self.code = code


def validate_scores(scores: dict) -> dict[str, int]:
    """Exactly the six dimensions, each an integer 1-5; a clear message otherwise."""
    if not isinstance(scores, dict):
        raise RatingError("scores must be an object with the six dimensions")
    missing = [k for k in DIMENSION_KEYS if k not in scores or scores[k] in (None, "")]
    if missing:
        raise RatingError(f"missing score(s) for {', '.join(missing)}")
    unknown = sorted(set(scores) - set(DIMENSION_KEYS))
    if unknown:
        raise RatingError(f"unknown dimension(s) {', '.join(unknown)}")
    clean = {}
    for key in DIMENSION_KEYS:
        value = scores[key]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise RatingError(
                f"{key} must be a whole number from {SCORE_MIN} to {SCORE_MAX}, got {value!r}"
            )
        try:
            number = int(value)
        except ValueError:
            raise RatingError(
                f"{key} must be a whole number from {SCORE_MIN} to {SCORE_MAX}, got {value!r}"
            ) from None
        if not SCORE_MIN <= number <= SCORE_MAX:
            raise RatingError(f"{key} must be from {SCORE_MIN} to {SCORE_MAX}, got {number}")
        clean[key] = number
    return clean


@dataclass(frozen=True)
class SubmitResult:
    rating: Rating
    created: bool  # False when an identical earlier submit (same idempotency key) was returned


def submit_rating(
    *,
    clip_id: int,
    annotator,
    scores: dict,
    seconds_spent: float = 0.0,
    idempotency_key: uuid.UUID | str,
) -> SubmitResult:
    """Save one annotator's six scores for a clip and update its label, atomically."""
    clean = validate_scores(scores)
    try:
        key = uuid.UUID(str(idempotency_key))
    except ValueError:
        raise RatingError("idempotency_key must be a UUID") from None
    seconds = float(seconds_spent or 0.0)
    if not 0 <= seconds <= MAX_SECONDS_SPENT:
        raise RatingError(f"seconds_spent must be between 0 and {MAX_SECONDS_SPENT}")
    now = timezone.now()
    with transaction.atomic():
        clip = _lock_clip(clip_id)
        # One read for both "was this submit already saved?" and "did I rate this clip already?".
        existing = list(
            Rating.objects.filter(
                Q(idempotency_key=key) | Q(clip=clip, annotator=annotator, is_current=True)
            )
        )
        previous = next((r for r in existing if r.idempotency_key == key), None)
        if previous is not None:
            if previous.clip_id != clip.pk or previous.annotator_id != annotator.pk:
                raise RatingError(
                    "this idempotency_key was already used for another rating", code="conflict"
                )
            return SubmitResult(previous, created=False)
        if existing:
            raise RatingError("you have already rated this clip", code="conflict")
        # The lease ends with this submit; an error below rolls the delete back.
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM annotation_lease WHERE clip_id = %s AND annotator_id = %s RETURNING expires_at",
                [clip.pk, annotator.pk],
            )
            row = cursor.fetchone()
        if row is None:
            raise RatingError(_NOT_YOUR_CLIP, code="forbidden")
        _check_clip_open(clip)  # only a holder learns why their clip no longer takes ratings
        if row[0] <= now:
            # A lapsed lease still counts while its slot is free: slow work is not thrown away.
            taken = clip.rating_count + active_lease_count(
                clip.pk, now=now, exclude_annotator_id=annotator.pk
            )
            if taken >= clip.target_ratings:
                raise RatingError(
                    "your lease on this clip expired and it has been given to other annotators",
                    code="conflict",
                )
        rating = Rating.objects.create(
            clip=clip, annotator=annotator, seconds_spent=seconds, idempotency_key=key, **clean
        )
        Clip.objects.filter(pk=clip.pk).update(rating_count=F("rating_count") + 1)
        update_label(clip.pk, ratings_removed=False)
        _after_rating(clip.pk)
    return SubmitResult(rating, created=True)


def _after_rating(clip_id: int) -> None:
    """Hook for policies that react to a new rating inside its transaction (adaptive overlap)."""
    raise_target_if_disagreeing(clip_id=clip_id)


def correct_rating(
    *, rating_id: int, annotator, scores: dict, seconds_spent: float = 0.0
) -> Rating:
    """Replace an annotator's own current rating with a new row that supersedes it."""
    clean = validate_scores(scores)
    with transaction.atomic():
        old = Rating.objects.filter(pk=rating_id).first()
        if old is None or old.annotator_id != annotator.pk:
            raise RatingError("no such rating of yours", code="not_found")
        clip = _lock_clip(old.clip_id)
        old = Rating.objects.select_for_update().get(pk=rating_id)
        if not old.is_current:
            raise RatingError("this rating was already corrected", code="conflict")
        _check_clip_open(clip)
        Rating.objects.filter(pk=old.pk).update(is_current=False)
        new = Rating.objects.create(
            clip_id=old.clip_id,
            annotator=annotator,
            seconds_spent=float(seconds_spent or 0),
            supersedes=old,
            **clean,
        )
        update_label(old.clip_id)
        _after_rating(old.clip_id)  # a correction can open (or settle) a disagreement too
    return new


def skip_clip(*, clip_id: int, annotator, reason: str, broken: bool = False) -> Skip:
    """Pass on a clip the caller holds, with a reason (or flag it broken); it goes back to others.

    Only the annotator leased the clip may skip or flag it (a lapsed lease still counts: they
    were shown the clip). A clip flagged broken by ``LABELHUB_FLAGS_TO_PULL_CLIP`` of its holders
    is pulled from rating, with an audit entry listing the flags; a lead can restore it.
    """
    reason = (reason or "").strip()
    if not reason:
        raise RatingError("a reason is required")
    with transaction.atomic():
        clip = _lock_clip(clip_id)
        held, _lease_deleted = Lease.objects.filter(clip=clip, annotator=annotator).delete()
        if not held:
            raise RatingError(_NOT_YOUR_CLIP, code="forbidden")
        _check_clip_open(clip)  # raising rolls the lease delete back
        skip, created = Skip.objects.get_or_create(
            clip=clip, annotator=annotator, defaults={"reason": reason[:500], "broken": broken}
        )
        if not created and broken and not skip.broken:
            skip.broken = True
            skip.reason = reason[:500]
            skip.save(update_fields=["broken", "reason"])
        if broken:
            flags = list(Skip.objects.filter(clip=clip, broken=True).order_by("created_at", "pk"))
            if len(flags) >= settings.LABELHUB_FLAGS_TO_PULL_CLIP:
                Clip.objects.filter(pk=clip.pk).update(status=Clip.Status.PULLED)
                AuditEntry.objects.create(
                    action=AuditEntry.Action.PULL_CLIP,
                    clip=clip,
                    details={"flags": [_flag_record(f) for f in flags]},
                )
    return skip


def restore_clip(*, clip_id: int, lead) -> AuditEntry:
    """Put a pulled clip back into rating; its flags are kept as skips and written to the audit.

    The flaggers keep their skip (they are not shown the clip again); their flags stop counting,
    so a restored clip is pulled again only by new flags from annotators who hold it.
    """
    with transaction.atomic():
        clip = _lock_clip(clip_id)
        if clip.status != Clip.Status.PULLED:
            raise RatingError(f"clip {clip.pk} is not pulled", code="conflict")
        flags = list(
            Skip.objects.filter(clip=clip, broken=True)
            .select_related("annotator")
            .order_by("created_at", "pk")
        )
        Skip.objects.filter(pk__in=[f.pk for f in flags]).update(broken=False)
        Clip.objects.filter(pk=clip.pk).update(status=Clip.Status.READY)
        return AuditEntry.objects.create(
            action=AuditEntry.Action.RESTORE_CLIP,
            actor=lead,
            clip=clip,
            details={"flags": [_flag_record(f) for f in flags]},
        )


_NOT_YOUR_CLIP = (
    "you do not hold this clip: ask for your next clip (POST /api/rounds/<id>/next/) "
    "and act on the one you are given"
)


def _lock_clip(clip_id: int) -> Clip:
    clip = Clip.objects.select_for_update(of=("self",)).select_related("round").filter(pk=clip_id)
    clip = clip.first()
    if clip is None:
        raise RatingError(f"clip {clip_id} does not exist", code="not_found")
    return clip


def _check_clip_open(clip: Clip) -> None:
    """Ratings, skips and flags only while the round is open and the clip is ready."""
    if clip.round.status != Round.Status.OPEN:
        raise RatingError(f"round '{clip.round.name}' is closed", code="conflict")
    if clip.status != Clip.Status.READY:
        raise RatingError("this clip was pulled from rating", code="conflict")


def _flag_record(flag: Skip) -> dict:
    return {
        "annotator_id": flag.annotator_id,
        "reason": flag.reason,
        "at": flag.created_at.isoformat(),
    }
