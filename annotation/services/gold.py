"""Gold clips: clips with a lead's reference scores, mixed into annotators' queues at a set rate.

A gold clip is served only from its own pool (assignment's normal pool leaves it out), to any
annotator who has not seen it yet, regardless of how many ratings it already has. Each block of
``round(1 / gold_rate)`` clips an annotator is served holds exactly one gold clip, at a position
drawn from a hash of (annotator, round, block): the rate is exact and the position unpredictable,
and it looks like any other clip on screen.
"""

from __future__ import annotations

import hashlib

from annotation.models import Clip, ClipLabel, GoldReference
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN
from labelhub.errors import ServiceError

# A gold rating "agrees" on a dimension when it is within this many points of the reference.
GOLD_TOLERANCE = 1


class GoldError(ServiceError):
    """A gold reference that cannot be set; the message says why."""


def set_gold_reference(
    *, clip_id: int, scores: dict, created_by=None, note: str = ""
) -> GoldReference:
    """Mark a clip as gold with the lead's six reference scores (replacing earlier ones)."""
    clean = {}
    for key in DIMENSION_KEYS:
        value = scores.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not SCORE_MIN <= value <= SCORE_MAX
        ):
            raise GoldError(
                f"{key} must be a whole number from {SCORE_MIN} to {SCORE_MAX}, got {value!r}"
            )
        clean[key] = value
    if not Clip.objects.filter(pk=clip_id).exists():
        raise GoldError(f"clip {clip_id} does not exist", code="not_found")
    gold, _created = GoldReference.objects.update_or_create(
        clip_id=clip_id, defaults={**clean, "note": note[:500], "created_by": created_by}
    )
    return gold


def set_gold_from_labels(*, clip_id: int, created_by=None, note: str = "") -> GoldReference:
    """Mark a clip as gold with its human means rounded to whole scores (a lead adjusts them on
    the clip page); a clip nobody has rated yet has none to give."""
    label = ClipLabel.objects.filter(clip_id=clip_id, count__gt=0).first()
    if label is None:
        raise GoldError(f"clip {clip_id} has no human ratings yet", code="conflict")
    scores = {key: int(round(getattr(label, f"{key}_mean"))) for key in DIMENSION_KEYS}
    return set_gold_reference(clip_id=clip_id, scores=scores, created_by=created_by, note=note)


def remove_gold_reference(*, clip_id: int) -> None:
    GoldReference.objects.filter(clip_id=clip_id).delete()


def gold_block_size(gold_rate: float) -> int:
    return max(1, round(1 / gold_rate))


def _gold_position(annotator_id: int, round_id: int, block: int, size: int) -> int:
    digest = hashlib.sha256(f"gold:{annotator_id}:{round_id}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def gold_is_due(
    *, gold_rate: float, annotator_id: int, round_id: int, served: int, gold_served: int
) -> bool:
    """Whether the annotator's next clip in the round should be a gold clip.

    ``served``: clips of the round the annotator rated (current ratings) or holds an active lease
    on; ``gold_served``: how many of those are gold. Assignment counts both in the statement that
    reads the annotator's state, so this is arithmetic only.
    """
    if gold_rate <= 0:
        return False
    size = gold_block_size(gold_rate)
    block_start = gold_served * size
    return served >= block_start + _gold_position(annotator_id, round_id, gold_served, size)
