"""Reads for the lead dashboard: progress, score distributions, agreement, disagreements."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from annotation.models import Clip, ClipLabel, Lease, Rating, Round
from annotation.selectors.agreement import (
    LEVELS,
    alpha_from_arrays,
    annotator_table,
    load_rating_arrays,
)
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS, SCORE_MAX, SCORE_MIN

DEFAULT_DISAGREEMENT_STD = 1.0  # used for the list when the round has no threshold of its own


@dataclass(frozen=True)
class RoundProgress:
    round_id: int
    name: str
    complete: int
    in_progress: int
    untouched: int

    @property
    def total(self) -> int:
        return self.complete + self.in_progress + self.untouched


def round_progress(*, now=None) -> list[RoundProgress]:
    """Per round: ready clips with all their ratings, some ratings or a lease, or nothing yet."""
    now = now or timezone.now()
    leased = Lease.objects.filter(expires_at__gt=now).values("clip_id")
    clips = Clip.objects.filter(status=Clip.Status.READY)
    rows = (
        clips.values("round_id", "round__name")
        .annotate(
            complete=Count("id", filter=Q(rating_count__gte=F("target_ratings"))),
            started=Count(
                "id",
                filter=Q(rating_count__lt=F("target_ratings"))
                & (Q(rating_count__gt=0) | Q(id__in=leased)),
            ),
            total=Count("id"),
        )
        .order_by("-round_id")
    )
    return [
        RoundProgress(
            r["round_id"],
            r["round__name"],
            r["complete"],
            r["started"],
            r["total"] - r["complete"] - r["started"],
        )
        for r in rows
    ]


def score_histograms(*, round_id: int) -> dict[str, dict[str, list[int]]]:
    """dimension -> source name -> counts of ratings scoring 1..5 (current ratings only)."""
    out: dict[str, dict[str, list[int]]] = {key: {} for key in DIMENSION_KEYS}
    selects = " UNION ALL ".join(
        f"SELECT '{key}' AS dim, c.source_name, r.{key} AS score, count(*) AS n "
        "FROM annotation_rating r JOIN annotation_clip c ON c.id = r.clip_id "
        f"WHERE r.is_current AND c.round_id = %s GROUP BY c.source_name, r.{key}"
        for key in DIMENSION_KEYS
    )
    with connection.cursor() as cursor:
        cursor.execute(selects, [round_id] * len(DIMENSION_KEYS))
        for dim, source, score, n in cursor.fetchall():
            counts = out[dim].setdefault(source, [0] * (SCORE_MAX - SCORE_MIN + 1))
            counts[score - SCORE_MIN] = n
    return {
        dim: dict(sorted(by_source.items(), key=_source_order)) for dim, by_source in out.items()
    }


def _source_order(item):
    # Ground truth first, then the generators by name.
    return (item[0] != "ground_truth", item[0])


def source_means(*, round_id: int) -> list[dict]:
    """Per source: clip count and the mean label of each dimension and overall."""
    labels = ClipLabel.objects.filter(clip__round_id=round_id, clip__status=Clip.Status.READY)
    rows = labels.values("clip__source_name").annotate(
        clips=Count("clip_id"),
        overall=Avg("overall"),
        **{key: Avg(f"{key}_mean") for key in DIMENSION_KEYS},
    )
    return sorted(
        (
            {
                "source": r["clip__source_name"],
                "clips": r["clips"],
                "overall": r["overall"],
                "means": [r[k] for k in DIMENSION_KEYS],
            }
            for r in rows
        ),
        key=lambda r: (r["source"] != "ground_truth", r["source"]),
    )


def disagreements(*, round_: Round, limit: int = 50) -> list[dict]:
    """Clips whose ratings disagree most (largest std on any dimension above the threshold)."""
    threshold = (
        round_.disagreement_std if round_.disagreement_std is not None else DEFAULT_DISAGREEMENT_STD
    )
    greatest = "greatest(" + ", ".join(f"l.{k}_std" for k in DIMENSION_KEYS) + ")"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT c.id, c.source_name, l.count, c.target_ratings, {greatest} AS worst,
                   {", ".join(f"l.{k}_std" for k in DIMENSION_KEYS)}
            FROM annotation_cliplabel l JOIN annotation_clip c ON c.id = l.clip_id
            WHERE c.round_id = %s AND {greatest} > %s
            ORDER BY worst DESC, c.id LIMIT %s
            """,
            [round_.pk, threshold, limit],
        )
        rows = cursor.fetchall()
    names = {d.key: d.name for d in DIMENSIONS}
    return [
        {
            "clip_id": clip_id,
            "source": source,
            "count": count,
            "target": target,
            "worst": worst,
            "worst_dimension": names[DIMENSION_KEYS[list(stds).index(worst)]],
        }
        for clip_id, source, count, target, worst, *stds in rows
    ]


def clip_ratings(*, clip_id: int) -> list[Rating]:
    """A clip's ratings (current and superseded) with their annotators, for the lead's clip page."""
    return list(
        Rating.objects.filter(clip_id=clip_id)
        .select_related("annotator")
        .order_by("created_at", "pk")
    )


def dashboard(*, round_: Round) -> dict:
    """Everything the lead dashboard shows for one round."""
    arrays = load_rating_arrays(round_ids=[round_.pk])
    return {
        "round": round_,
        "progress": round_progress(),
        "histograms": score_histograms(round_id=round_.pk),
        "source_means": source_means(round_id=round_.pk),
        "alpha": {level: alpha_from_arrays(arrays, level=level) for level in LEVELS},
        "annotators": annotator_table(round_ids=[round_.pk]),
        "disagreements": disagreements(round_=round_),
        "rating_count": len(arrays),
    }
