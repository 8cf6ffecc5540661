"""Reads for guidelines: the drawer on the annotate page and the leads' example picker."""

from __future__ import annotations

from annotation.models import ClipLabel, GuidelineExample, RoundGuidelines
from annotation.selectors.clips import media_url
from annotation.services.guidelines import render_markdown
from labelhub.dimensions import DIMENSIONS


def round_guidelines(round_id: int) -> dict:
    """Rendered guideline text and the example clips grouped by dimension (in dimension order)."""
    text = RoundGuidelines.objects.filter(round_id=round_id).values_list("text", flat=True).first()
    by_dimension: dict[str, list[dict]] = {d.key: [] for d in DIMENSIONS}
    for example in GuidelineExample.objects.filter(round_id=round_id).order_by("score", "id"):
        by_dimension[example.dimension].append(
            {
                "id": example.pk,
                "clip_id": example.clip_id,
                "score": example.score,
                "note": example.note,
                "poster_url": media_url(example.clip_id, "poster"),
                "video_url": media_url(example.clip_id, "video"),
            }
        )
    return {
        "text": text or "",
        "html": render_markdown(text) if text else "",
        "dimensions": [
            {"key": d.key, "name": d.name, "examples": by_dimension[d.key]}
            for d in DIMENSIONS
            if by_dimension[d.key]
        ],
        "has_any": bool(text) or any(by_dimension.values()),
    }


def example_candidates(*, round_id: int, dimension: str, score: int, limit: int = 24) -> list[dict]:
    """Rated clips of the round whose mean on ``dimension`` rounds to ``score``, the raters'
    most agreed first (lowest std), so a lead picks clear examples."""
    mean, std = f"{dimension}_mean", f"{dimension}_std"
    labels = (
        ClipLabel.objects.filter(
            clip__round_id=round_id,
            count__gte=1,
            **{f"{mean}__gte": score - 0.5, f"{mean}__lt": score + 0.5},
        )
        .order_by(std, "-count", "clip_id")
        .values("clip_id", "count", mean, std)[:limit]
    )
    return [
        {
            "clip_id": row["clip_id"],
            "count": row["count"],
            "mean": row[mean],
            "std": row[std],
            "poster_url": media_url(row["clip_id"], "poster"),
            "video_url": media_url(row["clip_id"], "video"),
        }
        for row in labels
    ]
