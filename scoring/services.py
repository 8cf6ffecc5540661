"""AnimeReward launches, torch-free: validate a reward-training or scoring request, record a
queued run and send it to the ``gpu`` queue. The work itself is in ``scoring.jobs``."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from annotation.models import ClipLabel, ExportSnapshot
from annotation.services.assignment import QueueSignal, set_queue_signals
from labelhub.dimensions import DIMENSION_KEYS, score_to_unit
from labelhub.errors import ServiceError
from runs import services as runs
from runs.models import Run
from scoring.anime_reward.anisora.layout import ReleaseLayoutError, check_release_dir
from scoring.anime_reward.config import RewardTrainConfig, missing_source_files
from scoring.models import ClipScore, RewardModel


class RewardRunError(ServiceError):
    """A reward-training or scoring launch that cannot be made; the message says why."""


def encoder_sources() -> dict[str, str]:
    """Full-preset encoder locations (local directories or hub ids) from settings; empty = defaults."""
    return dict(getattr(settings, "LABELHUB_REWARD_SOURCES", {}) or {})


def request_reward_training(
    *,
    snapshot_id: int,
    config: dict | None = None,
    name: str = "",
    gpus=1,
    created_by=None,
    enqueue: bool = True,
) -> Run:
    """Validate the launch, record a queued run and (after commit) send it to the ``gpu`` queue,
    or with ``gpus`` N > 1 to ``gpu-xN``, whose worker trains on N processes (``accelerate
    launch``)."""
    try:
        gpus = runs.parse_gpus(gpus)
    except ValueError as error:
        raise RewardRunError(str(error)) from None
    snapshot = ExportSnapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None:
        raise RewardRunError(f"export snapshot {snapshot_id} does not exist", code="not_found")
    if snapshot.status != ExportSnapshot.Status.READY:
        raise RewardRunError(f"snapshot {snapshot_id} is {snapshot.status}, not ready")
    config = dict(config or {})
    config.setdefault("preset", settings.LABELHUB_REWARD_PRESET)  # the deployment's encoders
    if config["preset"] == "anisora":  # the released models: every file they read is there now
        config.setdefault("release_dir", settings.LABELHUB_ANISORA_REWARD_DIR)
        try:
            check_release_dir(config["release_dir"], sam_source=encoder_sources().get("sam", ""))
        except ReleaseLayoutError as error:
            raise RewardRunError(str(error)) from error
    if config["preset"] == "full":  # each encoder's folder, as its hub ships it, is complete now
        problems = missing_source_files({**encoder_sources(), **config.get("encoder_sources", {})})
        if problems:
            raise RewardRunError("full AnimeReward encoders: " + "; ".join(problems))
    refusal = gpus_refusal(config=config, gpus=gpus)
    if refusal:
        raise RewardRunError(refusal)
    objective = config.get("objective", "regression")
    if objective != "regression":
        refuse_without_judgements(snapshot, objective)
    if name and RewardModel.objects.filter(name=name).exists():
        raise RewardRunError(f"a reward model named {name!r} already exists", code="conflict")
    try:
        return runs.launch(
            kind=Run.Kind.REWARD_TRAINING,
            created_by=created_by,
            params={"snapshot_id": snapshot_id, "name": name, "config": config, "gpus": gpus},
            send=enqueue,
            output_name=f"reward_model:{name}" if name else "",
        )
    except runs.NameTaken as error:  # another queued or running run will save that name
        raise RewardRunError(str(error), code="conflict") from error


def gpus_refusal(*, config: dict, gpus: int) -> str:
    """Why a reward run with this config cannot train on ``gpus`` GPUs ("" if it can): encoder
    fine-tuning and the anisora preset train on one (``RewardTrainConfig.refusal_on_processes``).
    RewardRunError for a config that is not valid at all."""
    config = {"preset": settings.LABELHUB_REWARD_PRESET, **config}
    try:
        return RewardTrainConfig(**config).refusal_on_processes(gpus)
    except TypeError as error:  # an unknown field
        raise RewardRunError(str(error).replace("__init__() ", "")) from error
    except ValueError as error:  # a value the config refuses
        raise RewardRunError(str(error)) from error


def refuse_without_judgements(snapshot: ExportSnapshot, objective: str) -> None:
    """``pairs`` and ``joint`` learn from the snapshot's judgements and are measured on its
    held-out ones: refuse a snapshot without judged pairs on both sides of the split, with the
    counts."""
    if "judgements_parquet" not in snapshot.files:
        raise RewardRunError(
            f"objective {objective} needs A/B judgements; snapshot {snapshot.pk} was exported "
            "before snapshots carried them: export the rounds again"
        )
    counts = snapshot.row_counts
    train = counts.get("judged_pairs_train", 0)
    test = counts.get("judged_pairs_test", 0)
    if train and test:
        return
    raise RewardRunError(
        f"objective {objective} needs judged pairs on both sides of the split; snapshot "
        f"{snapshot.pk} has {train} in train and {test} in test "
        f"({counts.get('judgements', 0)} judgement rows; left out: "
        f"{counts.get('judged_pairs_cross_split', 0)} across the split, "
        f"{counts.get('judged_pairs_not_exported', 0)} with a clip not in the snapshot)"
    )


def request_scoring(
    *,
    reward_model_id: int,
    round_id: int | None = None,
    clip_ids: Iterable[int] | None = None,
    created_by=None,
    batch_size: int = 8,
    chunk_clips: int | None = None,
    enqueue: bool = True,
) -> Run:
    """Record a queued scoring run for a round's clips or a list of clips, enqueue it after commit.
    It scores in chunks of ``chunk_clips`` clips (default ``scoring.jobs.SCORING_CHUNK_CLIPS``),
    each a gpu task that any worker takes."""
    if (round_id is None) == (clip_ids is None):
        raise RewardRunError("give either a round or a list of clips")
    if batch_size < 1:
        raise RewardRunError("batch_size must be at least 1")
    if chunk_clips is not None and chunk_clips < 1:
        raise RewardRunError("chunk_clips must be at least 1")
    if not RewardModel.objects.filter(pk=reward_model_id).exists():
        raise RewardRunError(f"reward model {reward_model_id} does not exist", code="not_found")
    params = {"reward_model_id": reward_model_id, "batch_size": batch_size}
    if chunk_clips is not None:
        params["chunk_clips"] = chunk_clips
    if round_id is not None:
        params["round_id"] = round_id
    else:
        params["clip_ids"] = sorted({int(c) for c in clip_ids})
    return runs.launch(kind=Run.Kind.SCORING, params=params, created_by=created_by, send=enqueue)


def update_queue_signals(*, reward_model_id: int, round_id: int) -> int:
    """The reward model's view of each clip of a round for the model-ordered queues, stored
    through ``annotation.services.assignment.set_queue_signals``.

    - ``model_disagreement``: mean over the six dimensions of |model reward - human mean| (both
      on [0, 1]); only clips with human labels.
    - ``model_uncertainty``: 1 - the gap between the clip's overall reward and the nearest other
      clip of the same condition: a near tie is where a preference pair could flip, so a human
      rating there teaches the loop the most.
    Returns how many clips got a value.
    """
    scores = {
        row["clip_id"]: row
        for row in ClipScore.objects.filter(
            reward_model_id=reward_model_id, clip__round_id=round_id, overall__isnull=False
        ).values("clip_id", "clip__condition_id", "overall", *DIMENSION_KEYS)
    }
    labels = {
        row["clip_id"]: row
        for row in ClipLabel.objects.filter(clip_id__in=scores, count__gt=0).values(
            "clip_id", *(f"{key}_mean" for key in DIMENSION_KEYS)
        )
    }
    by_condition: dict[int, list[float]] = {}
    for row in scores.values():
        by_condition.setdefault(row["clip__condition_id"], []).append(row["overall"])
    signals = {}
    for clip_id, row in scores.items():
        rivals = list(by_condition[row["clip__condition_id"]])
        rivals.remove(row["overall"])
        nearest = min((abs(row["overall"] - other) for other in rivals), default=1.0)
        label = labels.get(clip_id)
        disagreement = (
            sum(abs(row[key] - score_to_unit(label[f"{key}_mean"])) for key in DIMENSION_KEYS)
            / len(DIMENSION_KEYS)
            if label
            else None
        )
        signals[clip_id] = QueueSignal(uncertainty=1.0 - nearest, disagreement=disagreement)
    return set_queue_signals(round_id=round_id, signals=signals)
