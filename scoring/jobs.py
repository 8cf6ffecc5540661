"""AnimeReward's GPU jobs, registered with ``runs`` (see ``scoring.apps``): train a reward model on
an export snapshot, score clips. Rows become plain paths and configs for the ML core
(``scoring.anime_reward``); the results are stored as RewardModel and ClipScore rows.
"""

from __future__ import annotations

import time

from annotation.models import Clip, ExportSnapshot
from annotation.selectors.characters import gallery_image_names
from annotation.selectors.exports import iter_snapshot_judgements, iter_snapshot_rows
from labelhub.devices import pick_device, pick_dtype
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.progress import Progress, no_progress
from labelhub.storage import artifacts_dir, local_path, local_tree, store_tree
from runs.fanout import chunked, run_chunks
from runs.models import Run
from scoring.anime_reward.comparisons import Comparison
from scoring.anime_reward.config import RewardTrainConfig
from scoring.anime_reward.frames import ClipSpec, cores_shared_with_decoding, iter_decoded_batches
from scoring.anime_reward.models import AnimeReward
from scoring.anime_reward.ranks import train_reward_on_gpus
from scoring.anime_reward.train import RewardItem, train_reward
from scoring.models import ClipScore, RewardModel
from scoring.services import encoder_sources, update_queue_signals

# --- training --------------------------------------------------------------------------------------


def items_from_snapshot(snapshot: ExportSnapshot) -> list[RewardItem]:
    """The snapshot's label rows as training items, storage names resolved to local paths."""
    return [
        RewardItem(
            clip_id=row["clip_id"],
            video_path=local_path(row["video"]),
            condition_image_path=local_path(row["condition_image"]),
            character_reference_path=local_path(row["character_reference"] or ""),
            prompt=row["prompt"],
            labels={key: row[f"{key}_mean"] for key in DIMENSION_KEYS},
            split=row["split"],
            group=row["group"],
            condition_id=row["condition_id"],
            character_id=row.get("character_id"),  # absent from snapshots made before the gallery
        )
        for row in iter_snapshot_rows(snapshot)
    ]


def comparisons_from_snapshot(snapshot: ExportSnapshot) -> list[Comparison]:
    """The snapshot's A/B/tie judgements (per judge, pair and dimension) for the trainer."""
    return [
        Comparison(
            clip_a=row["clip_a_id"],
            clip_b=row["clip_b_id"],
            dimension=row["dimension"],
            choice=row["choice"],
            split=row["split"],
            judge=row["judge"],
        )
        for row in iter_snapshot_judgements(snapshot)
    ]


def gallery_for_items(items: list[RewardItem]) -> dict[int, list[str]]:
    """The character gallery for training: character id -> local paths of its reference images.

    The gallery is read as it is now (reference images are not part of a snapshot). An item whose
    character has no reference image yet loses its character id, so it falls back to comparing
    with its condition's character reference like a clip with no character.
    """
    names = gallery_image_names({i.character_id for i in items if i.character_id is not None})
    for item in items:
        if item.character_id is not None and item.character_id not in names:
            item.character_id = None
    return {
        character_id: [local_path(name) for name in refs] for character_id, refs in names.items()
    }


