"""The human side of LabelHub: rounds, conditions, clips, leases, ratings and their aggregates.

Constraints live here, in the database; every write goes through ``annotation.services``.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN


class Round(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200, unique=True)
    ratings_per_clip = models.PositiveSmallIntegerField(default=3)
    lease_minutes = models.PositiveSmallIntegerField(default=10)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Leads' quality controls: gold mixing and adaptive overlap.
    gold_rate = models.FloatField(
        default=0.0, help_text="Share of an annotator's clips that are gold clips (0 = none)."
    )
    disagreement_std = models.FloatField(
        null=True,
        blank=True,
        help_text="A clip whose std on any dimension exceeds this gets another rater; empty = off.",
    )
    max_ratings_per_clip = models.PositiveSmallIntegerField(
        default=5, help_text="Adaptive overlap never raises a clip's target above this."
    )

    class QueueOrder(models.TextChoices):
        COMPLETION = "completion", "Closest to completion first"
        UNCERTAINTY = "uncertainty", "Reward model least certain first"
        DISAGREEMENT = "disagreement", "Reward model and humans disagree most first"

    queue_order = models.CharField(
        max_length=16,
        choices=QueueOrder.choices,
        default=QueueOrder.COMPLETION,
        help_text="Which clips annotators get first; the model orders use the latest scores.",
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="restricted_rounds",
        help_text="If any are chosen, only these annotators get clips of this round.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="round_gold_rate_0_1"
            ),
            models.CheckConstraint(
                condition=Q(disagreement_std__isnull=True) | Q(disagreement_std__gte=0),
                name="round_disagreement_std_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(max_ratings_per_clip__gte=1) & Q(max_ratings_per_clip__lte=20),
                name="round_max_ratings_per_clip_1_20",
            ),
            models.CheckConstraint(
                condition=Q(ratings_per_clip__gte=1) & Q(ratings_per_clip__lte=20),
                name="round_ratings_per_clip_1_20",
            ),
            models.CheckConstraint(
                condition=Q(lease_minutes__gte=1), name="round_lease_minutes_pos"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Condition(models.Model):
    """An image-to-video input, recognised across rounds by the hash of its content."""

    content_hash = models.CharField(max_length=64, unique=True)
    image = models.FileField(upload_to="conditions/", max_length=300)
    image_sha256 = models.CharField(max_length=64, db_index=True)
    prompt = models.TextField()
    prompt_sha256 = models.CharField(max_length=64, db_index=True)
    character_reference = models.FileField(upload_to="characters/", max_length=300, blank=True)
    # The gallery character this condition shows; reward training compares the
    # clip's tracked character crops with that character's reference images.
    character = models.ForeignKey(
        "Character", null=True, blank=True, on_delete=models.PROTECT, related_name="conditions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"condition {self.pk}: {self.prompt[:40]}"


class Clip(models.Model):
    class Status(models.TextChoices):
        READY = "ready", "Ready"
        PULLED = "pulled", "Pulled (flagged broken)"

    class SourceKind(models.TextChoices):
        GROUND_TRUTH = "ground_truth", "Ground truth"
        EXTERNAL = "external", "External model"
        POLICY = "policy", "Policy checkpoint"

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="clips")
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="clips")
    source_kind = models.CharField(max_length=16, choices=SourceKind.choices)
    source_name = models.CharField(
        max_length=100, help_text="ground_truth, a model name, or a checkpoint"
    )
    seed = models.BigIntegerField(null=True, blank=True)
    original = models.FileField(upload_to="originals/", max_length=300)
    original_sha256 = models.CharField(max_length=64)
    video = models.FileField(
        upload_to="clips/", max_length=300, blank=True, help_text="browser MP4"
    )
    poster = models.FileField(upload_to="posters/", max_length=300, blank=True)
    frames = models.PositiveIntegerField(null=True, blank=True)
    fps = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    # Ingest state lives on ImportRow: a Clip row exists only once its files do.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    target_ratings = models.PositiveSmallIntegerField(
        help_text="How many ratings this clip needs; starts at the round's ratings_per_clip."
    )
    rating_count = models.PositiveSmallIntegerField(default=0)
    # Written by scoring (the latest reward model's view of this clip) for the model-ordered
    # queues: how unsure the model is, and how far it is from the human mean. Higher = sooner.
    model_uncertainty = models.FloatField(null=True, blank=True)
    model_disagreement = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round", "original_sha256"], name="clip_unique_content_per_round"
            ),
            models.CheckConstraint(
                condition=Q(target_ratings__gte=1), name="clip_target_ratings_pos"
            ),
        ]
        indexes = [
            # The hot "which clip next" query only ever looks at ready clips that still need ratings.
            # Full clips are left out: ordered by rating_count DESC they would come first, and
            # every lease would step over all of them.
            models.Index(
                fields=["round", "-rating_count", "id"],
                name="clip_needs_ratings",
                condition=Q(status="ready", rating_count__lt=models.F("target_ratings")),
            ),
        ]

    def __str__(self) -> str:
        return f"clip {self.pk} ({self.source_name})"


class Lease(models.Model):
    """An annotator holds a clip until ``expires_at``; expired leases free the slot."""

    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clip", "annotator"], name="lease_unique_clip_annotator"
            ),
        ]
        indexes = [models.Index(fields=["annotator", "expires_at"], name="lease_annotator_expiry")]


def _score_field(help_text: str) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(help_text=help_text)


class Rating(models.Model):
    """One annotator's six scores for one clip. Never edited: a correction supersedes it."""

    clip = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="ratings")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ratings"
    )
    visual_smoothness = _score_field("1-5")
    visual_motion = _score_field("1-5")
    visual_appeal = _score_field("1-5")
    text_consistency = _score_field("1-5")
    image_consistency = _score_field("1-5")
    character_consistency = _score_field("1-5")
    seconds_spent = models.FloatField(default=0)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True)
    is_current = models.BooleanField(default=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{key}__gte": SCORE_MIN}) & Q(**{f"{key}__lte": SCORE_MAX}),
                    name=f"rating_{key}_1_5",
                )
                for key in DIMENSION_KEYS
            ],
            models.UniqueConstraint(
                fields=["clip", "annotator"],
                condition=Q(is_current=True),
                name="rating_one_current_per_annotator",
            ),
            models.CheckConstraint(condition=Q(seconds_spent__gte=0), name="rating_seconds_nonneg"),
        ]
        indexes = [
            models.Index(
                fields=["clip"], condition=Q(is_current=True), name="rating_current_by_clip"
            )
        ]

    def scores(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in DIMENSION_KEYS}


