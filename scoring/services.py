"""AnimeReward writes: launch and run reward training on an export snapshot, score clips.

The ML core (``scoring.anime_reward``) gets plain paths and configs; this module turns rows into
those values, keeps the TrainingRun up to date through ``training.services.runs`` and stores the
results (RewardModel, ClipScore).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Clip, ExportSnapshot
from annotation.selectors.exports import iter_snapshot_rows
from labelhub.dimensions import DIMENSION_KEYS
from scoring.anime_reward.frames import ClipSpec, iter_decoded_batches
from scoring.anime_reward.models import AnimeReward
from scoring.anime_reward.train import RewardItem, RewardTrainConfig, train_reward
from scoring.models import ClipScore, RewardModel
from training.models import TrainingRun
from training.services.runs import (
    RunCancelled,
    RunReporter,
    begin_run,
    cancel_run,
    create_run,
    fail_run,
    finish_run,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict, str], None]


def encoder_sources() -> dict[str, str]:
    """Full-preset encoder locations (local directories or hub ids) from settings; empty = defaults."""
    return dict(getattr(settings, "LABELHUB_REWARD_SOURCES", {}) or {})


def _local_path(name: str) -> str:
    return default_storage.path(name) if name else ""


def _both(first: Progress, second: Progress | None) -> Progress:
    def report(step: int, total: int, metrics: dict | None = None, message: str = "") -> None:
        first(step, total, metrics or None, message)
        if second:
            second(step, total, metrics or {}, message)

    return report


# --- training --------------------------------------------------------------------------------------


def items_from_snapshot(snapshot: ExportSnapshot) -> list[RewardItem]:
    """The snapshot's label rows as training items, storage names resolved to local paths."""
    return [
        RewardItem(
            clip_id=row["clip_id"],
            video_path=_local_path(row["video"]),
            condition_image_path=_local_path(row["condition_image"]),
            character_reference_path=_local_path(row["character_reference"] or ""),
            prompt=row["prompt"],
            labels={key: row[f"{key}_mean"] for key in DIMENSION_KEYS},
            split=row["split"],
            group=row["group"],
            condition_id=row["condition_id"],
        )
        for row in iter_snapshot_rows(snapshot)
    ]


