"""TrainingRun bookkeeping shared by every GPU job (reward training, scoring, pairs, GAPO, generation).

A task calls ``begin_run`` first: it locks the row and only a QUEUED run proceeds, so a redelivered
task does no harm. A run found RUNNING means the worker that held it died (late ack redelivers the
message): it is marked failed with its last checkpoint, and an admin resumes it as a new run.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from training.models import TrainingRun

LOG_TAIL_CHARS = 8000


class RunCancelled(Exception):
    """Raised inside a job when an admin asked to cancel its run."""


def create_run(
    *, kind: str, params: dict, created_by=None, resumed_from: TrainingRun | None = None
) -> TrainingRun:
    if kind not in TrainingRun.Kind.values:
        raise ValueError(
            f"unknown run kind {kind!r}; expected one of {', '.join(TrainingRun.Kind.values)}"
        )
    return TrainingRun.objects.create(
        kind=kind, params=params, created_by=created_by, resumed_from=resumed_from
    )


def begin_run(run_id: int) -> TrainingRun | None:
    """Move a queued run to RUNNING and return it; None when the task must not run."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status == TrainingRun.Status.RUNNING:
            _mark_failed(
                run, "worker lost mid-run (redelivered task); resume from the last checkpoint"
            )
            return None
        if run.status != TrainingRun.Status.QUEUED:
            return None
        if run.cancel_requested:
            run.status = TrainingRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            return None
        now = timezone.now()
        run.status = TrainingRun.Status.RUNNING
        run.started_at = now
        run.heartbeat_at = now
        run.save(update_fields=["status", "started_at", "heartbeat_at"])
        return run


class RunReporter:
    """Callable progress sink for the ML core: ``reporter(step, total, metrics, message)``.

    Writes at most every ``min_interval`` seconds (always when metrics or a message come), appends
    metrics to the run's series, and raises RunCancelled once an admin asked to cancel.
    """

    def __init__(self, run_id: int, *, min_interval: float = 1.0):
        self.run_id = run_id
        self.min_interval = min_interval
        self._last_write = 0.0

    def __call__(
        self, step: int, total: int, metrics: dict | None = None, message: str = ""
    ) -> None:
        now = time.monotonic()
        if (
            not metrics
            and not message
            and step < total
            and now - self._last_write < self.min_interval
        ):
            return
        self._last_write = now
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=self.run_id)
            run.step = step
            run.total_steps = total
            run.heartbeat_at = timezone.now()
            fields = ["step", "total_steps", "heartbeat_at"]
            if metrics:
                run.metrics = [*run.metrics, {"step": step, **metrics}]
                fields.append("metrics")
            if message:
                stamp = timezone.now().strftime("%H:%M:%S")
                run.log_tail = (run.log_tail + f"[{stamp}] {message}\n")[-LOG_TAIL_CHARS:]
                fields.append("log_tail")
            run.save(update_fields=fields)
            cancel = run.cancel_requested
        if cancel:
            raise RunCancelled(f"run {self.run_id} was cancelled")

    def log(self, message: str) -> None:
        run = TrainingRun.objects.only("step", "total_steps").get(pk=self.run_id)
        self(run.step, run.total_steps, None, message)


def save_checkpoint_path(run_id: int, path: str) -> None:
    TrainingRun.objects.filter(pk=run_id).update(checkpoint_path=path, heartbeat_at=timezone.now())


def finish_run(run_id: int, *, artifacts: dict | None = None) -> None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        run.status = TrainingRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.artifacts = {**run.artifacts, **(artifacts or {})}
        run.save(update_fields=["status", "finished_at", "artifacts"])


def fail_run(run_id: int, *, error: str) -> None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        _mark_failed(run, error)


def cancel_run(run_id: int) -> None:
    """Mark a run that stopped on RunCancelled as cancelled."""
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.Status.CANCELLED, finished_at=timezone.now()
    )


def request_cancel(run_id: int) -> TrainingRun:
    """Ask a run to stop: a queued run is cancelled at once, a running one at its next progress report."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status == TrainingRun.Status.QUEUED:
            run.status = TrainingRun.Status.CANCELLED
            run.finished_at = timezone.now()
        run.cancel_requested = True
        run.save(update_fields=["status", "finished_at", "cancel_requested"])
        return run


def fail_stale_runs(*, now=None) -> int:
    """Mark RUNNING runs whose worker stopped sending heartbeats as failed (worker killed)."""
    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.LABELHUB_RUN_STALE_SECONDS)
    stale = TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=now - stale_after
    )
    count = 0
    for run_id in stale.values_list("pk", flat=True):
        fail_run(run_id, error="no heartbeat: the worker was lost; resume from the last checkpoint")
        count += 1
    return count


def _mark_failed(run: TrainingRun, error: str) -> None:
    run.status = TrainingRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.log_tail = (run.log_tail + f"FAILED: {error}\n")[-LOG_TAIL_CHARS:]
    run.save(update_fields=["status", "error", "finished_at", "log_tail"])


def eta_seconds(run: TrainingRun) -> float | None:
    """Seconds left at the run's average pace so far; None before the first step."""
    if (
        run.status != TrainingRun.Status.RUNNING
        or not run.started_at
        or not run.step
        or not run.total_steps
    ):
        return None
    elapsed = (timezone.now() - run.started_at).total_seconds()
    return elapsed / run.step * max(run.total_steps - run.step, 0)


__all__ = [
    "RunCancelled",
    "RunReporter",
    "begin_run",
    "cancel_run",
    "create_run",
    "eta_seconds",
    "fail_run",
    "fail_stale_runs",
    "finish_run",
    "request_cancel",
    "save_checkpoint_path",
]
