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
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotation.models import AuditEntry, Clip, GoldReference, Lease, Rating, Round, Skip
from annotation.selectors.clips import (
    cached_round_totals,
    remember_round_totals,
)
from annotation.services.assignment import active_lease_count, instance_from_db
from annotation.services.labels import add_rating, update_label
from annotation.services.overlap import (
    needs_another_rater,
    raise_target,
    raise_target_if_disagreeing,
)
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN
from labelhub.errors import ServiceError

MAX_SECONDS_SPENT = 24 * 3600


class RatingError(ServiceError):
    """A rating that cannot be saved; ``code`` says why: ``invalid``, ``forbidden`` (not the
    caller's clip), ``not_found``, ``conflict`` (the round or clip no longer takes ratings, or it
    was done already)."""


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
    # The annotator's current ratings in the clip's round, this one included (None when
    # ``created`` is False: not counted then).
    rated_in_round: int | None = None
    # The round's totals when the statements counted them (the shared cache had none).
    round_totals: dict | None = None


# One statement locks the clip and checks the submit: the clip with its round; earlier ratings
# with this idempotency key or of this annotator for this clip; the caller's lease, deleted once
# the clip is locked (an error after it rolls the delete back) unless such a rating exists; the
# annotator's current ratings in the round (for progress). Its reads share the statement's snapshot, older than the lock, so the
# paths that depend on a concurrent change read again (``_recheck``): no lease found, or a lease
# that lapsed.
_LOCK_AND_CHECK_SQL = """
    WITH locked AS MATERIALIZED (
        SELECT c.id, c.round_id, c.status, c.rating_count, c.target_ratings,
               r.name, r.status, r.disagreement_std, r.max_ratings_per_clip,
               EXISTS (SELECT 1 FROM annotation_goldreference g WHERE g.clip_id = c.id)
          FROM annotation_clip c JOIN annotation_round r ON r.id = c.round_id
         WHERE c.id = %(clip)s
           FOR UPDATE OF c
    ), prior AS (
        SELECT id FROM annotation_rating
         WHERE idempotency_key = %(key)s
            OR (clip_id = %(clip)s AND annotator_id = %(me)s AND is_current)
    ), lease AS (
        DELETE FROM annotation_lease
         WHERE clip_id = %(clip)s AND annotator_id = %(me)s
           AND EXISTS (SELECT 1 FROM locked) AND NOT EXISTS (SELECT 1 FROM prior)
        RETURNING expires_at
    )
    SELECT locked.*,
           ARRAY(SELECT id FROM prior),
           (SELECT expires_at FROM lease),
           (SELECT count(*) FROM annotation_rating t JOIN annotation_clip c ON c.id = t.clip_id
             WHERE t.annotator_id = %(me)s AND t.is_current AND c.round_id = locked.round_id)
      FROM locked
"""


def submit_rating(
    *,
    clip_id: int,
    annotator,
    scores: dict,
    seconds_spent: float = 0.0,
    idempotency_key: uuid.UUID | str,
) -> SubmitResult:
    """Save one annotator's six scores for a clip and update its label, atomically.

    Two statements on the way through: lock the clip and check the submit (ending the lease),
    then insert the rating with its clip count and label (``labels.add_rating``, which also
    counts the round's totals when the shared cache has none); a third when adaptive overlap
    raises the clip's target.
    """
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
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_AND_CHECK_SQL, {"key": key, "clip": clip_id, "me": annotator.pk})
            row = cursor.fetchone()
        if row is None:
            raise RatingError(f"clip {clip_id} does not exist", code="not_found")
        clip = _clip_from_row(row[:10])
        prior_ids, lease_expires_at, rated_in_round = row[10:]
        if prior_ids or lease_expires_at is None:
            previous = _recheck(clip=clip, annotator=annotator, key=key)
            if previous is not None:
                return SubmitResult(previous, created=False)
        _check_clip_open(clip)  # only a holder learns why their clip no longer takes ratings
        if lease_expires_at <= now:
            # A lapsed lease still counts while its slot is free: slow work is not thrown away.
            taken = clip.rating_count + active_lease_count(
                clip.pk, now=now, exclude_annotator_id=annotator.pk
            )
            if taken >= clip.target_ratings:
                raise RatingError(
                    "your lease on this clip expired and it has been given to other annotators",
                    code="conflict",
                )
        totals = cached_round_totals(clip.round_id)
        added = add_rating(
            clip_id=clip.pk,
            annotator_id=annotator.pk,
            scores=clean,
            seconds_spent=seconds,
            idempotency_key=key,
            now=now,
            round_totals_of=clip.round_id if totals is None else None,
        )
        raised = needs_another_rater(
            rating_count=added.rating_count,
            target_ratings=clip.target_ratings,
            max_ratings_per_clip=clip.round.max_ratings_per_clip,
            disagreement_std=clip.round.disagreement_std,
            is_gold=clip.is_gold,
            stds=added.stds,
        )
        if raised:
            raise_target(clip_id=clip.pk)
    round_totals = None
    if totals is None:
        done, target, left = added.round_totals_before  # this rating and its effect added
        finished = added.rating_count >= clip.target_ratings and not raised
        round_totals = remember_round_totals(
            clip.round_id,
            name=clip.round.name,
            done=done + 1,
            target=target + raised,
            left=left - finished,
        )
    clip.rating_count = added.rating_count
    clip.target_ratings += raised
    rating = instance_from_db(
        Rating,
        id=added.rating_id,
        clip_id=clip.pk,
        annotator_id=annotator.pk,
        seconds_spent=seconds,
        idempotency_key=key,
        is_current=True,
        supersedes_id=None,
        created_at=now,
        **clean,
    )
    rating.clip, rating.annotator = clip, annotator
    return SubmitResult(
        rating, created=True, rated_in_round=rated_in_round + 1, round_totals=round_totals
    )


def _clip_from_row(row) -> Clip:
    clip_id, round_id, status, rating_count, target, name, round_status, std, max_, gold = row
    clip = instance_from_db(
        Clip,
        id=clip_id,
        round_id=round_id,
        status=status,
        rating_count=rating_count,
        target_ratings=target,
    )
    clip.round = instance_from_db(
        Round,
        id=round_id,
        name=name,
        status=round_status,
        disagreement_std=std,
        max_ratings_per_clip=max_,
    )
    clip.is_gold = gold  # not a model field: adaptive overlap skips gold clips
    return clip


def _recheck(*, clip: Clip, annotator, key: uuid.UUID) -> Rating | None:
    """Read again, now the clip is locked, why a submit found no lease of the caller's (or an
    earlier rating): the earlier rating of an identical submit (returned), or the refusal."""
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
        return previous
    if existing:
        raise RatingError("you have already rated this clip", code="conflict")
    raise RatingError(_NOT_YOUR_CLIP, code="forbidden")


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


def _lock_clip(clip_id: int, *, with_gold: bool = False) -> Clip:
    """The clip row, locked, with its round (and ``is_gold`` when asked)."""
    clip = Clip.objects.select_for_update(of=("self",)).select_related("round").filter(pk=clip_id)
    if with_gold:
        clip = clip.annotate(is_gold=Exists(GoldReference.objects.filter(clip_id=OuterRef("pk"))))
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
