"""The alignment loop's GPU jobs, registered with ``runs`` (see ``training.apps``): preference
pairs, GAPO/DPO/SFT training, candidate generation. Each reads its validated params from the run
row, calls the ML core (``training.alignment``) with plain values, and stores its results.
A worker killed mid-run leaves the row RUNNING with its last checkpoint; ``runs`` fails it and an
admin resumes it from that checkpoint.
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings
from django.db import connection

from annotation.models import Clip, Condition, ImportRow, Round
from annotation.services.ingest import (
    GENERATED_FOLDER,
    import_generated_clips,
    ingest_import_row,
)
from annotation.services.rounds import create_round
from labelhub.devices import pick_device, pick_dtype
from labelhub.progress import Progress
from labelhub.storage import delete as delete_stored
from labelhub.storage import (
    list_objects,
    local_path,
    local_tree,
    on_local_disk,
    run_dir,
    save_verified,
    store_tree,
)
from runs.fanout import chunked, run_chunks
from runs.models import Run
from runs.services import record_artifacts, save_checkpoint_path
from training.alignment.cogvideox import load_generator
from training.alignment.config import TrainConfig
from training.alignment.pairs import write_pairs_jsonl
from training.alignment.sampling import GenerationCondition, candidate_seed, generate_candidates
from training.alignment.trainer import train
from training.models import Candidate, PolicyCheckpoint
from training.ranks import train_on_gpus
from training.services.launch import CHUNK_ATTEMPTS, GENERATION_CHUNK_CONDITIONS
from training.services.pairs import build_round_pairs, pairs_for_training


def pairs_job(run: Run, report: Progress) -> dict:
    p = run.params
    report(0, 1, None, f"building pairs for round {p['round_id']} from {p['origin']}")
    pairs = build_round_pairs(
        round_id=p["round_id"],
        origin=p["origin"],
        reward_model_id=p["reward_model_id"],
        min_gap=p["min_gap"],
        run_id=run.pk,
    )
    report(1, 1, None, f"{len(pairs)} pairs")
    return {"pairs": len(pairs), "pair_ids": [pair.pk for pair in pairs]}


def train_policy_job(run: Run, report: Progress) -> dict:
    p = run.params
    output_dir = Path(p.get("output_dir") or run_dir(run.pk))
    record_artifacts(run.pk, output_dir=str(output_dir))
    pairs = pairs_for_training(
        round_id=p["round_id"], origin=p["origin"], reward_model_id=p["reward_model_id"]
    )
    pairs_path = output_dir / f"pairs-run-{run.pk}.jsonl"
    write_pairs_jsonl(pairs, pairs_path)
    parent = (
        PolicyCheckpoint.objects.get(pk=p["init_checkpoint_id"])
        if p.get("init_checkpoint_id")
        else None
    )
    root = run
    while root.resumed_from_id:
        root = Run.objects.get(pk=root.resumed_from_id)
    config = TrainConfig(
        **{**p["trainer"], "init_lora": str(local_tree(parent.lora_path)) if parent else ""},
        output_dir=str(output_dir),
        resume_from=resume_point(p.get("resume_from", "")),
    )

    def on_checkpoint(path: str) -> None:
        save_checkpoint_path(run.pk, store_checkpoint(Path(path), f"checkpoints/run-{root.pk}"))

    gpus = int(p.get("gpus") or 1)
    if gpus > 1:  # DDP over this worker's GPUs: ``accelerate launch`` (training.ranks)
        report(0, config.max_steps, None, f"launching {gpus} training processes")
        result = SimpleNamespace(
            **train_on_gpus(
                config,
                pairs_path,
                processes=gpus,
                workdir=output_dir / f"ranks-run-{run.pk}",
                on_progress=report,
                on_checkpoint=on_checkpoint,
            )
        )
    else:
        result = train(config, pairs, on_progress=report, on_checkpoint=on_checkpoint)
    name = p.get("checkpoint_name") or f"{run.kind}-run-{run.pk}"
    report(result.steps, result.steps, None, "storing the LoRA weights")
    checkpoint = PolicyCheckpoint.objects.create(
        name=name,
        base_preset=config.preset,
        lora_path=store_tree(result.lora_dir, f"models/policy/run-{run.pk}"),
        run=run,
        parent=parent,
    )
    return {
        "output_dir": str(output_dir),
        "lora_dir": result.lora_dir,
        "policy_checkpoint_id": checkpoint.pk,
        "steps": result.steps,
        "pairs": len(pairs),
        "first_run_id": root.pk,
    }


def store_checkpoint(path: Path, prefix: str) -> str:
    """Where a resume will find the checkpoint the trainer just wrote. On remote storage (S3) it
    is stored under ``prefix/<its name>``, so a resume on any GPU host finds it, and stored ones
    the trainer has pruned locally go (retention holds in the bucket too); returns the stored
    name. On local-disk storage the checkpoint stays where it is (no second copy on the disk the
    paper-scale plan fills): its absolute path."""
    if on_local_disk():
        return str(path)
    name = store_tree(path, f"{prefix}/{path.name}")
    kept = {p.name for p in path.parent.glob("checkpoint-*[0-9]")}
    for obj in list_objects((prefix,)):
        if obj.name[len(prefix) + 1 :].split("/", 1)[0] not in kept:
            delete_stored(obj.name)
    return name


def resume_point(resume_from: str) -> str:
    """The local directory to resume from: a stored checkpoint (a relative storage name) is
    fetched to this host; an absolute path (a checkpoint written before they were stored) is
    used as it is."""
    if not resume_from or resume_from == "latest" or Path(resume_from).is_absolute():
        return resume_from
    return str(local_tree(resume_from))


# --- generation: a parent run fanned out into chunks of conditions ---------------------------------


def generation_job(run: Run, report: Progress) -> dict:
    """Generate K candidates per condition of the source round into the target round, as chunks
    of ``chunk_conditions`` conditions that every gpu worker takes (``runs.fanout``).

    A chunk hands each video to ingest as soon as it is written and ends without waiting for the
    imports (the default-queue workers import while the gpu workers generate the next chunks);
    this parent waits for every import once the chunks have ended, links the imported clips to
    the policy as Candidates and removes the hand-over files ingest did not take. A chunk whose candidates are still
    missing then (an import failed) runs again as a fresh chunk, within ``chunk_attempts`` passes.
    A resumed (or repeated) run makes only what is missing from the target round."""
    p = run.params
    condition_ids = sorted(
        Clip.objects.filter(round_id=p["source_round_id"])
        .values_list("condition_id", flat=True)
        .distinct()
    )
    if not condition_ids:
        raise ValueError(f"round {p['source_round_id']} has no conditions to generate from")
    target, _ = create_round(name=p["target_round"])
    k = p["candidates_per_condition"]
    size = p.get("chunk_conditions") or GENERATION_CHUNK_CONDITIONS
    checkpoint = PolicyCheckpoint.objects.get(pk=p["checkpoint_id"]) if p["checkpoint_id"] else None
    source = f"policy:{checkpoint.name}" if checkpoint else "base"
    common = {
        key: p.get(key)
        for key in ("checkpoint_id", "candidates_per_condition", "base_seed", "inference_steps")
        + ("guidance_scale", "preset", "sampler")
    }
    chunks = [
        {**common, "target_round_id": target.pk, "condition_ids": ids, "size": len(ids) * k}
        for ids in chunked(condition_ids, size)
    ]
    wanted = {
        (str(condition_id), candidate_seed(p["base_seed"], index))
        for condition_id in condition_ids
        for index in range(k)
    }
    report(
        0,
        len(condition_ids) * k,
        None,
        f"generating {k} candidates for {len(condition_ids)} conditions into {target.name} in "
        f"{len(chunks)} chunks of up to {size} conditions",
    )
    record_artifacts(run.pk, round_id=target.pk, chunks=len(chunks))
    passes = p.get("chunk_attempts") or CHUNK_ATTEMPTS
    redo: frozenset[int] = frozenset()
    for attempt in range(1, passes + 1):
        outcome = run_chunks(
            run,
            report,
            kind=Run.Kind.GENERATION_CHUNK,
            chunks=chunks,
            max_attempts=passes,
            redo=redo,
        )
        _wait_for_imports(target, source, report, len(condition_ids) * k)
        imported = _imported(target, source, condition_ids) & wanted
        # A chunk that succeeded but whose candidates are not all in the round runs again (a
        # failed chunk is run_chunks' to retry or to report).
        failed_numbers = {c.params.get("chunk") for c in outcome.failed}
        short = {int(condition_id) for condition_id, _ in wanted - imported}
        redo = frozenset(
            number
            for number, chunk in enumerate(chunks, 1)
            if number not in failed_numbers and short & set(chunk["condition_ids"])
        )
        if not redo or attempt == passes:
            break
        report(
            len(imported),
            len(condition_ids) * k,
            None,
            f"chunks {sorted(redo)} ended with candidates not imported; making them again",
        )
    linked = _link_candidates(target, source, condition_ids, checkpoint, run)
    # Ingest removes each hand-over it imported; what is left is a failed import's or a killed
    # attempt's (stored, its row never created).
    for chunk in run.children.all():
        _discard_orphans(f"{GENERATED_FOLDER}/run-{chunk.pk}", keep=set())
    children = list(run.children.all())
    # This run's import rows (every attempt of every chunk, redone ones included).
    rows = list(
        ImportRow.objects.filter(
            batch_id__in=[b for c in children for b in c.artifacts.get("import_batch_ids", [])]
        ).order_by("pk")
    )
    errors = [
        row
        for row in rows
        if row.status == ImportRow.Status.ERROR
        and (str(row.payload["condition_id"]), row.payload["seed"]) not in imported
    ]
    totals = {
        # videos: made by any row (a redone chunk's first row too); already: the current rows
        "videos": sum(int(c.artifacts.get("videos") or 0) for c in children),
        "already_in_round": sum(
            int(c.artifacts.get("already_in_round") or 0) for c in outcome.chunks
        ),
    }
    artifacts = {
        "round_id": target.pk,
        "chunks": len(chunks),
        "chunk_workers": sorted({c.worker for c in children if c.worker}),
        **totals,
        "imported": sum(row.status == ImportRow.Status.OK for row in rows),
        "import_errors": len(errors),
        "candidates": linked,
    }
    record_artifacts(run.pk, **artifacts)
    if outcome.failed:
        raise RuntimeError(
            f"{len(outcome.failed)} of {len(chunks)} chunks failed (their candidates made so far "
            f"are in {target.name}; resume the run to make only the rest): {outcome.summary()}"
        )
    missing = len(wanted - imported)
    if missing:
        details = "; ".join(f"{row.video_path}: {row.message}" for row in errors[:10])
        raise RuntimeError(
            f"{missing} candidates are not in {target.name} after {attempt} pass(es) over the chunks "
            f"({len(errors)} import errors{': ' + details if details else ''}); resume the run "
            "to make only them"
        )
    return artifacts


_generator_cache: dict[tuple, object] = {}


def cached_generator(preset: str):
    """The base generator of this worker process, loaded once and kept between chunks (only the
    policy's LoRA changes from chunk to chunk, and ``generate_candidates`` unloads it after)."""
    device = pick_device()
    key = (preset, settings.LABELHUB_COGVIDEOX_PATH, str(device))
    if key not in _generator_cache:
        _generator_cache.clear()  # one generator per GPU: never two in memory
        _generator_cache[key] = load_generator(
            preset, path=settings.LABELHUB_COGVIDEOX_PATH, device=device, dtype=pick_dtype(device)
        )
    return _generator_cache[key]


def generation_chunk_job(run: Run, report: Progress) -> dict:
    """One chunk: the missing candidates of a few conditions, each handed to ingest (the trusted
    entry point, through storage) as soon as its video exists. It ends once its last video is
    handed over: the parent waits for the imports and links the Candidates (``generation_job``),
    so the GPU goes on to the next chunk while the default-queue workers import."""
    p = run.params
    checkpoint = PolicyCheckpoint.objects.get(pk=p["checkpoint_id"]) if p["checkpoint_id"] else None
    source = f"policy:{checkpoint.name}" if checkpoint else "base"
    target = Round.objects.get(pk=p["target_round_id"])
    conditions = [
        GenerationCondition(key=str(c.pk), prompt=c.prompt, first_frame=local_path(c.image.name))
        for c in Condition.objects.filter(pk__in=p["condition_ids"]).order_by("pk")
    ]
    seeds = [
        candidate_seed(p["base_seed"], index) for index in range(p["candidates_per_condition"])
    ]
    wanted = {(c.key, seed) for c in conditions for seed in seeds}
    handover = f"{GENERATED_FOLDER}/run-{run.pk}"
    in_flight = _pending_rows(target, source, p["condition_ids"])
    _discard_orphans(handover, keep={row.payload["video"] for row in in_flight})
    present = wanted & (
        _imported(target, source, p["condition_ids"])
        | {(str(r.payload["condition_id"]), r.payload["seed"]) for r in in_flight}
    )
    report(
        len(present),
        len(wanted),
        None,
        f"chunk {p.get('chunk', '?')}/{p.get('chunks', '?')}: {len(wanted) - len(present)} of "
        f"{len(wanted)} candidates to make ({len(present)} already in {target.name} or importing)",
    )
    # This chunk's import batches, a killed attempt's included (the parent counts their rows).
    batches: list[int] = list(run.artifacts.get("import_batch_ids", []))
    handed_over = 0
    # Where the chunk's time goes (bench/fanout.py reads it): loading, generating, handing over.
    seconds = {"load": 0.0, "generate": 0.0, "hand_over": 0.0}

    def hand_over(candidate) -> None:
        nonlocal handed_over
        started = time.monotonic()
        video = Path(candidate.video)
        stored = save_verified(video, f"{handover}/{video.name}").name
        batch = import_generated_clips(
            round_id=target.pk,
            rows=[
                {
                    "video": stored,
                    "condition_id": int(candidate.condition_key),
                    "seed": candidate.seed,
                    "source": source,
                }
            ],
            created_by=run.created_by,
            manifest_name=f"generation run {run.parent_id or run.pk} chunk {run.pk}",
        )
        handed_over += 1
        batches.append(batch.pk)
        record_artifacts(run.pk, import_batch_ids=batches)
        video.unlink(missing_ok=True)  # storage holds it now
        seconds["hand_over"] += time.monotonic() - started

    made = []
    if present != wanted:
        out_dir = run_dir(run.pk) / "videos"
        shutil.rmtree(out_dir, ignore_errors=True)  # a killed attempt's half-written video
        started = time.monotonic()
        generator = cached_generator(p["preset"])
        seconds["load"] = time.monotonic() - started
        try:
            made = generate_candidates(
                generator,
                conditions,
                candidates_per_condition=p["candidates_per_condition"],
                base_seed=p["base_seed"],
                out_dir=out_dir,
                lora_dir=str(local_tree(checkpoint.lora_path)) if checkpoint else None,
                inference_steps=p["inference_steps"],
                guidance_scale=p["guidance_scale"],
                sampler=p.get("sampler"),  # None (runs from before it was recorded): the preset's
                on_progress=lambda done, total: report(len(present) + done, len(wanted), None, ""),
                skip=present,
                on_candidate=hand_over,
            )
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise OSError(
                error.errno,
                f"disk full: no space left on the device while writing candidate videos under "
                f"{out_dir} ({handed_over} handed over before it filled; nothing half-written is "
                "imported). Free space and resume the run: only the missing candidates are made",
            ) from error
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
            seconds["generate"] = time.monotonic() - started - seconds["load"]
            seconds["generate"] -= seconds["hand_over"]
    artifacts = {
        "videos": len(made),
        "sampler": sorted({c.sampler for c in made}),
        "already_in_round": len(present),
        "handed_over": handed_over,
        "import_batch_ids": batches,
        "seconds": {key: round(value, 3) for key, value in seconds.items()},
    }
    record_artifacts(run.pk, **artifacts)
    return artifacts


def _imported(target: Round, source: str, condition_ids: list[int]) -> set[tuple[str, int]]:
    """(condition key, seed) of the clips this source already has in the target round."""
    return {
        (str(condition_id), seed)
        for condition_id, seed in Clip.objects.filter(
            round=target, source_name=source, condition_id__in=condition_ids, seed__isnull=False
        ).values_list("condition_id", "seed")
    }


def _pending_rows(target: Round, source: str, condition_ids: list[int]):
    """Import rows of generated candidates for these conditions still waiting for ingest."""
    return list(
        ImportRow.objects.filter(
            status__in=(ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING),
            payload__trusted=True,
            payload__round_id=target.pk,
            payload__source=source,
            payload__condition_id__in=condition_ids,
        )
    )


def _discard_orphans(prefix: str, *, keep: set[str]) -> None:
    """Remove hand-over videos under ``prefix`` that no pending import row reads (a killed
    attempt stored them but never recorded their row, or ingest has its own copy now)."""
    for obj in list_objects((prefix,)):
        if obj.name not in keep:
            delete_stored(obj.name)


def _wait_for_imports(target: Round, source: str, report: Progress, total: int) -> None:
    """Wait (on the default queue's ingest workers) until no import row of this source's
    candidates for the target round is pending, the rows of killed chunk attempts included."""
    pending = ImportRow.objects.filter(
        status__in=(ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING),
        payload__trusted=True,
        payload__round_id=target.pk,
        payload__source=source,
    )
    if connection.in_atomic_block:
        # Inside a transaction (a command or test wrapping the run) no worker can see the rows
        # before it commits: ingest them here instead of waiting forever.
        for row_id in pending.values_list("pk", flat=True):
            ingest_import_row(row_id)
    deadline = time.monotonic() + settings.LABELHUB_GENERATION_IMPORT_TIMEOUT
    while count := pending.count():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{count} generated candidates still not imported into {target.name}; "
                "is a default-queue worker running?"
            )
        report(total - count, total, None, "")  # heartbeat and cancel check while ingest works
        time.sleep(0.5)


def _link_candidates(
    target: Round, source: str, condition_ids: list[int], checkpoint, run: Run
) -> int:
    """Record every clip this source has for these conditions as the policy's Candidate (those
    a killed attempt imported too), attributed to the generation run."""
    clips = Clip.objects.filter(
        round=target, source_name=source, condition_id__in=condition_ids, seed__isnull=False
    ).values_list("pk", "seed")
    for clip_id, seed in clips:
        Candidate.objects.update_or_create(
            clip_id=clip_id,
            defaults={"checkpoint": checkpoint, "seed": seed, "run_id": run.parent_id or run.pk},
        )
    return len(clips)
