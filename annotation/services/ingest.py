"""Ingest: manifest rows -> validated import rows -> (Celery, default queue) probed, transcoded clips.

Two ways in:
- ``import_rows`` / ``import_manifest_file``: a person's manifest. Every field's type and range is
  checked up front and every file must lie under the import roots; a bad value is that row's
  error in the batch report, never an error for the whole manifest.
- ``import_generated_clips``: the platform's own generated candidates (trusted paths, an existing
  Condition); still probed, transcoded and postered like any clip.

Each queued row becomes an ``annotation.ingest_row`` task. The task claims the row (a duplicate
delivery of a row in progress or done is a no-op), heartbeats while it works, copies the source
into a private folder and validates and hashes *that copy*, writes every storage object atomically
(``labelhub.storage``) after recording its name on the row, then creates Condition + Clip and
marks the row ok in one transaction. Any exception ends the row as an error and removes what it
wrote; ``sweep_stuck_imports`` (beat) requeues or fails rows whose worker died.

Three modules, each read alone: ``ingest_validation`` (what a manifest and a row must be),
``ingest_task`` (the task body) and ``ingest_recovery`` (ending rows as errors, the sweeper,
garbage collection). This one holds the two ways in and names everything callers use.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.models import ImportBatch, ImportRow, Round
from annotation.services.ingest_recovery import (
    INGEST_TASK,
    clean_unreferenced,
    delete_if_unreferenced,
    referenced_names,
    sweep_stuck_imports,
)
from annotation.services.ingest_task import ingest_import_row
from annotation.services.ingest_validation import (
    GENERATED_FOLDER,
    KNOWN_FIELDS,
    MAX_PATH_CHARS,
    ManifestError,
    RowError,
    allowed_roots,
    clean_text,
    image_limits,
    parse_manifest,
    read_manifest,
    validate_generated_row,
    validate_row,
    video_limits,
)
from labelhub.queue import enqueue

__all__ = [
    "GENERATED_FOLDER",
    "INGEST_TASK",
    "KNOWN_FIELDS",
    "ManifestError",
    "RowError",
    "allowed_roots",
    "clean_unreferenced",
    "delete_if_unreferenced",
    "image_limits",
    "import_generated_clips",
    "import_manifest_file",
    "import_rows",
    "ingest_import_row",
    "parse_manifest",
    "read_manifest",
    "referenced_names",
    "sweep_stuck_imports",
    "validate_row",
    "video_limits",
]

log = logging.getLogger(__name__)


def _report_row(batch: ImportBatch, line: int, row, validate) -> ImportRow:
    video = row.get("video") if isinstance(row, dict) else None
    video_path = clean_text(video if isinstance(video, str) else "", MAX_PATH_CHARS)
    try:
        payload = validate(row, line)
    except RowError as exc:
        return ImportRow(
            batch=batch,
            line=line,
            video_path=video_path,
            status=ImportRow.Status.ERROR,
            message=clean_text(exc),
        )
    except Exception as exc:  # a row must never break the manifest: it is that row's error
        log.exception("validating line %s of import %s failed", line, batch.pk)
        return ImportRow(
            batch=batch,
            line=line,
            video_path=video_path,
            status=ImportRow.Status.ERROR,
            message=clean_text(
                f"this row could not be validated: {type(exc).__name__}: {exc}", 500
            ),
        )
    return ImportRow(
        batch=batch,
        line=line,
        video_path=video_path,
        status=ImportRow.Status.QUEUED,
        payload=payload,
        enqueued_at=timezone.now(),
    )


def _create_batch(*, manifest_name: str, created_by, rows: list, validate) -> ImportBatch:
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            created_by=created_by, manifest_name=clean_text(manifest_name, 300)
        )
        report = [_report_row(batch, line, row, validate) for line, row in enumerate(rows, 1)]
        ImportRow.objects.bulk_create(report)
        queued = [r.pk for r in report if r.status == ImportRow.Status.QUEUED]
        if not queued:
            batch.status = ImportBatch.Status.DONE
            batch.finished_at = timezone.now()
            batch.save(update_fields=["status", "finished_at"])
        for row_id in queued:
            enqueue(INGEST_TASK, row_id=row_id)
    return batch


def import_rows(
    *,
    rows: list,
    manifest_name: str,
    created_by=None,
    base_dir: Path | None = None,
    round_id: int | None = None,
) -> ImportBatch:
    """Validate manifest rows, record the report, and enqueue one ingest task per good row."""
    default_round = None
    if round_id is not None:
        default_round = Round.objects.filter(pk=round_id).first()
        if default_round is None:
            raise ManifestError(f"round {round_id} does not exist")
    if not isinstance(rows, list):
        raise ManifestError("the manifest must be a list of rows")
    rounds: dict[str, Round | None] = {}
    seen: dict[tuple[int, str], int] = {}

    def validate(row, line: int) -> dict:
        if not isinstance(row, dict):
            raise RowError("not an object with fields")
        return validate_row(
            row,
            base_dir=base_dir,
            default_round=default_round,
            rounds=rounds,
            seen=seen,
            line=line,
        )

    return _create_batch(
        manifest_name=manifest_name, created_by=created_by, rows=rows, validate=validate
    )


def import_manifest_file(
    *, path: Path, created_by=None, round_id: int | None = None
) -> ImportBatch:
    """Read a manifest from disk; relative video paths are relative to the manifest's folder."""
    rows = read_manifest(path.read_bytes(), name=path.name)
    return import_rows(
        rows=rows,
        manifest_name=path.name,
        created_by=created_by,
        base_dir=path.resolve().parent,
        round_id=round_id,
    )


def import_generated_clips(
    *, round_id: int, rows: list[dict], created_by=None, manifest_name: str
) -> ImportBatch:
    """Ingest the platform's own generated candidates into ``round_id`` (a trusted entry point).

    Each row is ``{"video": the storage name under generated/ our generation job stored,
    "condition_id": an existing Condition's pk, "seed": int, "source": str}``. Names skip the
    import-root check (no person named them) but every video is still probed and postered, and
    transcoded unless it is already browser-ready (``media.browser_ready``: kept as generated);
    the clip is linked to the existing Condition, whose images are not read again.
    The video is read through storage, so the generating GPU host and the ingesting worker share
    only the bucket (or media root).
    """
    round_ = Round.objects.filter(pk=round_id).first()
    if round_ is None:
        raise ManifestError(f"round {round_id} does not exist")

    def validate(row, line: int) -> dict:
        return validate_generated_row(row, round_id=round_.pk)

    return _create_batch(
        manifest_name=manifest_name, created_by=created_by, rows=rows, validate=validate
    )
