"""Every GPU job is one Run row: reward training, scoring, pairs, GAPO/DPO/SFT, generation.

The bottom layer of the apps: annotation, scoring and training point at it; it points at none of them.
Its lifecycle (claim, heartbeat, progress, cancel, fail, finish, resume) lives in ``runs.services``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Run(models.Model):
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
        GENERATION_CHUNK = "generation_chunk", "Generation chunk"
        SCORING_CHUNK = "scoring_chunk", "Scoring chunk"
        ROUND = "round", "Loop round"

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
    # A "round" run chains the loop's steps as child runs it executes itself (one gpu task); a
    # generation or scoring run fans out into chunk runs that any gpu worker takes.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )

    worker = models.CharField(
        max_length=250, blank=True, help_text="The worker that claimed it last (Celery node name)"
    )
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker claimed it (a retried chunk: more than 1)"
    )

    output_name = models.CharField(
        max_length=250,
        blank=True,
        help_text="What its output will be called (e.g. checkpoint:NAME); reserved while the "
        "run is queued or running, so a second launch with that name is refused at once",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["output_name"],
                condition=Q(status__in=["queued", "running"]) & ~Q(output_name=""),
                name="run_output_name_reserved",
            ),
        ]
        indexes = [
            models.Index(
                fields=["status"], condition=Q(status__in=["queued", "running"]), name="run_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"
