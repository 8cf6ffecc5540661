"""What management commands share for runs: a tqdm bar on the progress callback, running a run in
this process, and following one that a worker runs."""

from __future__ import annotations

import json
import time

from django.core.management.base import CommandError
from tqdm import tqdm

from runs import services
from runs.models import Run

FINISHED = {Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED}


class ProgressBar:
    """A ``labelhub.progress.Progress`` callback drawing a tqdm bar; messages are printed above it."""

    def __init__(self, description: str):
        self.bar = tqdm(desc=description, unit="step", dynamic_ncols=True)

    def __call__(
        self, step: int, total: int, metrics: dict | None = None, message: str = ""
    ) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(step - self.bar.n)
        if metrics:
            self.bar.set_postfix(
                {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in metrics.items()}
            )
        if message:
            self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def run_here(run: Run, description: str) -> Run:
    """Execute a queued run in this process with a progress bar; CommandError unless it succeeds."""
    bar = ProgressBar(description)
    try:
        services.execute_run(run.pk, on_progress=bar)
    finally:
        bar.close()
    return _succeeded(run.pk)


def follow(run_id: int, stdout) -> Run:
    """Poll a run a worker executes, drawing its progress, until it ends; print how it ended."""
    with tqdm(desc=f"run {run_id}", unit="step", dynamic_ncols=True) as bar:
        while True:
            run = Run.objects.get(pk=run_id)
            bar.total = run.total_steps or None
            bar.n = run.step
            if run.metrics:
                bar.set_postfix(
                    {k: v for k, v in run.metrics[-1].items() if k != "step"}, refresh=False
                )
            bar.refresh()
            if run.status in FINISHED:
                break
            time.sleep(1)
    if run.artifacts:
        stdout.write(json.dumps(run.artifacts, indent=2, default=str))
    return _succeeded(run_id)


def _succeeded(run_id: int) -> Run:
    run = Run.objects.get(pk=run_id)
    if run.status != Run.Status.SUCCEEDED:
        detail = run.error.strip().splitlines()[0] if run.error.strip() else "no error recorded"
        raise CommandError(f"run {run.pk} {run.status}: {detail}")
    return run
