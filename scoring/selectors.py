"""AnimeReward reads for pages and the API: reward models, their evaluation, clip scores."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from labelhub.dimensions import DIMENSIONS
from scoring.models import ClipScore, RewardModel

METRIC_NAMES = ("pearson", "spearman", "kendall", "mae", "pairwise_accuracy", "pairs", "clips")


def list_reward_models() -> QuerySet[RewardModel]:
    """Newest first, with their run and how many clips each has scored (one query)."""
    return (
        RewardModel.objects.select_related("run")
        .annotate(
            scored=Count("scores", filter=Q(scores__error="")),
            failed=Count("scores", filter=~Q(scores__error="")),
        )
        .order_by("-created_at", "-id")
    )


@dataclass
class DimensionEvaluation:
    key: str
    name: str
    metrics: dict
    points: list[tuple[float, float]]  # (human, predicted) per test clip, both in [0, 1]
    losses: list[float]


def reward_model_evaluation(reward_model: RewardModel) -> list[DimensionEvaluation]:
    """Per dimension, then overall: held-out metrics, predicted-vs-human points and the loss curve."""
    clips = reward_model.evaluation.get("clips", [])
    losses = reward_model.evaluation.get("losses", {})
    rows = [(d.key, d.name) for d in DIMENSIONS] + [("overall", "Overall (mean of six)")]
    return [
        DimensionEvaluation(
            key=key,
            name=name,
            metrics=reward_model.metrics.get(key, {}),
            points=[(c["human"][key], c["predicted"][key]) for c in clips if key in c["predicted"]],
            losses=losses.get(key, []),
        )
        for key, name in rows
    ]


def clip_scores(*, reward_model_id: int, round_id: int | None = None) -> QuerySet[ClipScore]:
    scores = ClipScore.objects.filter(reward_model_id=reward_model_id).select_related("clip")
    if round_id is not None:
        scores = scores.filter(clip__round_id=round_id)
    return scores.order_by("clip_id")
