"""What a ``gpu``-queue task does for each kind of run: begin (redelivery guard), work, finish.

Each job reads its validated params from the run row, calls the ML core with plain values,
reports progress through ``RunReporter`` (which raises RunCancelled on an admin's cancel) and
stores its results. A worker killed mid-run leaves the row RUNNING with its last checkpoint; the
redelivered task marks it failed (``begin_run``) and an admin resumes it from that checkpoint.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotation.models import Clip, Condition, Round
from training.models import PolicyCheckpoint, TrainingRun
from training.services.files import local_path, run_dir
from training.services.pairs import build_round_pairs, pairs_for_training
from training.services.runs import (
    RunCancelled,
    RunReporter,
    begin_run,
    cancel_run,
    fail_run,
    finish_run,
    save_checkpoint_path,
)

log = logging.getLogger(__name__)
Kind = TrainingRun.Kind


def execute_run(run_id: int) -> None:
    """Run a queued run to its end; does nothing for a run that is not queued."""
    run = begin_run(run_id)
    if run is None:
        return
    job = {
        Kind.PAIRS: _pairs_job,
        Kind.GAPO: _training_job,
        Kind.DPO: _training_job,
        Kind.SFT: _training_job,
        Kind.GENERATION: _generation_job,
    }.get(run.kind)
    if job is None:
        fail_run(run_id, error=f"{run.kind} runs are not executed by the training app")
        return
    reporter = RunReporter(run_id)
    try:
        artifacts = job(run, reporter)
    except RunCancelled:
        cancel_run(run_id)
    except Exception as error:  # a failed job must leave a failed run, whatever broke
        log.exception("run %s failed", run_id)
        fail_run(run_id, error=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}")
    else:
        finish_run(run_id, artifacts=artifacts)


def _pairs_job(run: TrainingRun, report: RunReporter) -> dict:
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


def _training_job(run: TrainingRun, report: RunReporter) -> dict:
    from training.pairs import write_pairs_jsonl
    from training.trainer import TrainConfig, train

    p = run.params
    output_dir = Path(p.get("output_dir") or run_dir(run.pk))
    TrainingRun.objects.filter(pk=run.pk).update(artifacts={"output_dir": str(output_dir)})
    pairs = pairs_for_training(
        round_id=p["round_id"], origin=p["origin"], reward_model_id=p["reward_model_id"]
    )
    write_pairs_jsonl(pairs, output_dir / f"pairs-run-{run.pk}.jsonl")
    config = TrainConfig(
        **p["trainer"], output_dir=str(output_dir), resume_from=p.get("resume_from", "")
    )
    result = train(
        config,
        pairs,
        on_progress=report,
        on_checkpoint=lambda path: save_checkpoint_path(run.pk, path),
    )
    root = run
    while root.resumed_from_id:
        root = TrainingRun.objects.get(pk=root.resumed_from_id)
    name = p.get("checkpoint_name") or f"{run.kind}-run-{run.pk}"
    checkpoint = PolicyCheckpoint.objects.create(
        name=name,
        base_preset=config.preset,
        lora_path=result.lora_dir,
        run=run,
        parent_id=p.get("init_checkpoint_id"),
    )
    return {
        "output_dir": str(output_dir),
        "lora_dir": result.lora_dir,
        "policy_checkpoint_id": checkpoint.pk,
        "steps": result.steps,
        "pairs": len(pairs),
        "first_run_id": root.pk,
    }


def _generation_job(run: TrainingRun, report: RunReporter) -> dict:
    from annotation.services.ingest import import_rows
    from training.generate import GenerationCondition, generate_candidates
    from training.generator import load_generator

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
    report(
        0,
        len(conditions) * p["candidates_per_condition"],
        None,
        f"generating {p['candidates_per_condition']} candidates for {len(conditions)} conditions with "
        f"{checkpoint.name if checkpoint else 'the base generator'}",
    )
    components = load_generator(
        p["preset"], path=settings.LABELHUB_COGVIDEOX_PATH, device=_device(), dtype=_dtype()
    )
    out_dir = run_dir(run.pk) / "videos"
    candidates = generate_candidates(
        components,
        conditions,
        candidates_per_condition=p["candidates_per_condition"],
        base_seed=p["base_seed"],
        out_dir=out_dir,
        lora_dir=checkpoint.lora_path if checkpoint else None,
        inference_steps=p["inference_steps"],
        guidance_scale=p["guidance_scale"],
        on_progress=report,
    )
    with transaction.atomic():
        target, _ = Round.objects.get_or_create(
            name=p["target_round"], defaults={"policy_checkpoint": checkpoint}
        )
        source = f"policy:{checkpoint.name}" if checkpoint else "base"
        batch = import_rows(
            rows=[
                {
                    "video": c.video,
                    "prompt": c.prompt,
                    "first_frame": c.first_frame,
                    "source": source,
                    "round": target.name,
                    "seed": c.seed,
                    **({"policy_checkpoint_id": checkpoint.pk} if checkpoint else {}),
                }
                for c in candidates
            ],
            created_by=run.created_by,
            manifest_name=f"generation run {run.pk}",
        )
    return {
        "round_id": target.pk,
        "import_batch_id": batch.pk,
        "videos": len(candidates),
        "seeds": sorted({c.seed for c in candidates}),
        "video_dir": str(out_dir),
    }


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() else torch.float32
