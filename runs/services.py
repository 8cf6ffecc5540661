"""The lifecycle of every GPU job, in one place: create, claim, heartbeat, progress, cancel, fail,
finish, resume.

A run's status moves only along ``TRANSITIONS`` (queued -> running -> succeeded/failed/cancelled;
failed/cancelled -> queued on resume), enforced by ``_move``: no path flips a failed run to
succeeded or overwrites a finished one. ``execute_run`` is the one wrapper around a job function:
claim under a row lock (a redelivered task for a run in progress elsewhere, or finished, does
nothing), a heartbeat thread for the whole job (so a long silent phase such as loading a model
is never taken for a dead worker), progress and cancel checks through ``RunReporter``, the
traceback in the log on failure.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelhub.heartbeat import Heartbeat
from labelhub.progress import Progress
from labelhub.queue import enqueue
from runs.jobs import job_function
from runs.models import Run

log = logging.getLogger(__name__)
Status = Run.Status
LOG_TAIL_CHARS = 8000
EXECUTE_TASK = "runs.execute"

TRANSITIONS: dict[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
}


class RunCancelled(Exception):
    """Raised inside a job when an admin asked to cancel its run."""


class NameTaken(ValueError):
    """Another queued or running run will produce an output of that name."""


class IllegalTransition(Exception):
    """A status change that the lifecycle does not allow (e.g. failed -> succeeded)."""


def _move(run: Run, to: str, **fields) -> None:
    """Change a locked run's status (and ``fields``) if the lifecycle allows it, and save."""
    if to not in TRANSITIONS[run.status]:
        raise IllegalTransition(f"run {run.pk} cannot go from {run.status} to {to}")
    now = timezone.now()
    run.status = to
    if to == Status.RUNNING:
        run.started_at = run.heartbeat_at = now
    elif to == Status.QUEUED:
        run.finished_at = None
        run.cancel_requested = False
    else:
        run.finished_at = now
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()


def _locked(run_id: int) -> Run:
    return Run.objects.select_for_update().get(pk=run_id)


def _append_log(run: Run, message: str) -> str:
    stamp = timezone.now().strftime("%H:%M:%S")
    return (run.log_tail + f"[{stamp}] {message}\n")[-LOG_TAIL_CHARS:]


# --- creating and launching ---------------------------------------------------------------------


MAX_GPUS = 64


def parse_gpus(value) -> int:
    """GPUs a training run asks for (one host): 1 (default, for None or "") .. MAX_GPUS, as a
    whole number; ValueError saying so if not. Each app's launch turns it into its own error."""
    if value in (None, ""):
        return 1
    if isinstance(value, bool):
        raise ValueError(f"gpus must be a whole number, got {value!r}")
    try:
        gpus = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"gpus must be a whole number, got {value!r}") from None
    if not 1 <= gpus <= MAX_GPUS or str(value).strip() not in (str(gpus), f"{gpus}.0"):
        raise ValueError(f"gpus must be a whole number in 1..{MAX_GPUS}, got {value!r}")
    return gpus


def queue_for(params: dict) -> str:
    """The queue of a run: ``gpu`` (one GPU per worker), or ``gpu-xN`` for a run that asks for
    ``gpus: N`` (workers owning N GPUs listen there and launch N training processes)."""
    gpus = int(params.get("gpus") or 1)
    return "gpu" if gpus == 1 else f"gpu-x{gpus}"


# Runs whose work is done by child runs (a generation or scoring run's chunks, a round's steps):
# their task lasts as long as all of those together (days at paper scale on few GPUs), far past
# the soft time limit that bounds one job. Their own message carries a longer limit; the chunks
# they wait for keep the ordinary one (each is retried, bounded, and a silent one is failed).
PARENT_KINDS = frozenset({Run.Kind.GENERATION, Run.Kind.SCORING, Run.Kind.ROUND})


# Training runs are one job each, but one that can run for days at paper scale.
TRAINING_KINDS = frozenset({Run.Kind.REWARD_TRAINING, Run.Kind.GAPO, Run.Kind.DPO, Run.Kind.SFT})


def soft_time_limit_for(kind: str) -> int | None:
    """The soft time limit of a run's task: ``LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT`` for a parent
    run, ``LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT`` for a training run, None (the configured
    ``CELERY_TASK_SOFT_TIME_LIMIT``: chunks, pairs) for any other."""
    if kind in PARENT_KINDS:
        return settings.LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT
    if kind in TRAINING_KINDS:
        return settings.LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT
    return None


