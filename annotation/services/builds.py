"""The claim, heartbeat, sweep and end of a row that one worker at a time builds: export
snapshots and dataset folders (status pending -> running -> ready, or failed; ``heartbeat_at``).

A delivery claims the row under a row lock when it is pending, failed, or running with a silent
heartbeat (its builder died); otherwise it does nothing, so a duplicate delivery never builds
over a live worker. While it builds, a thread moves ``heartbeat_at`` every
LABELHUB_EXPORT_HEARTBEAT_SECONDS; beat's sweep sends a row silent for
LABELHUB_EXPORT_STALE_SECONDS back to the queue, where the next claim takes it over. Import rows
keep their own claim (attempt counts and a claim token per row, ``ingest_task``) and share only
``labelhub.heartbeat``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from labelhub.heartbeat import Heartbeat, silent, stale_before
from labelhub.queue import enqueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowBuild:
    """How one kind of row is built: its model, the task that builds one and that task's keyword
    for the row id (``enqueue(task, **{id_argument: pk})``), and a label for logs."""

    model: type[models.Model]
    task: str
    id_argument: str
    label: str

    def abandoned(self, row) -> bool:
        """Running, but its builder stopped beating."""
        return row.status == self.model.Status.RUNNING and silent(
            row.heartbeat_at, settings.LABELHUB_EXPORT_STALE_SECONDS
        )

    def send(self, pk: int) -> None:
        enqueue(self.task, **{self.id_argument: pk})

    def claim(self, pk: int) -> bool:
        """Take the row for this attempt: pending, failed, or running with a dead builder."""
        with transaction.atomic():
            row = self.model.objects.select_for_update().get(pk=pk)
            Status = self.model.Status
            if row.status not in (Status.PENDING, Status.FAILED) and not self.abandoned(row):
                return False  # ready (built once), or a live worker builds it
            row.status, row.error, row.heartbeat_at = Status.RUNNING, "", timezone.now()
            row.save(update_fields=["status", "error", "heartbeat_at"])
            return True

    def heartbeat(self, pk: int) -> Heartbeat:
        """Beats for the whole build, also through one long query or a lock wait: a live builder
        is never taken for a dead one and built over by a second worker."""
        return Heartbeat.on_rows(
            self.model.objects.filter(pk=pk, status=self.model.Status.RUNNING),
            interval=settings.LABELHUB_EXPORT_HEARTBEAT_SECONDS,
            name=f"{self.label.replace(' ', '-')}-{pk}-heartbeat",
        )

    def fail(self, pk: int, exc: BaseException) -> None:
        self.model.objects.filter(pk=pk).update(
            status=self.model.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )

    def finish(self, pk: int, **fields) -> None:
        """Mark the row ready with ``fields``, unless the sweep gave it to another worker."""
        Status = self.model.Status
        self.model.objects.filter(pk=pk, status=Status.RUNNING).update(
            status=Status.READY, finished_at=timezone.now(), **fields
        )

    def sweep(self) -> list[int]:
        """Send the rows whose builder stopped beating back to the queue; returns their ids."""
        stale = stale_before(settings.LABELHUB_EXPORT_STALE_SECONDS)
        stuck = list(
            self.model.objects.filter(
                status=self.model.Status.RUNNING, heartbeat_at__lt=stale
            ).values_list("pk", flat=True)
        )
        for pk in stuck:
            logger.warning("%s %s: builder lost, building again", self.label, pk)
            self.send(pk)
        return stuck
