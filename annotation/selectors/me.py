"""Reads about one annotator's own work: recent ratings (the history panel) and calibration
(the /me/ page). An annotator sees only their own ratings and the consensus of the clips they
rated, never another annotator's individual scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from annotation.models import Rating
from annotation.selectors.clips import annotator_clip_payload, media_url
from annotation.services.gold import GOLD_TOLERANCE
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS

MAX_HISTORY = 50


def undo_deadline(created_at: datetime) -> datetime:
    return created_at + timedelta(seconds=settings.LABELHUB_UNDO_WINDOW_SECONDS)


def recent_ratings(
    *, annotator, round_id: int | None = None, limit: int = 20, now: datetime | None = None
) -> list[dict]:
    """The annotator's current ratings, newest first (a correction shows as its new rating)."""
    now = now or timezone.now()
    limit = max(1, min(int(limit), MAX_HISTORY))
    ratings = Rating.objects.filter(annotator=annotator, is_current=True).select_related(
        "clip__condition"
    )
    if round_id is not None:
        ratings = ratings.filter(clip__round_id=round_id)
    out = []
    for rating in ratings.order_by("-created_at", "-id")[:limit]:
        out.append(
            {
                "rating_id": rating.pk,
                "clip_id": rating.clip_id,
                "round_id": rating.clip.round_id,
                "created_at": rating.created_at,
                "scores": rating.scores(),
                "corrected": rating.supersedes_id is not None,
                "undoable": now <= undo_deadline(rating.created_at),
                "poster_url": media_url(rating.clip_id, "poster"),
                "prompt": rating.clip.condition.prompt,
            }
        )
    return out


def rating_for_revision(*, annotator, rating_id: int) -> dict | None:
    """One of the annotator's current ratings with what the annotate page needs to reopen it."""
    rating = (
        Rating.objects.filter(pk=rating_id, annotator=annotator, is_current=True)
        .select_related("clip__condition")
        .first()
    )
    if rating is None:
        return None
    return {
        "rating_id": rating.pk,
        "created_at": rating.created_at,
        "scores": rating.scores(),
        "clip": annotator_clip_payload(rating.clip),
    }


@dataclass
class DimensionCalibration:
    key: str
    name: str
    compared: int = 0  # ratings of yours on clips that others rated too
    mean_abs_diff: float | None = None  # mean |your score - others' mean|
    within_one: float | None = None  # share of your scores within 1 point of others' mean
    bias: float | None = None  # mean (your score - others' mean): + lenient, - harsh
    gold_count: int = 0
    gold_accuracy: float | None = None  # share within GOLD_TOLERANCE of the lead's reference


@dataclass
class Calibration:
    clips_rated: int = 0
    median_seconds: float | None = None
    compared_clips: int = 0
    gold_clips: int = 0
    dimensions: list[DimensionCalibration] = field(default_factory=list)


# Every current rating of every clip the annotator rated (theirs and the others'), with the
# clip's gold reference (0 where none): enough for the leave-one-out consensus of their clips.
_CALIBRATION_SQL = """
    SELECT r.clip_id, r.annotator_id = %(me)s, {dims}, r.seconds_spent, {gold}
      FROM annotation_rating r
      LEFT JOIN annotation_goldreference g ON g.clip_id = r.clip_id
     WHERE r.is_current
       AND r.clip_id IN (SELECT clip_id FROM annotation_rating
                          WHERE annotator_id = %(me)s AND is_current)
"""


def calibration(*, annotator) -> Calibration:
    """Clips rated, median time, agreement with the consensus (the mean of the other raters of
    the same clip) and gold accuracy, per dimension."""
    import numpy as np  # loaded by the first page that needs it, not at start-up

    dims = ", ".join(f"r.{k}" for k in DIMENSION_KEYS)
    gold = ", ".join(f"coalesce(g.{k}, 0)" for k in DIMENSION_KEYS)
    with connection.cursor() as cursor:
        cursor.execute(_CALIBRATION_SQL.format(dims=dims, gold=gold), {"me": annotator.pk})
        rows = cursor.fetchall()
    result = Calibration(dimensions=[DimensionCalibration(d.key, d.name) for d in DIMENSIONS])
    if not rows:
        return result
    n_dims = len(DIMENSION_KEYS)
    table = np.array(rows, dtype=np.float64)
    clip_ids = table[:, 0].astype(np.int64)
    mine = table[:, 1].astype(bool)
    scores = table[:, 2 : 2 + n_dims]
    seconds = table[:, 2 + n_dims]
    reference = table[:, 3 + n_dims :]

    result.clips_rated = int(mine.sum())
    result.median_seconds = float(np.median(seconds[mine]))

    # Others' mean per clip: sums and counts over the rows that are not mine.
    units, unit_index = np.unique(clip_ids, return_inverse=True)
    others = ~mine
    other_count = np.bincount(unit_index, weights=others.astype(np.float64), minlength=len(units))
    other_sum = np.stack(
        [
            np.bincount(unit_index, weights=scores[:, d] * others, minlength=len(units))
            for d in range(n_dims)
        ],
        axis=1,
    )
    my_rows = np.flatnonzero(mine)
    my_units = unit_index[my_rows]
    has_others = other_count[my_units] > 0
    compared_rows, compared_units = my_rows[has_others], my_units[has_others]
    result.compared_clips = int(len(compared_rows))
    is_gold = mine & (reference[:, 0] > 0)
    result.gold_clips = int(is_gold.sum())

    for d, row in enumerate(result.dimensions):
        if len(compared_rows):
            consensus = other_sum[compared_units, d] / other_count[compared_units]
            diff = scores[compared_rows, d] - consensus
            row.compared = int(len(diff))
            row.mean_abs_diff = float(np.mean(np.abs(diff)))
            row.within_one = float(np.mean(np.abs(diff) <= 1.0))
            row.bias = float(np.mean(diff))
        if result.gold_clips:
            hits = np.abs(scores[is_gold, d] - reference[is_gold, d]) <= GOLD_TOLERANCE
            row.gold_count = result.gold_clips
            row.gold_accuracy = float(hits.mean())
    return result
