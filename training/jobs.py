"""The alignment loop's GPU jobs, registered with ``runs`` (see ``training.apps``): preference
pairs, GAPO/DPO/SFT training, candidate generation. Each reads its validated params from the run
row, calls the ML core (``training.alignment``) with plain values, and stores its results.
A worker killed mid-run leaves the row RUNNING with its last checkpoint; ``runs`` fails it and an
admin resumes it from that checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from annotation.models import Clip, Condition, ImportBatch, ImportRow
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
from runs.models import TrainingRun
from runs.services import record_artifacts, save_checkpoint_path
from training.alignment.cogvideox import load_generator
from training.alignment.config import TrainConfig
from training.alignment.pairs import write_pairs_jsonl
from training.alignment.sampling import GenerationCondition, candidate_seed, generate_candidates
from training.alignment.trainer import train
from training.models import Candidate, PolicyCheckpoint
from training.services.pairs import build_round_pairs, pairs_for_training


def pairs_job(run: TrainingRun, report: Progress) -> dict:
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


def train_policy_job(run: TrainingRun, report: Progress) -> dict:
    p = run.params
    output_dir = Path(p.get("output_dir") or run_dir(run.pk))
    record_artifacts(run.pk, output_dir=str(output_dir))
    pairs = pairs_for_training(
        round_id=p["round_id"], origin=p["origin"], reward_model_id=p["reward_model_id"]
    )
    write_pairs_jsonl(pairs, output_dir / f"pairs-run-{run.pk}.jsonl")
    parent = (
        PolicyCheckpoint.objects.get(pk=p["init_checkpoint_id"])
        if p.get("init_checkpoint_id")
        else None
    )
    root = run
    while root.resumed_from_id:
        root = TrainingRun.objects.get(pk=root.resumed_from_id)
    config = TrainConfig(
        **{**p["trainer"], "init_lora": str(local_tree(parent.lora_path)) if parent else ""},
        output_dir=str(output_dir),
        resume_from=resume_point(p.get("resume_from", "")),
    )
    result = train(
        config,
        pairs,
        on_progress=report,
        on_checkpoint=lambda path: save_checkpoint_path(
            run.pk, store_checkpoint(Path(path), f"checkpoints/run-{root.pk}")
        ),
    )
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


def generation_job(run: TrainingRun, report: Progress) -> dict:
    p = run.params
    checkpoint = PolicyCheckpoint.objects.get(pk=p["checkpoint_id"]) if p["checkpoint_id"] else None
    condition_ids = (
        Clip.objects.filter(round_id=p["source_round_id"])
        .values_list("condition_id", flat=True)
        .distinct()
    )
    conditions = [
        GenerationCondition(key=str(c.pk), prompt=c.prompt, first_frame=local_path(c.image.name))
        for c in Condition.objects.filter(pk__in=condition_ids).order_by("pk")
    ]
    if not conditions:
        raise ValueError(f"round {p['source_round_id']} has no conditions to generate from")
    target, _ = create_round(name=p["target_round"])
    # A resumed (or repeated) run: candidates of this checkpoint already in the target round are
    # not generated again (their videos would be refused as duplicates).
    wanted = {
        (c.key, candidate_seed(p["base_seed"], k))
        for c in conditions
        for k in range(p["candidates_per_condition"])
    }
    present = wanted & {
        (str(condition_id), seed)
        for condition_id, seed in Candidate.objects.filter(
            clip__round=target,
            checkpoint=checkpoint,
            clip__condition_id__in=[int(c.key) for c in conditions],
        ).values_list("clip__condition_id", "seed")
    }
    report(
        0,
        len(wanted) - len(present),
        None,
        f"generating {p['candidates_per_condition']} candidates for {len(conditions)} conditions with "
        f"{checkpoint.name if checkpoint else 'the base generator'}"
        + (f" ({len(present)} already in {target.name}: skipped)" if present else ""),
    )
    if present == wanted:
        return {
            "round_id": target.pk,
            "import_batch_id": None,
            "videos": 0,
            "already_in_round": len(present),
            "imported": 0,
            "import_errors": 0,
        }
    components = load_generator(
        p["preset"],
        path=settings.LABELHUB_COGVIDEOX_PATH,
        device=pick_device(),
        dtype=pick_dtype(pick_device()),
    )
    out_dir = run_dir(run.pk) / "videos"
    candidates = generate_candidates(
        components,
        conditions,
        candidates_per_condition=p["candidates_per_condition"],
        base_seed=p["base_seed"],
        out_dir=out_dir,
        lora_dir=str(local_tree(checkpoint.lora_path)) if checkpoint else None,
        inference_steps=p["inference_steps"],
        guidance_scale=p["guidance_scale"],
        on_progress=report,
        skip=present,
    )
    report(
        len(candidates),
        len(candidates),
        None,
        f"importing {len(candidates)} candidates into {target.name}",
    )
    # The videos go through storage, so any default-queue worker (on any host) can ingest them.
    stored = [
        save_verified(Path(c.video), f"{GENERATED_FOLDER}/run-{run.pk}/{Path(c.video).name}").name
        for c in candidates
    ]
    batch = import_generated_clips(
        round_id=target.pk,
        rows=[
            {
                "video": name,
                "condition_id": int(c.condition_key),
                "seed": c.seed,
                "source": f"policy:{checkpoint.name}" if checkpoint else "base",
            }
            for c, name in zip(candidates, stored, strict=True)
        ],
        created_by=run.created_by,
        manifest_name=f"generation run {run.pk}",
    )
    artifacts = {
        "round_id": target.pk,
        "import_batch_id": batch.pk,
        "videos": len(candidates),
        "already_in_round": len(present),
        "seeds": sorted({c.seed for c in candidates}),
        "video_dir": str(out_dir),
    }
    record_artifacts(run.pk, **artifacts)
    rows = _wait_for_import(batch, report)
    for name in stored:  # ingest keeps its own copy (originals/); the hand-over is done
        delete_stored(name)
    for candidate, row in zip(candidates, rows, strict=True):
        if row.clip_id is not None:
            Candidate.objects.update_or_create(
                clip_id=row.clip_id,
                defaults={"checkpoint": checkpoint, "seed": candidate.seed, "run": run},
            )
    failed = [row for row in rows if row.status != ImportRow.Status.OK]
    imported = len(rows) - len(failed)
    artifacts.update(imported=imported, import_errors=len(failed))
    if failed:
        record_artifacts(run.pk, **artifacts)
        details = "; ".join(f"row {row.line}: {row.message}" for row in failed[:10])
        raise RuntimeError(
            f"{len(failed)} of {len(rows)} generated candidates were not imported into "
            f"{target.name} (import batch {batch.pk}): {details}"
        )
    return artifacts


def _wait_for_import(batch: ImportBatch, report: Progress) -> list[ImportRow]:
    """Wait (on the ingest workers of the default queue) until every row of the batch ended."""
    if connection.in_atomic_block:
        # Called inside a transaction (a command or test wrapping the run): no worker can see
        # these rows before it commits, so waiting would never end. Ingest them here instead.
        for row_id in batch.rows.filter(status=ImportRow.Status.QUEUED).values_list(
            "pk", flat=True
        ):
            ingest_import_row(row_id)
    deadline = time.monotonic() + settings.LABELHUB_GENERATION_IMPORT_TIMEOUT
    while True:
        rows = list(ImportRow.objects.filter(batch=batch).order_by("line"))
        done = sum(row.status in (ImportRow.Status.OK, ImportRow.Status.ERROR) for row in rows)
        report(done, len(rows), None, "")
        if done == len(rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"import batch {batch.pk}: {len(rows) - done} of {len(rows)} rows still not "
                "imported; is a default-queue worker running?"
            )
        time.sleep(1)