def create_run(
    *,
    kind: str,
    params: dict,
    created_by=None,
    resumed_from: Run | None = None,
    parent: Run | None = None,
    output_name: str = "",
) -> Run:
    """A queued run row (not yet sent to a worker: see ``launch``); ``parent`` makes it one step
    of a chain (a "round" run) that executes it in its own process. ``output_name`` reserves the
    name its output will take while it is queued or running (NameTaken if another run has it)."""
    if kind not in Run.Kind.values:
        raise ValueError(f"unknown run kind {kind!r}; expected one of {', '.join(Run.Kind.values)}")
    try:
        with transaction.atomic():
            return Run.objects.create(
                kind=kind,
                params=params,
                created_by=created_by,
                resumed_from=resumed_from,
                parent=parent,
                output_name=output_name,
            )
    except IntegrityError:
        holder = Run.objects.filter(
            output_name=output_name, status__in=[Status.QUEUED, Status.RUNNING]
        ).first()
        raise NameTaken(
            f"{output_name.partition(':')[2] or output_name!r} is already the output name of "
            f"{holder or 'another run'}; choose another name"
        ) from None


def adopt(run_id: int, *, parent_id: int) -> None:
    """Make a queued run (created by its owner's launch service, not sent) a step of ``parent_id``."""
    updated = Run.objects.filter(pk=run_id, status=Status.QUEUED).update(parent_id=parent_id)
    if not updated:
        raise IllegalTransition(f"run {run_id} is not queued; only a queued run can be adopted")


def launch(
    *,
    kind: str,
    params: dict,
    created_by=None,
    resumed_from: Run | None = None,
    send: bool = True,
    output_name: str = "",
) -> Run:
    """Create a queued run and send it to the ``gpu`` queue once the transaction commits."""
    with transaction.atomic():
        run = create_run(
            kind=kind,
            params=params,
            created_by=created_by,
            resumed_from=resumed_from,
            output_name=output_name,
        )
        if send:
            enqueue(
                EXECUTE_TASK,
                run_id=run.pk,
                queue=queue_for(params),
                soft_time_limit=soft_time_limit_for(kind),
            )
    return run


def requeue(run_id: int, *, send: bool = True) -> Run:
    """Send a failed or cancelled run again, as the same row (its params unchanged); with
    ``send=False`` it is only queued again, for a command to execute in its own process."""
    with transaction.atomic():
        run = _locked(run_id)
        _move(run, Status.QUEUED, error="", log_tail=_append_log(run, "requeued"))
        if send:
            enqueue(
                EXECUTE_TASK,
                run_id=run.pk,
                queue=queue_for(run.params),
                soft_time_limit=soft_time_limit_for(run.kind),
            )
    return run


# --- running ------------------------------------------------------------------------------------


