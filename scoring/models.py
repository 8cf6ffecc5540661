"""AnimeReward records: trained reward models with their test metrics, and per-clip scores."""

from django.db import models
from django.db.models import Q

from labelhub.dimensions import DIMENSION_KEYS


class RewardModel(models.Model):
    """One trained AnimeReward version (six regressors) and its held-out evaluation."""

    name = models.CharField(max_length=200, unique=True)
    preset = models.CharField(max_length=100)
    checkpoint_dir = models.CharField(
        max_length=1000,
        help_text="Storage prefix of the checkpoint: safetensors + config.json per dimension",
    )
    run = models.ForeignKey(
        "runs.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reward_models",
    )
    config = models.JSONField(default=dict)
    metrics = models.JSONField(
        default=dict, help_text="Per dimension and overall: pearson, spearman, ..."
    )
    evaluation = models.JSONField(
        default=dict, help_text="Predicted vs human per test clip, for plots"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ClipScore(models.Model):
    """AnimeReward's six rewards in [0, 1] and their mean for one clip under one reward model."""

    clip = models.ForeignKey("annotation.Clip", on_delete=models.CASCADE, related_name="scores")
    reward_model = models.ForeignKey(RewardModel, on_delete=models.CASCADE, related_name="scores")
    visual_smoothness = models.FloatField(null=True)
    visual_motion = models.FloatField(null=True)
    visual_appeal = models.FloatField(null=True)
    text_consistency = models.FloatField(null=True)
    image_consistency = models.FloatField(null=True)
    character_consistency = models.FloatField(null=True)
    overall = models.FloatField(null=True)
    error = models.TextField(blank=True, help_text="Why this clip could not be scored")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clip", "reward_model"], name="clip_score_unique"),
            models.CheckConstraint(
                condition=Q(error="") | Q(overall__isnull=True),
                name="clip_score_error_has_no_score",
            ),
        ]

    def rewards(self) -> dict[str, float | None]:
        return {key: getattr(self, key) for key in DIMENSION_KEYS}