def request_reward_training(
    *,
    snapshot_id: int,
    config: dict | None = None,
    name: str = "",
    created_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """Validate the launch, record a queued run and (after commit) send it to the ``gpu`` queue."""
    snapshot = ExportSnapshot.objects.get(pk=snapshot_id)
    if snapshot.status != ExportSnapshot.Status.READY:
        raise ValueError(f"snapshot {snapshot_id} is {snapshot.status}, not ready")
    config = dict(config or {})
    RewardTrainConfig(**config)  # raises ValueError with a clear message
    if name and RewardModel.objects.filter(name=name).exists():
        raise ValueError(f"a reward model named {name!r} already exists")
    run = create_run(
        kind=TrainingRun.Kind.REWARD_TRAINING,
        created_by=created_by,
        params={"snapshot_id": snapshot_id, "name": name, "config": config},
    )
    if enqueue:
        from scoring.tasks import train_reward_task

        transaction.on_commit(lambda: train_reward_task.delay(run.pk))
    return run


def train_reward_model(*, run_id: int, on_progress: Progress | None = None) -> RewardModel | None:
    """Run a queued reward-training run to the end; None when the run must not (or did not) run."""
    run = begin_run(run_id)
    if run is None:
        return None
    report = _both(RunReporter(run_id), on_progress)
    try:
        snapshot = ExportSnapshot.objects.get(pk=run.params["snapshot_id"])
        config = RewardTrainConfig(
            **{"encoder_sources": encoder_sources(), **run.params.get("config", {})}
        )
        items = items_from_snapshot(snapshot)
        output_dir = Path(settings.LABELHUB_ARTIFACTS_ROOT) / "reward_models" / f"run-{run_id}"
        result = train_reward(items, config, output_dir, on_progress=report)
        reward_model = RewardModel.objects.create(
            name=run.params.get("name") or f"animereward-{config.preset}-run{run_id}",
            preset=config.preset,
            checkpoint_dir=result.output_dir,
            run=run,
            config={
                **run.params.get("config", {}),
                "snapshot_id": snapshot.pk,
                "snapshot_hash": snapshot.content_hash,
                "train_clips": result.train_clips,
                "test_clips": result.test_clips,
                "skipped": result.skipped,
            },
            metrics=result.metrics,
            evaluation={"clips": result.evaluation, "losses": result.losses},
        )
    except RunCancelled:
        cancel_run(run_id)
        return None
    except Exception as exc:
        logger.exception("reward training run %s failed", run_id)
        fail_run(run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_run(
        run_id, artifacts={"reward_model_id": reward_model.pk, "checkpoint_dir": result.output_dir}
    )
    return reward_model


# --- scoring ---------------------------------------------------------------------------------------


def load_reward_model(reward_model: RewardModel, *, device: str = "auto") -> AnimeReward:
    """The stored checkpoint on the best device (bf16 encoders on a GPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AnimeReward.load(
        reward_model.checkpoint_dir, sources=encoder_sources() or None, device=device, dtype=dtype
    )


def request_scoring(
    *,
    reward_model_id: int,
    round_id: int | None = None,
    clip_ids: Iterable[int] | None = None,
    created_by=None,
    batch_size: int = 8,
    enqueue: bool = True,
) -> TrainingRun:
    """Record a queued scoring run for a round's clips or a list of clips, enqueue it after commit."""
    if (round_id is None) == (clip_ids is None):
        raise ValueError("give either a round or a list of clips")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    RewardModel.objects.get(pk=reward_model_id)
    params = {"reward_model_id": reward_model_id, "batch_size": batch_size}
    if round_id is not None:
        params["round_id"] = round_id
    else:
        params["clip_ids"] = sorted({int(c) for c in clip_ids})
    run = create_run(kind=TrainingRun.Kind.SCORING, params=params, created_by=created_by)
    if enqueue:
        from scoring.tasks import score_clips_task

        transaction.on_commit(lambda: score_clips_task.delay(run.pk))
    return run


def run_scoring(*, run_id: int, on_progress: Progress | None = None) -> dict | None:
    """Run a queued scoring run; returns counts, or None when the run must not (or did not) run."""
    run = begin_run(run_id)
    if run is None:
        return None
    report = _both(RunReporter(run_id), on_progress)
    try:
        clips = Clip.objects.all()
        if "round_id" in run.params:
            clips = clips.filter(round_id=run.params["round_id"])
        else:
            clips = clips.filter(pk__in=run.params["clip_ids"])
        counts = score_clips(
            reward_model=RewardModel.objects.get(pk=run.params["reward_model_id"]),
            clip_ids=list(clips.exclude(status=Clip.Status.PULLED).values_list("pk", flat=True)),
            batch_size=run.params.get("batch_size", 8),
            on_progress=report,
        )
    except RunCancelled:
        cancel_run(run_id)
        return None
    except Exception as exc:
        logger.exception("scoring run %s failed", run_id)
        fail_run(run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    finish_run(run_id, artifacts=counts)
    return counts


def score_clips(
    *,
    reward_model: RewardModel,
    clip_ids: list[int],
    batch_size: int = 8,
    on_progress: Progress | None = None,
    model: AnimeReward | None = None,
) -> dict:
    """Score clips into ClipScore rows (one per clip and reward model). Idempotent: clips already
    scored without error are skipped; a clip that cannot be decoded gets a row with its error."""
    report = on_progress or (lambda step, total, metrics=None, message="": None)
    done = set(
        ClipScore.objects.filter(
            reward_model=reward_model, clip_id__in=clip_ids, error=""
        ).values_list("clip_id", flat=True)
    )
    todo = (
        Clip.objects.filter(pk__in=[c for c in clip_ids if c not in done])
        .select_related("condition")
        .order_by("pk")
    )
    specs, errors = [], {}
    for clip in todo:
        if not clip.video:
            errors[clip.pk] = f"clip {clip.pk} has no browser video (status {clip.status})"
            continue
        specs.append(
            ClipSpec(
                clip.pk,
                _local_path(clip.video.name),
                _local_path(clip.condition.image.name),
                clip.condition.prompt,
                _local_path(clip.condition.character_reference.name),
            )
        )
    total = len(specs) + len(errors)
    report(
        0,
        total,
        None,
        f"scoring {total} clips with {reward_model.name} ({len(done)} already scored)",
    )
    model = model or load_reward_model(reward_model)
    frame_size = model.encoders.preset.frame_size
    scored = 0
    _save_errors(reward_model, errors)
    for batch in iter_decoded_batches(specs, size=frame_size, batch_size=batch_size):
        _save_errors(reward_model, batch.errors)
        errors.update(batch.errors)
        if batch.inputs is not None:
            rewards = model.score_batch(batch.inputs)
            with transaction.atomic():
                for row, spec in enumerate(batch.specs):
                    ClipScore.objects.update_or_create(
                        clip_id=spec.clip_id,
                        reward_model=reward_model,
                        defaults={
                            **{
                                key: float(rewards[key][row])
                                for key in (*DIMENSION_KEYS, "overall")
                            },
                            "error": "",
                        },
                    )
            scored += len(batch.specs)
        report(scored + len(errors), total, None, "")
    for clip_id, error in errors.items():
        report(total, total, None, f"clip {clip_id} not scored: {error}")
    return {"scored": scored, "failed": len(errors), "already_scored": len(done)}


def _save_errors(reward_model: RewardModel, errors: dict) -> None:
    for clip_id, error in errors.items():
        ClipScore.objects.update_or_create(
            clip_id=clip_id,
            reward_model=reward_model,
            defaults={**dict.fromkeys((*DIMENSION_KEYS, "overall")), "error": error[:2000]},
        )
