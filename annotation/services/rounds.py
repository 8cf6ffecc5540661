"""Rounds: creating one, and the settings a lead can change while a round runs: quotas, leases,
gold rate, overlap, status.

Limits mirror the ``Round`` table's check constraints, so a bad value is refused here with a
sentence a lead can act on instead of failing as an ``IntegrityError``.
"""

from __future__ import annotations

import math

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from annotation.models import Clip, Round
from labelhub.errors import ServiceError

RATINGS_MIN, RATINGS_MAX = 1, 20  # round_ratings_per_clip_1_20 / round_max_ratings_per_clip_1_20
LEASE_MINUTES_MAX = 32767  # the column is a smallint
EDITABLE_FIELDS = (
    "ratings_per_clip",
    "lease_minutes",
    "gold_rate",
    "disagreement_std",
    "max_ratings_per_clip",
    "status",
    "queue_order",
)


class RoundSettingsError(ServiceError):
    """Round settings that cannot be saved; the message says which and why."""


def create_round(*, name: str, ratings_per_clip: int | None = None) -> tuple[Round, bool]:
    """The round named ``name`` and whether it was created now (with ``ratings_per_clip``, else
    the table's default); an existing round keeps its settings. Safe under concurrent calls."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or "\x00" in name or len(name) > Round._meta.get_field("name").max_length:
        raise RoundSettingsError(f"a round needs a name of 1 to 200 characters, got {name[:40]!r}")
    defaults = {}
    if ratings_per_clip is not None:
        if not RATINGS_MIN <= ratings_per_clip <= RATINGS_MAX:
            raise RoundSettingsError(
                f"ratings per clip must be {RATINGS_MIN} to {RATINGS_MAX}, got {ratings_per_clip}"
            )
        defaults["ratings_per_clip"] = ratings_per_clip
    return Round.objects.get_or_create(name=name, defaults=defaults)


def update_round_settings(
    *, round_id: int, apply_to_existing_clips: bool = False, **fields
) -> Round:
    """Change some of a round's settings (any of ``EDITABLE_FIELDS``) and return the round.

    Values are checked before anything is written; one bad value refuses the whole change.
    Checks across fields use the new value where given and the stored one otherwise:
    ``max_ratings_per_clip`` may not be below ``ratings_per_clip``.

    A new ``ratings_per_clip`` is the target of clips ingested from now on. Existing clips keep
    their ``target_ratings`` (a lead may have tuned the round on purpose; adaptive overlap may
    have raised some) unless ``apply_to_existing_clips`` is true; then one UPDATE applies the
    change from the previous value:

    * raised: every clip whose target is below the new figure gets it, finished clips included
      (they "have not reached it"); targets already above it (adaptive overlap) are kept.
    * lowered: every clip still collecting with a target above the new figure drops to the new
      figure, but never below the ratings it already has, so no clip ends up over-filled.

    Raises ``RoundSettingsError`` with a sentence for the lead on any bad value.
    """
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        raise RoundSettingsError(f"unknown round setting(s): {', '.join(unknown)}")
    clean = {key: _CHECKS[key](value) for key, value in fields.items()}
    with transaction.atomic():
        round_ = Round.objects.select_for_update().filter(pk=round_id).first()
        if round_ is None:
            raise RoundSettingsError(f"round {round_id} does not exist", code="not_found")
        previous_ratings_per_clip = round_.ratings_per_clip
        for key, value in clean.items():
            setattr(round_, key, value)
        if round_.max_ratings_per_clip < round_.ratings_per_clip:
            raise RoundSettingsError(
                f"max ratings per clip ({round_.max_ratings_per_clip}) must be at least the "
                f"ratings per clip ({round_.ratings_per_clip})"
            )
        round_.save(update_fields=list(clean))
        if apply_to_existing_clips:
            _apply_ratings_per_clip(
                round_id=round_.pk, old=previous_ratings_per_clip, new=round_.ratings_per_clip
            )
    return round_


def _apply_ratings_per_clip(*, round_id: int, old: int, new: int) -> int:
    """Move existing clips' targets from ``old`` to ``new`` (see the caller); rows changed."""
    clips = Clip.objects.filter(round_id=round_id)
    if new > old:
        return clips.filter(target_ratings__lt=new).update(
            target_ratings=Greatest(Value(new), F("rating_count"))
        )
    if new < old:
        return clips.filter(target_ratings__gt=new, rating_count__lt=F("target_ratings")).update(
            target_ratings=Greatest(Value(new), F("rating_count"))
        )
    return 0


# --- Per-field checks: each returns the clean value or raises RoundSettingsError ---------------


def _whole(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RoundSettingsError(
            f"{name} must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RoundSettingsError(f"{name} must be a number, got {value!r}")
    return float(value)


GOLD_RATE_MIN = 0.001  # one gold clip in 1,000; a smaller non-zero rate has no block size


def _gold_rate(value) -> float:
    rate = _finite("gold rate", value)
    if not 0 <= rate <= 1:
        raise RoundSettingsError(f"gold rate must be between 0 and 1, got {value!r}")
    if 0 < rate < GOLD_RATE_MIN:
        raise RoundSettingsError(
            f"gold rate must be 0 (no gold) or at least {GOLD_RATE_MIN}, got {value!r}"
        )
    return rate


def _disagreement_std(value) -> float | None:
    if value is None:
        return None  # adaptive overlap off
    std = _finite("disagreement std", value)
    if std < 0:
        raise RoundSettingsError(f"disagreement std must not be negative, got {value!r}")
    return std


def _status(value) -> str:
    if value not in Round.Status.values:
        raise RoundSettingsError(
            f"status must be one of {', '.join(Round.Status.values)}, got {value!r}"
        )
    return value


def _queue_order(value) -> str:
    if value not in Round.QueueOrder.values:
        raise RoundSettingsError(
            f"queue order must be one of {', '.join(Round.QueueOrder.values)}, got {value!r}"
        )
    return value


_CHECKS = {
    "ratings_per_clip": lambda v: _whole("ratings per clip", v, RATINGS_MIN, RATINGS_MAX),
    "lease_minutes": lambda v: _whole("lease minutes", v, 1, LEASE_MINUTES_MAX),
    "gold_rate": _gold_rate,
    "disagreement_std": _disagreement_std,
    "max_ratings_per_clip": lambda v: _whole("max ratings per clip", v, RATINGS_MIN, RATINGS_MAX),
    "status": _status,
    "queue_order": _queue_order,
}
