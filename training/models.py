"""The alignment loop's records: policy checkpoints, the candidates they generated, preference pairs."""

from django.db import models
from django.db.models import Q


class PolicyCheckpoint(models.Model):
    """LoRA weights for the generator (diffusers ``load_lora_weights`` format); none = base model."""

    name = models.CharField(max_length=200, unique=True)
    base_preset = models.CharField(max_length=100)
    lora_path = models.CharField(
        max_length=1000, help_text="Storage prefix of the LoRA safetensors (diffusers layout)"
    )
    run = models.ForeignKey(
        "runs.Run",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="checkpoints",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Candidate(models.Model):
    """A clip the generator made: which policy (none = the base model), seed and generation run.

    Kept here rather than on ``annotation.Clip`` so the apps' dependencies point one way
    (annotation <- scoring <- training): the human side knows nothing of checkpoints.
    """

    clip = models.OneToOneField(
        "annotation.Clip", on_delete=models.CASCADE, related_name="candidate"
    )
    checkpoint = models.ForeignKey(
        PolicyCheckpoint,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="candidates",
    )
    seed = models.BigIntegerField()
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"candidate clip {self.clip_id} (seed {self.seed})"


class PreferencePair(models.Model):
    """Winner and loser of one condition, with their rewards in [0, 1] and where they came from."""

    class Origin(models.TextChoices):
        REWARD_MODEL = "reward_model", "AnimeReward scores"
        HUMAN_LABELS = "human_labels", "Human labels"
        HUMAN_JUDGEMENTS = "human_judgements", "Human A/B judgements"

    round = models.ForeignKey("annotation.Round", on_delete=models.CASCADE, related_name="pairs")
    condition = models.ForeignKey(
        "annotation.Condition", on_delete=models.CASCADE, related_name="pairs"
    )
    winner = models.ForeignKey("annotation.Clip", on_delete=models.CASCADE, related_name="+")
    loser = models.ForeignKey("annotation.Clip", on_delete=models.CASCADE, related_name="+")
    winner_reward = models.FloatField()
    loser_reward = models.FloatField()
    origin = models.CharField(max_length=32, choices=Origin.choices)
    reward_model = models.ForeignKey(
        "scoring.RewardModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pairs",
    )
    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="pairs"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(winner=models.F("loser")), name="pair_distinct_clips"
            ),
            models.CheckConstraint(
                condition=Q(winner_reward__gte=models.F("loser_reward")),
                name="pair_winner_not_worse",
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk}: clip {self.winner_id} > clip {self.loser_id}"
