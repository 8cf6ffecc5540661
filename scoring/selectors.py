"""AnimeReward reads for pages and the API: reward models, their evaluation, clip scores."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from annotation.models import ClipLabel, GoldReference
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS, score_to_unit
from scoring.anime_reward.anisora.layout import DIMENSION_FILES, HEAD_DIMENSIONS
from scoring.anime_reward.config import FULL_SOURCES
from scoring.models import ClipScore, RewardModel

METRIC_NAMES = ("pearson", "spearman", "kendall", "mae", "pairwise_accuracy", "pairs", "clips")
METRIC_LABELS = {
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "kendall": "Kendall τ",
    "mae": "MAE",
    "pairwise_accuracy": "Pairwise accuracy",
    "pairs": "Pairs",
    "clips": "Clips",
}
# On held-out A/B/tie judgements (``scoring.anime_reward.evaluate.evaluate_comparisons``).
COMPARISON_METRIC_NAMES = (
    "comparison_accuracy",
    "decisive_comparisons",
    "comparison_accuracy_ties",
    "comparisons",
    "tie_threshold",
)
COMPARISON_METRIC_LABELS = {
    "comparison_accuracy": "Accuracy without ties",
    "decisive_comparisons": "Judgements (a or b)",
    "comparison_accuracy_ties": "Accuracy with ties",
    "comparisons": "Judgements (a, b or tie)",
    "tie_threshold": "Tie threshold ε",
}


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


@dataclass
class Disagreement:
    clip_id: int
    poster: str
    human: float  # the human mean on [0, 1]
    model: float  # AnimeReward's reward on [0, 1]
    human_mean: float  # the human mean on 1-5
    ratings: int
    target: int
    is_gold: bool

    @property
    def gap(self) -> float:
        return abs(self.model - self.human)


def latest_scoring_model(round_id: int) -> RewardModel | None:
    """The newest reward model that scored clips of the round without error."""
    return (
        RewardModel.objects.filter(scores__clip__round_id=round_id, scores__error="")
        .order_by("-created_at", "-id")
        .first()
    )


def model_disagreements(
    *, round_id: int, reward_model: RewardModel | None = None, limit: int = 8
) -> dict:
    """Per dimension, the labelled clips where the reward model and the human mean differ most
    (likely label errors or model blind spots), largest gap first."""
    reward_model = reward_model or latest_scoring_model(round_id)
    if reward_model is None:
        return {"reward_model": None, "dimensions": []}
    scores = {
        s.clip_id: s
        for s in ClipScore.objects.filter(
            reward_model=reward_model, clip__round_id=round_id, error=""
        ).select_related("clip")
    }
    labels = ClipLabel.objects.filter(clip_id__in=scores, count__gt=0)
    gold = set(GoldReference.objects.filter(clip_id__in=scores).values_list("clip_id", flat=True))
    dimensions = []
    for dim in DIMENSIONS:
        rows = []
        for label in labels:
            score = scores[label.clip_id]
            mean = getattr(label, f"{dim.key}_mean")
            rows.append(
                Disagreement(
                    clip_id=label.clip_id,
                    poster=score.clip.poster.name,
                    human=score_to_unit(mean),
                    model=getattr(score, dim.key),
                    human_mean=mean,
                    ratings=score.clip.rating_count,
                    target=score.clip.target_ratings,
                    is_gold=label.clip_id in gold,
                )
            )
        rows.sort(key=lambda row: (-row.gap, row.clip_id))
        dimensions.append({"key": dim.key, "name": dim.name, "clips": rows[:limit]})
    return {"reward_model": reward_model, "dimensions": dimensions}


def starting_weights(reward_model: RewardModel) -> dict:
    """Where a model's weights started: for ``anisora``, the released files each dimension read
    and which heads were trained on the snapshot; else the encoders' sources."""
    config = reward_model.config
    if reward_model.preset == "anisora":
        root = config.get("release_dir", "")
        mode = config.get("release_finetune", "heads")
        chosen = config.get("dimensions") or DIMENSION_KEYS
        trained = {k for k in HEAD_DIMENSIONS if k in chosen} if mode != "none" else set()
        whole = {"image_consistency", "text_consistency"} & trained if mode == "full" else set()
        adapted = {"visual_smoothness", "visual_appeal"} & trained if mode == "lora" else set()
        # character tracking's SAM 2.1 folder (LABELHUB_REWARD_SOURCE_SAM), outside the release
        sam2 = (
            [config["encoder_sources"]["sam"]]
            if config.get("encoder_sources", {}).get("sam")
            else []
        )
        summaries = {
            "heads": " with its heads trained on this snapshot",
            "full": " with its heads and BLIP consistency models trained on this snapshot",
            "lora": " with its heads and LoRA adapters on its Idefics2 regressors "
            f"(rank {config.get('release_lora_rank', 8)}) trained on this snapshot",
        }
        return {
            "summary": "Bilibili's released AnimeReward" + summaries.get(mode, ", as released"),
            "rows": [
                {
                    "name": d.name,
                    "files": [f"{root}/{rel}" if root else rel for rel in DIMENSION_FILES[d.key]]
                    + (sam2 if d.key == "character_consistency" else []),
                    "trained": "whole model"
                    if d.key in whole
                    else "LoRA + head"
                    if d.key in adapted
                    else "head"
                    if d.key in trained
                    else "as released",
                }
                for d in DIMENSIONS
            ],
        }
    if reward_model.preset == "tiny":
        return {"summary": "random tiny encoders (tests and demo)", "rows": []}
    sources = {**FULL_SOURCES, **config.get("encoder_sources", {})}
    return {
        "summary": "pretrained encoders, heads trained on this snapshot",
        "rows": [
            {"name": name, "files": [source], "trained": ""} for name, source in sources.items()
        ],
    }


def same_split_models(reward_model: RewardModel) -> list[dict]:
    """Every model evaluated on the same snapshot's held-out split (a released model beside a
    fine-tuned one): name, preset and Spearman per dimension and overall."""
    snapshot_id = reward_model.config.get("snapshot_id")
    if snapshot_id is None:
        return []
    others = RewardModel.objects.filter(config__snapshot_id=snapshot_id).order_by(
        "created_at", "id"
    )
    keys = (*DIMENSION_KEYS, "overall")
    return [
        {
            "model": other,
            "spearman": [other.metrics.get(key, {}).get("spearman") for key in keys],
            "current": other.pk == reward_model.pk,
        }
        for other in others
    ]
