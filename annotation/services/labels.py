"""ClipLabel: the per-clip aggregate of current ratings, kept equal to a recompute from scratch.

A new rating, its clip's ``rating_count`` and the clip's label are written by one statement
(``add_rating``); a correction recomputes the label with ``update_label`` in the rating's
transaction (the clip row is locked by the caller), so concurrent submits never lose an update.
``recompute_all_labels`` compares every label with a recompute in one statement and fixes any
that differ. All three aggregate with the same SQL (``_aggregate_sql``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection

from annotation.selectors.clips import round_totals_subquery
from labelhub.dimensions import DIMENSION_KEYS

# Scores are aggregated as float8: Postgres averages smallints in numeric, several times slower
# (a full recompute of 90k ratings spent most of its time there), for no difference that a
# float64 label can hold. Population std (stddev_pop): the spread of the ratings we have, 0 for
# a single rating.
_AGG_COLUMNS = ",\n".join(
    f"avg(r.{k}::float8) AS {k}_mean, coalesce(stddev_pop(r.{k}::float8), 0) AS {k}_std"
    for k in DIMENSION_KEYS
)
_OVERALL = (
    "(" + " + ".join(f"avg(r.{k}::float8)" for k in DIMENSION_KEYS) + f") / {len(DIMENSION_KEYS)}"
)
_LABEL_COLUMNS = [
    "count",
    *[f"{k}_{s}" for k in DIMENSION_KEYS for s in ("mean", "std")],
    "overall",
]
_STD_COLUMNS = [f"{k}_std" for k in DIMENSION_KEYS]
_SCORES = ", ".join(DIMENSION_KEYS)
_CURRENT_RATINGS = f"SELECT clip_id, {_SCORES} FROM annotation_rating WHERE is_current"


def _aggregate_sql(ratings: str) -> str:
    """Per clip: count, mean and std of each dimension, overall, over ``ratings`` (a query
    returning clip_id and the six scores)."""
    return f"""
        SELECT r.clip_id, count(*) AS count, {_AGG_COLUMNS}, {_OVERALL} AS overall
          FROM ({ratings}) r
         GROUP BY r.clip_id
    """


def _upsert_sql(aggregate: str) -> str:
    """Write the labels an aggregate query returns (insert, or replace the stored row)."""
    return f"""
        INSERT INTO annotation_cliplabel (clip_id, {", ".join(_LABEL_COLUMNS)}, updated_at)
        SELECT agg.clip_id, {", ".join("agg." + c for c in _LABEL_COLUMNS)}, now()
          FROM ({aggregate}) agg
            ON CONFLICT (clip_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _LABEL_COLUMNS)}, updated_at = now()
    """


_UPDATE_ONE_SQL = _upsert_sql(_aggregate_sql(_CURRENT_RATINGS + " AND clip_id = %(clip)s"))
_DROP_EMPTY_SQL = """
    DELETE FROM annotation_cliplabel l WHERE l.clip_id = %(clip)s AND NOT EXISTS
    (SELECT 1 FROM annotation_rating r WHERE r.clip_id = l.clip_id AND r.is_current)
"""


def update_label(clip_id: int) -> None:
    """Recompute one clip's label from its current ratings (call inside the rating transaction,
    with the clip row locked); a clip left without current ratings loses its label."""
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_ONE_SQL, {"clip": clip_id})
        cursor.execute(_DROP_EMPTY_SQL, {"clip": clip_id})


# A new rating, its clip's count and its clip's label in one statement. The statement's parts
# share one snapshot, so the label aggregates the clip's stored current ratings plus the row
# being inserted (from its RETURNING).
_NEW_LABEL = _upsert_sql(
    _aggregate_sql(
        f"{_CURRENT_RATINGS} AND clip_id = %(clip)s UNION ALL SELECT clip_id, {_SCORES} FROM rating"
    )
)
_ADD_RATING_SQL = f"""
    WITH rating AS (
        INSERT INTO annotation_rating (clip_id, annotator_id, {_SCORES}, seconds_spent,
                                       idempotency_key, is_current, created_at)
        VALUES (%(clip)s, %(annotator)s, {", ".join(f"%({k})s" for k in DIMENSION_KEYS)},
                %(seconds)s, %(key)s, true, %(now)s)
        RETURNING id, clip_id, {_SCORES}
    ), counted AS (
        UPDATE annotation_clip SET rating_count = rating_count + 1 WHERE id = %(clip)s
        RETURNING rating_count
    ), label AS (
        {_NEW_LABEL}
        RETURNING {", ".join(_STD_COLUMNS)}
    )
    SELECT rating.id, counted.rating_count, {", ".join("label." + c for c in _STD_COLUMNS)}
           {{totals_columns}}
      FROM rating, counted, label {{totals_join}}