class Skip(models.Model):
    """An annotator passed on a clip (with a reason); the clip goes back to others."""

    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips"
    )
    reason = models.CharField(max_length=500)
    broken = models.BooleanField(default=False, help_text="Flagged as a broken clip")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clip", "annotator"], name="skip_unique_clip_annotator"
            ),
        ]


class ClipLabel(models.Model):
    """Per clip and dimension the mean, population std and count of current ratings.

    Updated in the same transaction as each rating; ``recompute_labels`` proves it agrees.
    """

    clip = models.OneToOneField(
        Clip, on_delete=models.CASCADE, primary_key=True, related_name="label"
    )
    count = models.PositiveSmallIntegerField(default=0)
    visual_smoothness_mean = models.FloatField()
    visual_smoothness_std = models.FloatField()
    visual_motion_mean = models.FloatField()
    visual_motion_std = models.FloatField()
    visual_appeal_mean = models.FloatField()
    visual_appeal_std = models.FloatField()
    text_consistency_mean = models.FloatField()
    text_consistency_std = models.FloatField()
    image_consistency_mean = models.FloatField()
    image_consistency_std = models.FloatField()
    character_consistency_mean = models.FloatField()
    character_consistency_std = models.FloatField()
    overall = models.FloatField(help_text="Mean of the six dimension means")
    updated_at = models.DateTimeField(auto_now=True)

    def means(self) -> dict[str, float]:
        return {key: getattr(self, f"{key}_mean") for key in DIMENSION_KEYS}

    def stds(self) -> dict[str, float]:
        return {key: getattr(self, f"{key}_std") for key in DIMENSION_KEYS}


