"""Fan-out: a run (generation, scoring) split into chunk runs that any idle ``gpu`` worker takes.

Each chunk is an ordinary run row (kind ``*_chunk``, ``parent`` = the run), so it has the one
lifecycle of ``runs.services``: claimed under a lock, heartbeating, failed when its worker goes
silent, cancelled with its parent, requeued alone. ``run_chunks`` is what the parent's job calls:

- it creates the chunk rows (once: a resumed parent finds them and requeues only the failed
  ones) and sends each to the ``gpu`` queue, where every idle worker on every host takes one;
- while chunks are still queued it executes them itself, last first (the queue hands them out
  first first): a gpu worker runs one task at a time, so a parent that only waited would hold a
  GPU idle, and with one worker it would wait for itself. A chunk two processes reach is run
  by the one whose claim wins; the other delivery does nothing;
- it shows one progress bar over every chunk, fails chunks whose worker went silent, retries a
  failed chunk (``max_attempts`` claims in all), and returns once every chunk has ended.

Celery does the scheduling: no queue or placement of our own beyond "run what is still queued".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction

from labelhub.progress import Progress
from labelhub.queue import enqueue
from runs import services
from runs.models import Run

Status = Run.Status
ENDED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ChunkOutcome:
    """How the chunks of a parent ended: all succeeded, or which failed and why."""

    chunks: list[Run]

    @property
    def failed(self) -> list[Run]:
        return [c for c in self.chunks if c.status != Status.SUCCEEDED]

    def summary(self) -> str:
        """One line per failed chunk (its first error line), for the parent's error."""
        return "; ".join(
            f"chunk run {c.pk} ({c.params.get('chunk', '?')}) {c.status} after {c.attempts} "
            f"attempt(s): {(c.error.strip().splitlines() or ['no error recorded'])[-1][:300]}"
            for c in self.failed
        )


def chunked(items: list, size: int) -> list[list]:
    """``items`` in consecutive chunks of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [items[start : start + size] for start in range(0, len(items), size)]


def run_chunks(
    parent: Run,
    report: Progress,
    *,
    kind: str,
    chunks: list[dict],
    max_attempts: int = 3,
    redo: frozenset[int] = frozenset(),
) -> ChunkOutcome:
    """Run ``chunks`` (each a params dict with a ``size``: its number of items, the unit of the
    progress bar) as child runs of ``parent`` on every gpu worker, this process included.

    ``redo`` names chunks (by number, from 1) whose succeeded row must run again as a fresh row
    (its output went missing after it ended: e.g. an import that failed after the chunk handed
    its videos over); the old row stays as the record of what it did."""
    children = _chunk_runs(parent, kind, chunks, redo=redo)
    pks = [c.pk for c in children]
    current = Run.objects.filter(parent_id=parent.pk, pk__in=pks)
    # The attempts this execution of the parent allows each chunk (a resumed parent: as many more).
    allowed = {
        c.pk: c.attempts + max_attempts if c.status != Status.QUEUED else max_attempts
        for c in children
    }
    for child in children:
        if child.status in (Status.FAILED, Status.CANCELLED):
            services.requeue(child.pk)
        elif child.status == Status.QUEUED:
            enqueue(services.EXECUTE_TASK, run_id=child.pk)
    bar = _ParentBar(current, report, total=sum(int(c["size"]) for c in chunks))
    try:
        while True:
            bar.show()  # raises RunCancelled once the parent is cancelled
            services.fail_stale_runs(parent_id=parent.pk)
            for child in current.filter(status=Status.FAILED):
                if child.attempts < allowed.get(child.pk, max_attempts):
                    report(bar.done, bar.total, None, f"chunk run {child.pk} failed; retrying it")
                    services.requeue(child.pk)
            queued = (
                current.filter(status=Status.QUEUED)
                .order_by("-pk")
                .values_list("pk", flat=True)
                .first()
            )
            if queued is not None:
                services.execute_run(queued, worker=parent.worker, on_progress=bar.forward)
                continue
            if not current.exclude(status__in=ENDED):
                break
            time.sleep(POLL_SECONDS)
    except services.RunCancelled:
        services.request_cancel(parent.pk)  # the chunks still queued or running stop too
        raise
    bar.show(final=True)
    return ChunkOutcome(list(current.order_by("pk")))


def _chunk_runs(parent: Run, kind: str, chunks: list[dict], *, redo: frozenset[int]) -> list[Run]:
    """The parent's chunk rows, created on its first execution (numbered by ``chunk``; the newest
    row of a number is the current one), and again for succeeded chunks named in ``redo``."""
    with transaction.atomic():
        existing = {
            c.params.get("chunk"): c
            for c in Run.objects.select_for_update()
            .filter(parent_id=parent.pk, kind=kind)
            .order_by("pk")
        }
        rows = []
        for number, params in enumerate(chunks, 1):
            row = existing.get(number)
            if row is not None and number in redo and row.status == Status.SUCCEEDED:
                row = None
            rows.append(
                row
                or services.create_run(
                    kind=kind,
                    params={**params, "chunk": number, "chunks": len(chunks)},
                    created_by=parent.created_by,
                    parent=parent,
                )
            )
    return rows


class _ParentBar:
    """The parent's one progress bar: the items its chunks have done over all their items."""

    def __init__(self, chunks, report: Progress, *, total: int):
        self.chunks, self.report, self.total = chunks, report, total
        self.done = 0
        self._shown = 0.0

    def show(self, *, final: bool = False) -> None:
        done = 0
        for status, step, size in self.chunks.values_list("status", "step", "params__size"):
            done += int(size or 0) if status == Status.SUCCEEDED else min(step, int(size or 0))
        self.done = done
        self._shown = time.monotonic()
        self.report(done, self.total, None, "all chunks ended" if final else "")

    def forward(
        self, step: int, total: int, metrics: dict | None = None, message: str = ""
    ) -> None:
        """The progress callback of a chunk this process runs: refresh the parent's bar."""
        if time.monotonic() - self._shown >= 1.0:
            self.show()