"""
_ADD_RATING_ONLY = _ADD_RATING_SQL.format(totals_columns="", totals_join="")
# The round's progress totals ride along when the caller's cache has none; they are read from
# the statement's snapshot, so they do not include this rating yet.
_ADD_RATING_WITH_TOTALS = _ADD_RATING_SQL.format(
    totals_columns=", t.done, t.target, t.clips_left",
    totals_join=f"CROSS JOIN ({round_totals_subquery('%(round)s')}) t",
)


@dataclass(frozen=True)
class AddedRating:
    rating_id: int
    rating_count: int  # the clip's current ratings, this one included
    stds: dict[str, float]  # the clip's label after this rating, per dimension
    # (done, target, clips left) of the round before this rating, when asked for
    round_totals_before: tuple[int, int, int] | None = None


def add_rating(
    *,
    clip_id: int,
    annotator_id: int,
    scores: dict[str, int],
    seconds_spent: float,
    idempotency_key: uuid.UUID,
    now,
    round_totals_of: int | None = None,
) -> AddedRating:
    """Insert a current rating, count it on its clip and update the clip's label, in one
    statement (plus the round's totals, ``selectors.clips.round_totals_subquery``, when
    ``round_totals_of`` names the round). Call inside the rating's transaction with the clip row
    locked and the rating checked (``annotation.services.ratings.submit_rating``)."""
    params = {
        "clip": clip_id,
        "annotator": annotator_id,
        "seconds": seconds_spent,
        "key": idempotency_key,
        "now": now,
        "round": round_totals_of,
        **{key: scores[key] for key in DIMENSION_KEYS},
    }
    sql = _ADD_RATING_ONLY if round_totals_of is None else _ADD_RATING_WITH_TOTALS
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rating_id, rating_count, *rest = cursor.fetchone()
    stds = dict(zip(DIMENSION_KEYS, rest[: len(DIMENSION_KEYS)], strict=True))
    totals = tuple(rest[len(DIMENSION_KEYS) :]) or None
    return AddedRating(rating_id, rating_count, stds, totals)


@dataclass(frozen=True)
class RecomputeReport:
    clips: int
    # clip ids whose stored label differed from the recompute (or was missing/extra)
    differing: list[int]

    @property
    def ok(self) -> bool:
        return not self.differing


_TOLERANCE = 1e-9
_DIFFERS = " OR ".join(
    f"abs(l.{c} - agg.{c}) > {_TOLERANCE}" if c != "count" else f"l.{c} <> agg.{c}"
    for c in _LABEL_COLUMNS
)
# One statement: aggregate every clip once, compare with the stored labels, and (unless a dry
# run) write the differing ones and drop labels of clips left without current ratings.
_RECOMPUTE_SQL = f"""
    WITH agg AS MATERIALIZED ({_aggregate_sql(_CURRENT_RATINGS)}),
    diff AS MATERIALIZED (
        SELECT coalesce(agg.clip_id, l.clip_id) AS clip_id, agg.clip_id IS NULL AS orphan
          FROM agg FULL OUTER JOIN annotation_cliplabel l ON l.clip_id = agg.clip_id
         WHERE agg.clip_id IS NULL OR l.clip_id IS NULL OR {_DIFFERS}
    ), fixed AS (
        INSERT INTO annotation_cliplabel (clip_id, {", ".join(_LABEL_COLUMNS)}, updated_at)
        SELECT agg.clip_id, {", ".join("agg." + c for c in _LABEL_COLUMNS)}, now()
          FROM agg JOIN diff ON diff.clip_id = agg.clip_id
         WHERE %(fix)s
            ON CONFLICT (clip_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _LABEL_COLUMNS)}, updated_at = now()
    ), dropped AS (
        DELETE FROM annotation_cliplabel
         WHERE %(fix)s AND clip_id IN (SELECT clip_id FROM diff WHERE orphan)
    )
    SELECT (SELECT count(*) FROM agg), ARRAY(SELECT clip_id FROM diff ORDER BY clip_id)
"""


def recompute_all_labels(*, dry_run: bool = False) -> RecomputeReport:
    """Compare every stored ClipLabel with a recompute from the ratings; fix them unless ``dry_run``."""
    with connection.cursor() as cursor:
        cursor.execute(_RECOMPUTE_SQL, {"fix": not dry_run})
        clips, differing = cursor.fetchone()
    return RecomputeReport(clips=clips, differing=list(differing))
