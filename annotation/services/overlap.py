"""Adaptive overlap: a clip whose raters disagree gets another rater, up to a per-round maximum.

Runs inside the rating's transaction while the caller holds the clip row lock (the same lock
assignment takes before creating a lease), so two concurrent submits can never both raise the
target past the maximum, and a raised target is seen by the next lease under the same lock.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from annotation.models import Clip, ClipLabel, GoldReference


def raise_target_if_disagreeing(*, clip_id: int) -> bool:
    """Add one to the clip's target when its target is met and any dimension's std exceeds the
    round's ``disagreement_std`` and the target is below ``max_ratings_per_clip``.

    Call with the clip row locked. Returns True when the target was raised.
    """
    clip = (
        Clip.objects.select_related("round")
        .only(
            "rating_count",
            "target_ratings",
            "round__disagreement_std",
            "round__max_ratings_per_clip",
        )
        .get(pk=clip_id)
    )
    threshold = clip.round.disagreement_std
    if threshold is None or clip.rating_count < clip.target_ratings:
        return False
    if clip.target_ratings >= clip.round.max_ratings_per_clip:
        return False
    if GoldReference.objects.filter(clip_id=clip_id).exists():
        return False  # gold clips are judged against their reference, not by more raters
    label = ClipLabel.objects.filter(clip_id=clip_id).first()
    if label is None or max(label.stds().values()) <= threshold:
        return False
    Clip.objects.filter(pk=clip_id).update(target_ratings=F("target_ratings") + 1)
    return True


class OverlapError(Exception):
    """A target that cannot be raised; the message says why."""


def request_extra_rating(*, clip_id: int) -> Clip:
    """One more rating for a clip a lead wants checked (model-assisted QA): its target goes up
    by one, up to the round's ``max_ratings_per_clip``."""
    with transaction.atomic():
        clip = Clip.objects.select_for_update().select_related("round").filter(pk=clip_id).first()
        if clip is None:
            raise OverlapError(f"clip {clip_id} does not exist")
        if clip.target_ratings >= clip.round.max_ratings_per_clip:
            raise OverlapError(
                f"clip {clip_id} already needs {clip.target_ratings} ratings, the round's maximum "
                "(raise max ratings per clip in the round settings)"
            )
        clip.target_ratings += 1
        clip.save(update_fields=["target_ratings"])
        return clip
