"""Reads for the training pages and API: runs with progress and ETA, checkpoints, pairs."""

from __future__ import annotations

from django.db.models import QuerySet

from runs.models import TrainingRun
from runs.services import eta_seconds
from training.models import PolicyCheckpoint, PreferencePair


def runs(*, limit: int = 100) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("created_by").order_by("-created_at")[:limit]


def run_progress(run: TrainingRun) -> dict:
    """Everything the watch page polls: status, step/total, ETA, metric series, log tail."""
    fraction = (
        run.step / run.total_steps
        if run.total_steps
        else (1.0 if run.status == "succeeded" else 0.0)
    )
    return {
        "id": run.pk,
        "kind": run.kind,
        "kind_display": run.get_kind_display(),
        "status": run.status,
        "params": run.params,
        "step": run.step,
        "total_steps": run.total_steps,
        "fraction": round(min(fraction, 1.0), 4),
        "eta_seconds": eta_seconds(run),
        "created_by": run.created_by.username if run.created_by else None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "metrics": run.metrics,
        "log_tail": run.log_tail,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "checkpoint_path": run.checkpoint_path,
        "artifacts": run.artifacts,
        "resumed_from": run.resumed_from_id,
        "resumable": run.kind in ("gapo", "dpo", "sft")
        and run.status in ("failed", "cancelled")
        and bool(run.checkpoint_path),
    }


def run_summary(run: TrainingRun) -> dict:
    """A list row: no metric series or log."""
    data = run_progress(run)
    for key in ("metrics", "log_tail", "params", "artifacts"):
        data.pop(key)
    return data


def checkpoints() -> QuerySet[PolicyCheckpoint]:
    return PolicyCheckpoint.objects.select_related("run", "parent").order_by("-created_at")


def round_pairs(*, round_id: int) -> QuerySet[PreferencePair]:
    return PreferencePair.objects.filter(round_id=round_id).order_by("condition_id", "pk")
