"""Adaptive overlap: a clip whose raters disagree gets another rater, up to a per-round maximum.

Runs inside the rating's transaction while the caller holds the clip row lock (the same lock
assignment takes before creating a lease), so two concurrent submits can never both raise the
target past the maximum, and a raised target is seen by the next lease under the same lock.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, F, OuterRef

from annotation.models import Clip, GoldReference
from labelhub.errors import ServiceError


def needs_another_rater(
    *,
    rating_count: int,
    target_ratings: int,
    max_ratings_per_clip: int,
    disagreement_std: float | None,
    is_gold: bool,
    stds: dict[str, float],
) -> bool:
    """Whether a clip gets one more rater: its target is met, it is below the round's
    ``max_ratings_per_clip``, it is not gold (gold clips are judged against their reference, not
    by more raters) and some dimension's std exceeds the round's ``disagreement_std``."""
    return (
        disagreement_std is not None
        and rating_count >= target_ratings
        and target_ratings < max_ratings_per_clip
        and not is_gold
        and max(stds.values()) > disagreement_std
    )


def raise_target(*, clip_id: int) -> None:
    """Add one to the clip's target (call with the clip row locked)."""
    Clip.objects.filter(pk=clip_id).update(target_ratings=F("target_ratings") + 1)


def raise_target_if_disagreeing(*, clip_id: int) -> bool:
    """Read the clip's state and raise its target if ``needs_another_rater`` says so (after a
    correction; a new rating decides from the values its own statement returned).

    Call with the clip row locked. Returns True when the target was raised.
    """
    clip = (
        Clip.objects.select_related("round", "label")
        .annotate(is_gold=Exists(GoldReference.objects.filter(clip_id=OuterRef("pk"))))
        .get(pk=clip_id)
    )
    label = getattr(clip, "label", None)
    if label is None:
        return False
    raise_ = needs_another_rater(
        rating_count=clip.rating_count,
        target_ratings=clip.target_ratings,
        max_ratings_per_clip=clip.round.max_ratings_per_clip,
        disagreement_std=clip.round.disagreement_std,
        is_gold=clip.is_gold,
        stds=label.stds(),
    )
    if raise_:
        raise_target(clip_id=clip_id)
    return raise_


class OverlapError(ServiceError):
    """A target that cannot be raised; the message says why."""


def request_extra_rating(*, clip_id: int) -> Clip:
    """One more rating for a clip a lead wants checked (model-assisted QA): its target goes up
    by one, up to the round's ``max_ratings_per_clip``."""
    with transaction.atomic():
        clip = Clip.objects.select_for_update().select_related("round").filter(pk=clip_id).first()
        if clip is None:
            raise OverlapError(f"clip {clip_id} does not exist", code="not_found")
        if clip.target_ratings >= clip.round.max_ratings_per_clip:
            raise OverlapError(
                f"clip {clip_id} already needs {clip.target_ratings} ratings, the round's maximum "
                "(raise max ratings per clip in the round settings)"
            )
        clip.target_ratings += 1
        clip.save(update_fields=["target_ratings"])
        return clip
