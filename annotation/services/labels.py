"""ClipLabel: the per-clip aggregate of current ratings, kept equal to a recompute from scratch.

``update_label`` runs inside the rating's transaction (the clip row is locked by the caller), so
concurrent submits never lose an update. ``recompute_all_labels`` does the same in one SQL
statement for every clip and reports any row that differed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from labelhub.dimensions import DIMENSION_KEYS

# Population std (stddev_pop): the spread of the ratings we have, 0 for a single rating.
_AGG_COLUMNS = ",\n".join(
    f"avg(r.{k})::float8 AS {k}_mean, coalesce(stddev_pop(r.{k}), 0)::float8 AS {k}_std"
    for k in DIMENSION_KEYS
)
_OVERALL = (
    "(" + " + ".join(f"avg(r.{k})" for k in DIMENSION_KEYS) + f")::float8 / {len(DIMENSION_KEYS)}"
)
_LABEL_COLUMNS = [
    "count",
    *[f"{k}_{s}" for k in DIMENSION_KEYS for s in ("mean", "std")],
    "overall",
]

_AGGREGATE_SQL = f"""
    SELECT r.clip_id, count(*) AS count,
    {_AGG_COLUMNS},
    {_OVERALL} AS overall
    FROM annotation_rating r
    WHERE r.is_current {{where}}
    GROUP BY r.clip_id
"""

_UPSERT_SQL = f"""
    INSERT INTO annotation_cliplabel (clip_id, {", ".join(_LABEL_COLUMNS)}, updated_at)
    SELECT agg.clip_id, {", ".join("agg." + c for c in _LABEL_COLUMNS)}, now()
    FROM ({_AGGREGATE_SQL}) agg
    ON CONFLICT (clip_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _LABEL_COLUMNS)}, updated_at = now()
"""

_TOLERANCE = 1e-9


def update_label(clip_id: int, *, ratings_removed: bool = True) -> None:
    """Recompute one clip's label from its current ratings (call inside the rating transaction).

    ``ratings_removed=False`` (a new rating was only added) skips dropping a label left without
    ratings, which cannot happen then.
    """
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL.format(where="AND r.clip_id = %s"), [clip_id])
        if not ratings_removed:
            return
        cursor.execute(
            "DELETE FROM annotation_cliplabel l WHERE l.clip_id = %s AND NOT EXISTS "
            "(SELECT 1 FROM annotation_rating r WHERE r.clip_id = l.clip_id AND r.is_current)",
            [clip_id],
        )


@dataclass(frozen=True)
class RecomputeReport:
    clips: int
    differing: list[
        int
    ]  # clip ids whose stored label differed from the recompute (or was missing/extra)

    @property
    def ok(self) -> bool:
        return not self.differing


def recompute_all_labels(*, dry_run: bool = False) -> RecomputeReport:
    """Compare every stored ClipLabel with a recompute from the ratings; fix them unless ``dry_run``."""
    diff_conditions = " OR ".join(
        f"abs(l.{c} - agg.{c}) > {_TOLERANCE}" if c != "count" else f"l.{c} <> agg.{c}"
        for c in _LABEL_COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT coalesce(agg.clip_id, l.clip_id) FROM ({_AGGREGATE_SQL.format(where="")}) agg
            FULL OUTER JOIN annotation_cliplabel l ON l.clip_id = agg.clip_id
            WHERE agg.clip_id IS NULL OR l.clip_id IS NULL OR {diff_conditions}
            ORDER BY 1
            """
        )
        differing = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT count(DISTINCT clip_id) FROM annotation_rating WHERE is_current")
        clips = cursor.fetchone()[0]
        if not dry_run and differing:
            cursor.execute(_UPSERT_SQL.format(where="AND r.clip_id = ANY(%s)"), [differing])
            cursor.execute(
                "DELETE FROM annotation_cliplabel l WHERE l.clip_id = ANY(%s) AND NOT EXISTS "
                "(SELECT 1 FROM annotation_rating r WHERE r.clip_id = l.clip_id AND r.is_current)",
                [differing],
            )
    return RecomputeReport(clips=clips, differing=differing)