def train_reward_job(run: Run, report: Progress) -> dict:
    """Train AnimeReward on the run's snapshot, evaluate on its test split, store a RewardModel."""
    snapshot = ExportSnapshot.objects.get(pk=run.params["snapshot_id"])
    config = RewardTrainConfig(
        **{"encoder_sources": encoder_sources(), **run.params.get("config", {})}
    )
    report(0, 1, None, f"loading the labelled clips of snapshot {snapshot.pk}")
    items = items_from_snapshot(snapshot)
    comparisons = comparisons_from_snapshot(snapshot)
    gallery = gallery_for_items(items)
    output_dir = artifacts_dir("reward_models", f"run-{run.pk}")
    total = [1]  # the trainer's step count, so storing does not reset the bar to 1 / 1

    def progress(step: int, steps: int, metrics: dict | None, message: str) -> None:
        total[0] = steps
        report(step, steps, metrics, message)

    gpus = int(run.params.get("gpus") or 1)
    if gpus > 1:  # DDP over this worker's GPUs: ``accelerate launch`` (scoring.anime_reward.ranks)
        report(0, 1, None, f"launching {gpus} training processes")
        result = train_reward_on_gpus(
            items,
            config,
            output_dir,
            processes=gpus,
            workdir=output_dir.parent / f"ranks-run-{run.pk}",
            on_progress=progress,
            gallery=gallery,
            comparisons=comparisons,
        )
    else:
        result = train_reward(
            items,
            config,
            output_dir,
            on_progress=progress,
            gallery=gallery,
            comparisons=comparisons,
        )
    report(total[0], total[0], None, "storing the checkpoint")
    reward_model = RewardModel.objects.create(
        name=run.params.get("name") or f"animereward-{config.preset}-run{run.pk}",
        preset=config.preset,
        checkpoint_dir=store_tree(result.output_dir, f"models/reward/run-{run.pk}"),
        run=run,
        config={
            **run.params.get("config", {}),
            "encoder_sources": config.encoder_sources,  # the folders it loaded (settings + run)
            "snapshot_id": snapshot.pk,
            "snapshot_hash": snapshot.content_hash,
            "gpus": gpus,
            "train_clips": result.train_clips,
            "test_clips": result.test_clips,
            "skipped": result.skipped,
            "gallery_characters": sorted(gallery),
            "comparisons": result.comparisons,
            "tie_parameters": result.tie_parameters,
        },
        metrics=result.metrics,
        evaluation={"clips": result.evaluation, "losses": result.losses},
    )
    return {"reward_model_id": reward_model.pk, "checkpoint": reward_model.checkpoint_dir}


# --- scoring ---------------------------------------------------------------------------------------


def load_reward_model(reward_model: RewardModel, *, device: str = "auto") -> AnimeReward:
    """The stored checkpoint on the best device (bf16 encoders on a GPU)."""
    device = pick_device(device)
    return AnimeReward.load(
        local_tree(reward_model.checkpoint_dir),
        sources=encoder_sources() or None,
        device=device,
        dtype=pick_dtype(device),
    )


SCORING_CHUNK_CLIPS = 200  # clips per chunk: a few minutes of a GPU at full presets
CHUNK_ATTEMPTS = 3


def scoring_job(run: Run, report: Progress) -> dict:
    """Score the run's clips (a round's, or a list) with its reward model, as chunks of
    ``chunk_clips`` clips that every gpu worker takes (``runs.fanout``); then refresh the rounds'
    model-ordered queue signals."""
    clips = Clip.objects.exclude(status=Clip.Status.PULLED)
    if "round_id" in run.params:
        clips = clips.filter(round_id=run.params["round_id"])
    else:
        clips = clips.filter(pk__in=run.params["clip_ids"])
    clip_ids = list(clips.order_by("pk").values_list("pk", flat=True))
    size = run.params.get("chunk_clips") or SCORING_CHUNK_CLIPS
    common = {k: run.params[k] for k in ("reward_model_id",) if k in run.params}
    common["batch_size"] = run.params.get("batch_size", 8)
    chunks = [{**common, "clip_ids": ids, "size": len(ids)} for ids in chunked(clip_ids, size)]
    report(0, len(clip_ids), None, f"scoring {len(clip_ids)} clips in {len(chunks)} chunks")
    outcome = run_chunks(
        run,
        report,
        kind=Run.Kind.SCORING_CHUNK,
        chunks=chunks,
        max_attempts=run.params.get("chunk_attempts") or CHUNK_ATTEMPTS,
    )
    counts = {key: 0 for key in ("scored", "failed", "already_scored")}
    for chunk in outcome.chunks:
        for key in counts:
            counts[key] += int(chunk.artifacts.get(key) or 0)
    if outcome.failed:
        raise RuntimeError(
            f"{len(outcome.failed)} of {len(chunks)} scoring chunks failed (the clips they scored "
            f"are kept; resume the run to score only the rest): {outcome.summary()}"
        )
    for round_id in clips.values_list("round_id", flat=True).distinct():
        update_queue_signals(reward_model_id=run.params["reward_model_id"], round_id=round_id)
    return {**counts, "chunks": len(chunks)}


