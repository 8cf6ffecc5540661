"""Ingest, part three: rows that end badly and files nothing references.

A row ends as an error (``mark_failed``, ``give_up``) with the objects it wrote deleted unless a
clip, a condition or another live row points at them. ``sweep_stuck_imports`` (beat) requeues or
fails rows whose worker died and resends messages Redis lost; ``clean_unreferenced``
(``manage.py storage_gc``) removes what a crash left behind.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import CharacterImage, Clip, Condition, ImportBatch, ImportRow
from annotation.services.ingest_validation import clean_text
from labelhub import heartbeat, storage
from labelhub.queue import enqueue

log = logging.getLogger(__name__)
INGEST_TASK = "annotation.ingest_row"


def stale_before(now=None):
    return heartbeat.stale_before(settings.LABELHUB_IMPORT_STALE_SECONDS, now=now)


def mark_failed(row_id: int, *, claimed_at, message: str) -> None:
    """End a row this worker holds as an error and remove what it wrote."""
    with transaction.atomic():
        row = ImportRow.objects.select_for_update().filter(pk=row_id).first()
        if row is None or row.status != ImportRow.Status.PROCESSING:
            return
        if claimed_at is not None and row.claimed_at != claimed_at:
            return  # another worker holds it now
        _end_as_error(row, message)


def give_up(row: ImportRow) -> None:
    _end_as_error(
        row,
        f"the worker ingesting this row was lost {row.attempts} time(s); giving up "
        "(check the file, the worker's memory and ffmpeg)",
    )


def _end_as_error(row: ImportRow, message: str) -> None:
    """Mark a locked row as an error and delete the objects it wrote that nothing references."""
    written = list(row.written)
    row.status = ImportRow.Status.ERROR
    row.message = clean_text(message)
    row.written = []
    row.save(update_fields=["status", "message", "written"])
    for name in written:
        delete_if_unreferenced(name, except_row_id=row.pk)


def referenced_names() -> set[str]:
    """Every storage name a clip, a condition or an in-flight import row points at."""
    names: set[str] = set()
    for fields in Clip.objects.values_list("original", "video", "poster").iterator():
        names.update(f for f in fields if f)
    for fields in Condition.objects.values_list("image", "character_reference").iterator():
        names.update(f for f in fields if f)
    names.update(CharacterImage.objects.values_list("image", flat=True).iterator())
    in_flight = ImportRow.objects.filter(
        status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING]
    ).values_list("written", flat=True)
    for written in in_flight.iterator():
        names.update(written or [])
    return names


def delete_if_unreferenced(name: str, *, except_row_id: int | None = None) -> None:
    """Remove a file a row wrote, unless a clip, a condition or another live row points at it."""
    referenced = (
        Clip.objects.filter(Q(original=name) | Q(video=name) | Q(poster=name)).exists()
        or Condition.objects.filter(Q(image=name) | Q(character_reference=name)).exists()
        or CharacterImage.objects.filter(image=name).exists()
        or ImportRow.objects.filter(
            status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING],
            written__contains=[name],
        )
        .exclude(pk=except_row_id)
        .exists()
    )
    if not referenced:
        try:
            storage.delete(name)
        except OSError:
            log.warning("could not delete %s; storage_gc will", name)


def finish_batch_if_done(batch_id: int) -> bool:
    """Mark a running batch done once none of its rows is queued or processing."""
    pending = ImportRow.objects.filter(
        batch_id=batch_id, status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING]
    ).exists()
    if pending:
        return False
    return bool(
        ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.RUNNING).update(
            status=ImportBatch.Status.DONE, finished_at=timezone.now()
        )
    )


def sweep_stuck_imports(*, now=None) -> dict[str, int]:
    """Requeue (or, after too many attempts, fail) rows whose worker died; resend lost messages.

    Run by beat every LABELHUB_IMPORT_SWEEP_SECONDS. A processing row whose heartbeat is older
    than LABELHUB_IMPORT_STALE_SECONDS lost its worker; a queued row not picked up within
    LABELHUB_IMPORT_RESEND_SECONDS may have lost its message (a Redis restart), so it is sent
    again. Duplicate deliveries are no-ops, so resending is always safe.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0, "batches_finished": 0}
    stale = Q(heartbeat_at__lt=stale_before(now)) | Q(heartbeat_at__isnull=True)
    with transaction.atomic():
        rows = list(
            ImportRow.objects.select_for_update(skip_locked=True).filter(
                stale, status=ImportRow.Status.PROCESSING
            )
        )
        for row in rows:
            if row.attempts >= settings.LABELHUB_IMPORT_MAX_ATTEMPTS:
                give_up(row)
                counts["failed"] += 1
                continue
            row.status = ImportRow.Status.QUEUED
            row.message = f"worker lost during attempt {row.attempts}; requeued"
            row.enqueued_at = now
            row.save(update_fields=["status", "message", "enqueued_at"])
            enqueue(INGEST_TASK, row_id=row.pk)
            counts["requeued"] += 1
        resend_before = now - timedelta(seconds=settings.LABELHUB_IMPORT_RESEND_SECONDS)
        waiting = list(
            ImportRow.objects.select_for_update(skip_locked=True).filter(
                Q(enqueued_at__lt=resend_before) | Q(enqueued_at__isnull=True),
                status=ImportRow.Status.QUEUED,
            )
        )
        for row in waiting:
            row.enqueued_at = now
            row.save(update_fields=["enqueued_at"])
            enqueue(INGEST_TASK, row_id=row.pk)
            counts["resent"] += 1
    running = ImportBatch.objects.filter(status=ImportBatch.Status.RUNNING)
    for batch_id in running.values_list("pk", flat=True):
        counts["batches_finished"] += finish_batch_if_done(batch_id)
    if any(counts.values()):
        log.info("sweep_stuck_imports: %s", counts)
    return counts


def clean_unreferenced(*, grace: timedelta, dry_run: bool) -> list[str]:
    """Storage objects under the ingest folders that nothing references, older than ``grace``.

    Also leftovers of interrupted local writes (``.tmp/``). Deleted unless ``dry_run``.
    """
    cutoff = timezone.now() - grace
    referenced = referenced_names()
    objects = storage.list_objects((*storage.INGEST_FOLDERS, storage.TEMP_FOLDER))
    orphans = [
        o.name
        for o in objects
        if o.name not in referenced and (o.modified is None or o.modified <= cutoff)
    ]
    if not dry_run:
        for name in orphans:
            storage.delete(name)
    return sorted(orphans)