class ImportBatch(models.Model):
    """One manifest import and its per-row report."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    manifest_name = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class ImportRow(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        OK = "ok", "Imported"
        ERROR = "error", "Error"

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField()
    video_path = models.CharField(max_length=1000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    message = models.TextField(blank=True)
    clip = models.ForeignKey(
        Clip, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payload = models.JSONField(
        default=dict, help_text="The validated row, as the ingest task reads it"
    )
    # Crash safety: who holds the row and since when; the sweeper requeues or fails
    # rows whose worker stopped heartbeating, and removes what they wrote.
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    written = models.JSONField(
        default=list, help_text="Storage names this row created (removed if it fails)"
    )

    class Meta:
        ordering = ["line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "line"], name="import_row_unique_line")
        ]
        indexes = [
            models.Index(
                fields=["status", "heartbeat_at"],
                condition=Q(status__in=["queued", "processing"]),
                name="import_row_pending",
            )
        ]


# --- Leads' tools: gold references, export snapshots, pairwise judging -------------


class GoldReference(models.Model):
    """A lead's reference scores for a clip; gold clips are mixed into annotators' queues."""

    clip = models.OneToOneField(
        Clip, on_delete=models.CASCADE, primary_key=True, related_name="gold"
    )
    visual_smoothness = _score_field("reference 1-5")
    visual_motion = _score_field("reference 1-5")
    visual_appeal = _score_field("reference 1-5")
    text_consistency = _score_field("reference 1-5")
    image_consistency = _score_field("reference 1-5")
    character_consistency = _score_field("reference 1-5")
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(**{f"{key}__gte": SCORE_MIN}) & Q(**{f"{key}__lte": SCORE_MAX}),
                name=f"gold_{key}_1_5",
            )
            for key in DIMENSION_KEYS
        ]

    def scores(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in DIMENSION_KEYS}


class ExportSnapshot(models.Model):
    """An immutable label dataset: parameters, files under ``exports/<id>/``, row counts, hash.

    Once ready, a database trigger (migration) refuses any UPDATE of the row.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    params = models.JSONField(
        help_text="round_ids, test_fraction, seed, include_ratings, split rule"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    files = models.JSONField(default=dict, blank=True, help_text="format -> {name, bytes, sha256}")
    row_counts = models.JSONField(default=dict, blank=True, help_text="clips, train, test, ratings")
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Moves while a worker builds it; stale = builder lost"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="ready") | ~Q(content_hash=""), name="export_ready_has_hash"
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.status})"


class DatasetFolder(models.Model):
    """A snapshot built as a self-contained dataset folder (videos beside metadata.jsonl, in the
    layout Hugging Face ``datasets`` loads as a video folder) under ``exports/<id>/dataset[-originals]/``;
    written by ``annotation.services.dataset_folders``, downloaded as one streamed tar."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    snapshot = models.ForeignKey(
        ExportSnapshot, on_delete=models.PROTECT, related_name="dataset_folders"
    )
    with_originals = models.BooleanField(
        default=False, help_text="Original uploads beside the MP4s"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    prefix = models.CharField(max_length=255, help_text="Storage folder of the dataset")
    files = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0, help_text="Sum of the files' sizes")
    archive_bytes = models.BigIntegerField(default=0, help_text="Size of the downloadable tar")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "with_originals"], name="one_dataset_folder_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"dataset folder {self.pk} of export {self.snapshot_id} ({self.status})"


class PairwiseTask(models.Model):
    """Two clips of one condition judged side by side; ``a_on_left`` is the per-task shuffle."""

    condition = models.ForeignKey(
        Condition, on_delete=models.PROTECT, related_name="pairwise_tasks"
    )
    clip_a = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="+")
    clip_b = models.ForeignKey(Clip, on_delete=models.PROTECT, related_name="+")
    a_on_left = models.BooleanField()
    judges_needed = models.PositiveSmallIntegerField(default=3)
    judgement_count = models.PositiveSmallIntegerField(default=0)
    batch = models.CharField(
        max_length=200, blank=True, help_text="Free label, e.g. 'ckpt-3 vs base'"
    )
    lease_minutes = models.PositiveSmallIntegerField(default=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(clip_a=models.F("clip_b")), name="pairwise_distinct_clips"
            ),
            models.UniqueConstraint(fields=["clip_a", "clip_b"], name="pairwise_unique_pair"),
            models.CheckConstraint(
                condition=Q(judges_needed__gte=1), name="pairwise_judges_needed_pos"
            ),
            models.CheckConstraint(
                condition=Q(lease_minutes__gte=1), name="pairwise_lease_minutes_pos"
            ),
        ]
        indexes = [models.Index(fields=["-judgement_count", "id"], name="pairwise_task_queue")]


class PairwiseLease(models.Model):
    task = models.ForeignKey(PairwiseTask, on_delete=models.CASCADE, related_name="leases")
    judge = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pairwise_leases"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task", "judge"], name="pairwise_lease_unique_task_judge"
            ),
        ]


class PairwiseJudgement(models.Model):
    """One judge's verdict, stored against the canonical clip_a / clip_b (not screen sides)."""

    class Choice(models.TextChoices):
        A = "a", "Clip A"
        B = "b", "Clip B"
        TIE = "tie", "Tie"

    task = models.ForeignKey(PairwiseTask, on_delete=models.CASCADE, related_name="judgements")
    judge = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pairwise_judgements"
    )
    choice = models.CharField(max_length=3, choices=Choice.choices)
    dimension_choices = models.JSONField(
        default=dict, blank=True, help_text="dimension key -> a/b/tie"
    )
    seconds_spent = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task", "judge"], name="pairwise_one_judgement_per_judge"
            ),
            models.CheckConstraint(
                condition=Q(choice__in=["a", "b", "tie"]), name="pairwise_choice_valid"
            ),
            models.CheckConstraint(
                condition=Q(seconds_spent__gte=0), name="pairwise_seconds_nonneg"
            ),
        ]


