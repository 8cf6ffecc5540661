"""Gold clips: clips with a lead's reference scores, mixed into annotators' queues at a set rate.

A gold clip is served only through this module (assignment's normal pool leaves it out), to any
annotator who has not seen it yet, regardless of how many ratings it already has. Each block of
``round(1 / gold_rate)`` clips an annotator is served holds exactly one gold clip, at a position
drawn from a hash of (annotator, round, block): the rate is exact and the position unpredictable,
and it looks like any other clip on screen.
"""

from __future__ import annotations

import hashlib

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from annotation.models import Clip, GoldReference, Lease, Rating, Round, Skip
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN

# A gold rating "agrees" on a dimension when it is within this many points of the reference.
GOLD_TOLERANCE = 1


class GoldError(Exception):
    pass


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
        raise GoldError(f"clip {clip_id} does not exist")
    gold, _created = GoldReference.objects.update_or_create(
        clip_id=clip_id, defaults={**clean, "note": note[:500], "created_by": created_by}
    )
    return gold


def remove_gold_reference(*, clip_id: int) -> None:
    GoldReference.objects.filter(clip_id=clip_id).delete()


def gold_block_size(gold_rate: float) -> int:
    return max(1, round(1 / gold_rate))


def _gold_position(annotator_id: int, round_id: int, block: int, size: int) -> int:
    digest = hashlib.sha256(f"gold:{annotator_id}:{round_id}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def gold_due(*, round_: Round, annotator, now) -> bool:
    """Whether the annotator's next clip in the round should be a gold clip."""
    if round_.gold_rate <= 0:
        return False
    in_round = Q(clip__round_id=round_.pk)
    is_gold = Q(Exists(GoldReference.objects.filter(clip_id=OuterRef("clip_id"))))
    rated = Rating.objects.filter(in_round, annotator=annotator, is_current=True)
    held = Lease.objects.filter(in_round, annotator=annotator, expires_at__gt=now)
    served = rated.count() + held.count()
    gold_served = rated.filter(is_gold).count() + held.filter(is_gold).count()
    size = gold_block_size(round_.gold_rate)
    block_start = gold_served * size
    return served >= block_start + _gold_position(annotator.pk, round_.pk, gold_served, size)


def lease_gold_clip_if_due(
    *, round_: Round, annotator, exclude: list[int], now, expires_at
) -> Lease | None:
    """If a gold clip is due, lease one the annotator has not seen (clip row locked first)."""
    if not gold_due(round_=round_, annotator=annotator, now=now):
        return None
    seen = Q(Exists(Rating.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    seen |= Q(Exists(Skip.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    seen |= Q(Exists(Lease.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    with transaction.atomic():
        clip = (
            Clip.objects.filter(round_id=round_.pk, status=Clip.Status.READY, gold__isnull=False)
            .exclude(pk__in=exclude)
            .exclude(seen)
            .select_related("condition")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
            .first()
        )
        if clip is None:
            return None
        lease = Lease.objects.create(clip=clip, annotator=annotator, expires_at=expires_at)
        lease.clip = clip
        return lease


def is_gold_clip_filter(outer_ref: str = "pk") -> Exists:
    """``Exists`` expression true for gold clips (assignment's normal pool excludes them)."""
    return Exists(GoldReference.objects.filter(clip_id=OuterRef(outer_ref)))