def this_worker() -> str:
    """The name a run records for a process that executes it outside a Celery task (a command)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_run(run_id: int, *, worker: str = "") -> Run | None:
    """Move a queued run to RUNNING and return it; None when this delivery must not run it.
    ``worker`` (the Celery node name, or ``this_worker()``) is recorded with the attempt count.

    A run found RUNNING means the worker that held it died and late ack redelivered its message:
    it is marked failed (resumable from its last checkpoint) rather than run twice.
    """
    with transaction.atomic():
        run = _locked(run_id)
        if run.status == Status.RUNNING:
            # The broker redelivers unacked messages after its visibility timeout (minutes), also
            # while the first worker still runs the job: a fresh heartbeat means in progress.
            stale_before = timezone.now() - timedelta(seconds=settings.LABELHUB_RUN_STALE_SECONDS)
            if run.heartbeat_at and run.heartbeat_at >= stale_before:
                return None
            _fail(run, "worker lost mid-run (redelivered task); resume from the last checkpoint")
            return None
        if run.status != Status.QUEUED:
            return None
        if run.cancel_requested:
            _move(run, Status.CANCELLED)
            return None
        _move(run, Status.RUNNING, worker=worker or this_worker(), attempts=run.attempts + 1)
        return run


def execute_run(run_id: int, *, on_progress: Progress | None = None, worker: str = "") -> None:
    """Run a queued run's job function to its end and record how it ended.

    ``on_progress`` also receives every progress call (a command's terminal bar); ``worker``
    names who runs it (see ``claim_run``)."""
    run = claim_run(run_id, worker=worker)
    if run is None:
        return
    heartbeat = Heartbeat(
        lambda: Run.objects.filter(pk=run_id, status=Status.RUNNING).update(
            heartbeat_at=timezone.now()
        ),
        interval=settings.LABELHUB_RUN_HEARTBEAT_SECONDS,
        name=f"run-{run_id}-heartbeat",
    )
    heartbeat.start()
    try:
        artifacts = job_function(run.kind)(run, RunReporter(run_id, also=on_progress))
    except RunCancelled:
        _end(run_id, Status.CANCELLED)
    except Exception as error:  # whatever broke, the run must end failed, with the traceback
        log.exception("run %s (%s) failed", run_id, run.kind)
        fail_run(run_id, error=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=8)}")
    else:
        finish_run(run_id, artifacts=artifacts)
    finally:
        heartbeat.stop()


class RunReporter:
    """The progress callback (``labelhub.progress.Progress``) a job hands to the ML core.

    ``reporter(step, total, metrics, message)`` writes at most every ``min_interval`` seconds
    (always when metrics or a message come), appends metrics to the run's series, and raises
    RunCancelled once an admin asked to cancel.
    """

    def __init__(self, run_id: int, *, min_interval: float = 1.0, also: Progress | None = None):
        self.run_id = run_id
        self.also = also
        self.min_interval = min_interval
        self._last_write = 0.0

    def __call__(
        self, step: int, total: int, metrics: dict | None = None, message: str = ""
    ) -> None:
        if self.also is not None:
            self.also(step, total, metrics, message)
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
            run = _locked(self.run_id)
            run.step, run.total_steps, run.heartbeat_at = step, total, timezone.now()
            fields = ["step", "total_steps", "heartbeat_at"]
            if metrics:
                run.metrics = [*run.metrics, {"step": step, **metrics}]
                fields.append("metrics")
            if message:
                run.log_tail = _append_log(run, message)
                fields.append("log_tail")
            run.save(update_fields=fields)
            cancel = run.cancel_requested
        if cancel:
            raise RunCancelled(f"run {self.run_id} was cancelled")


def save_checkpoint_path(run_id: int, path: str) -> None:
    Run.objects.filter(pk=run_id).update(checkpoint_path=path, heartbeat_at=timezone.now())


def record_artifacts(run_id: int, **artifacts) -> None:
    """Merge values into a run's artifacts while it runs (e.g. where its output goes)."""
    with transaction.atomic():
        run = _locked(run_id)
        run.artifacts = {**run.artifacts, **artifacts}
        run.save(update_fields=["artifacts"])


# --- ending -------------------------------------------------------------------------------------


def finish_run(run_id: int, *, artifacts: dict | None = None) -> None:
    with transaction.atomic():
        run = _locked(run_id)
        _move(run, Status.SUCCEEDED, artifacts={**run.artifacts, **(artifacts or {})})


def fail_run(run_id: int, *, error: str) -> None:
    with transaction.atomic():
        _fail(_locked(run_id), error)


def _fail(run: Run, error: str) -> None:
    _move(run, Status.FAILED, error=error, log_tail=_append_log(run, f"FAILED: {error}"))


def _end(run_id: int, status: str) -> None:
    with transaction.atomic():
        _move(_locked(run_id), status)


def request_cancel(run_id: int) -> Run:
    """Ask a run to stop: a queued run is cancelled at once, a running one at its next report.
    Its queued and running child runs (chunks, a round's steps) are asked too, so they stop even
    while the parent's own worker is gone."""
    with transaction.atomic():
        run = _locked(run_id)
        run.cancel_requested = True
        if run.status == Status.QUEUED:
            _move(run, Status.CANCELLED)
        elif run.status == Status.RUNNING:
            run.save(update_fields=["cancel_requested"])
    # Children are locked one by one after the parent (parents before children, pk order).
    for child_id in (
        Run.objects.filter(parent_id=run_id, status__in=[Status.QUEUED, Status.RUNNING])
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        request_cancel(child_id)
    run.refresh_from_db()
    return run


def fail_stale_runs(*, now=None, parent_id: int | None = None) -> int:
    """Mark RUNNING runs whose worker stopped sending heartbeats as failed (worker killed); with
    ``parent_id`` only that run's children (a fan-out parent watching its chunks)."""
    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.LABELHUB_RUN_STALE_SECONDS)
    count = 0
    stale = Run.objects.filter(status=Status.RUNNING, heartbeat_at__lt=now - stale_after)
    if parent_id is not None:
        stale = stale.filter(parent_id=parent_id)
    for run_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            run = _locked(run_id)
            if run.status == Status.RUNNING and run.heartbeat_at < now - stale_after:
                _fail(run, "no heartbeat: the worker was lost; resume from the last checkpoint")
                count += 1
    return count


def eta_seconds(run: Run) -> float | None:
    """Seconds left at the run's average pace so far; None before the first step."""
    if run.status != Status.RUNNING or not run.started_at or not run.step or not run.total_steps:
        return None
    elapsed = (timezone.now() - run.started_at).total_seconds()
    return elapsed / run.step * max(run.total_steps - run.step, 0)


__all__ = [
    "IllegalTransition",
    "RunCancelled",
    "adopt",
    "RunReporter",
    "claim_run",
    "create_run",
    "eta_seconds",
    "execute_run",
    "fail_run",
    "fail_stale_runs",
    "finish_run",
    "launch",
    "record_artifacts",
    "request_cancel",
    "requeue",
    "save_checkpoint_path",
    "soft_time_limit_for",
    "this_worker",
    "queue_for",
]