_model_cache: dict[tuple, AnimeReward] = {}


def cached_reward_model(reward_model: RewardModel) -> AnimeReward:
    """This worker process's loaded reward model, kept between chunks (one at a time)."""
    key = (reward_model.pk, reward_model.checkpoint_dir)
    if key not in _model_cache:
        _model_cache.clear()
        _model_cache[key] = load_reward_model(reward_model)
    return _model_cache[key]


def scoring_chunk_job(run: Run, report: Progress) -> dict:
    """One chunk of a scoring run: its clips not yet scored by the model (idempotent). Its
    artifacts say where the chunk's time went (``seconds``: bench/fanout.py reads them)."""
    started = time.monotonic()
    reward_model = RewardModel.objects.get(pk=run.params["reward_model_id"])
    model = cached_reward_model(reward_model)
    seconds = {"load": time.monotonic() - started}
    counts = score_clips(
        reward_model=reward_model,
        clip_ids=run.params["clip_ids"],
        batch_size=run.params.get("batch_size", 8),
        on_progress=report,
        model=model,
        timings=seconds,
    )
    return {**counts, "seconds": {key: round(value, 3) for key, value in seconds.items()}}


def score_clips(
    *,
    reward_model: RewardModel,
    clip_ids: list[int],
    batch_size: int = 8,
    on_progress: Progress | None = None,
    model: AnimeReward | None = None,
    timings: dict | None = None,
) -> dict:
    """Score clips into ClipScore rows (one per clip and reward model). Idempotent: clips already
    scored without error are skipped; a clip that cannot be decoded gets a row with its error
    and the rest proceed. ``timings`` receives the seconds spent reading the clips' rows
    (``prepare``), waiting for decoded frames (``decode_wait``), in the models (``score``) and
    writing the scores (``write``)."""
    report = on_progress or no_progress
    seconds = timings if timings is not None else {}
    seconds.update(prepare=0.0, decode_wait=0.0, score=0.0, write=0.0)
    mark = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.monotonic()
        seconds[phase] += now - mark
        mark = now

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
        try:
            specs.append(
                ClipSpec(
                    clip.pk,
                    local_path(clip.video.name),
                    local_path(clip.condition.image.name),
                    clip.condition.prompt,
                    local_path(clip.condition.character_reference.name),
                    clip.condition.character_id,  # compared with the model's gallery entry
                )
            )
        except Exception as error:  # one unreadable file is that clip's error, not the run's
            errors[clip.pk] = f"{type(error).__name__}: {error}"
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
    device = next(model.parameters()).device
    lap("prepare")
    with cores_shared_with_decoding(device):
        for batch in iter_decoded_batches(specs, size=frame_size, batch_size=batch_size):
            lap("decode_wait")
            _save_errors(reward_model, batch.errors)
            errors.update(batch.errors)
            if batch.inputs is not None:
                rewards = model.score_batch(batch.inputs)
                lap("score")
                # One upsert per batch (not two queries per clip): the write stays a small
                # share of a chunk however fast the models are.
                ClipScore.objects.bulk_create(
                    [
                        ClipScore(
                            clip_id=spec.clip_id,
                            reward_model=reward_model,
                            error="",
                            **{
                                key: float(rewards[key][row])
                                for key in (*DIMENSION_KEYS, "overall")
                            },
                        )
                        for row, spec in enumerate(batch.specs)
                    ],
                    update_conflicts=True,
                    unique_fields=["clip", "reward_model"],
                    update_fields=[*DIMENSION_KEYS, "overall", "error"],
                )
                scored += len(batch.specs)
            report(scored + len(errors), total, None, "")
            lap("write")
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
