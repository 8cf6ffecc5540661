"""The alignment loop's records: training runs (every GPU job), policy checkpoints, preference pairs."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class TrainingRun(models.Model):
    """One launched GPU job: reward training, scoring, pairs, GAPO/DPO/SFT, or generation.

    Progress, the metric series and the log tail are written here as the job runs, so admins can
    watch it and a killed worker leaves a row that says where it stopped.
    """

    class Kind(models.TextChoices):
        REWARD_TRAINING = "reward_training", "Reward training"
        SCORING = "scoring", "Scoring"
        PAIRS = "pairs", "Preference pairs"
        GAPO = "gapo", "GAPO"
        DPO = "dpo", "Diffusion-DPO"
        SFT = "sft", "SFT"
        GENERATION = "generation", "Generation"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, help_text="Validated launch parameters")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=list, help_text="Series of {'step': n, name: value, ...}")
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    checkpoint_path = models.CharField(
        max_length=1000, blank=True, help_text="Last resumable checkpoint"
    )
    artifacts = models.JSONField(default=dict)
    resumed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["status"], condition=Q(status__in=["queued", "running"]), name="run_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"


class PolicyCheckpoint(models.Model):
    """LoRA weights for the generator (diffusers ``load_lora_weights`` format); none = base model."""

    name = models.CharField(max_length=200, unique=True)
    base_preset = models.CharField(max_length=100)
    lora_path = models.CharField(
        max_length=1000, help_text="Directory holding the LoRA safetensors"
    )
    run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoints"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


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
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="pairs"
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