# --- Guidelines with examples ---------------------------------------------------------------


class RoundGuidelines(models.Model):
    """A round's guidelines, written by leads in Markdown (rendered with raw HTML escaped)."""

    round = models.OneToOneField(
        Round, on_delete=models.CASCADE, primary_key=True, related_name="guidelines"
    )
    text = models.TextField(blank=True, help_text="Markdown; raw HTML is shown as text")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)


class GuidelineExample(models.Model):
    """A rated clip a lead chose to show what a score means on one dimension ("a 2 for motion")."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="guideline_examples")
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="guideline_examples")
    dimension = models.CharField(max_length=32, choices=[(k, k) for k in DIMENSION_KEYS])
    score = models.PositiveSmallIntegerField()
    note = models.CharField(max_length=500, blank=True, help_text="Why this clip earns the score")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dimension", "score", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["round", "clip", "dimension"], name="guideline_example_unique"
            ),
            models.CheckConstraint(
                condition=Q(score__gte=SCORE_MIN) & Q(score__lte=SCORE_MAX),
                name="guideline_example_score_1_5",
            ),
            models.CheckConstraint(
                condition=Q(dimension__in=list(DIMENSION_KEYS)),
                name="guideline_example_dimension_known",
            ),
        ]


class GuidelinesSeen(models.Model):
    """When an annotator last closed a round's guidelines (they open by themselves until then,
    and again after the lead changes them)."""

    round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "annotator"], name="guidelines_seen_unique")
        ]


# --- Trust boundary: who changed what a lead must be able to answer for -----------


class AuditEntry(models.Model):
    """One recorded action on a clip: flags pulling it from rating, a lead restoring it."""

    class Action(models.TextChoices):
        PULL_CLIP = "pull_clip", "Clip pulled by flags"
        RESTORE_CLIP = "restore_clip", "Clip restored by a lead"

    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who did it; empty when the system acted (flags reaching the limit).",
    )
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="audit_entries")
    details = models.JSONField(default=dict, blank=True, help_text="e.g. the flags and reasons")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} clip {self.clip_id} at {self.created_at:%Y-%m-%d %H:%M}"


# --- Character gallery: named characters with reference images -------------------


class Character(models.Model):
    """A character (IP) conditions can show; its reference images form its gallery entry.

    Names are unique ignoring case, so a manifest's ``character`` finds exactly one."""

    name = models.CharField(max_length=100)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="character_name_unique_ci"),
            models.CheckConstraint(condition=~Q(name=""), name="character_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class CharacterImage(models.Model):
    """One reference image of a character: validated and re-encoded to PNG, stored under
    ``characters/<sha256>.png`` (content-addressed, like ingest's character references)."""

    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="images")
    image = models.FileField(upload_to="characters/", max_length=300)
    image_sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_name = models.CharField(max_length=300, blank=True, help_text="As uploaded")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["character", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["character", "image_sha256"], name="character_image_unique_content"
            ),
        ]
