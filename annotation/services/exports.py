"""Export snapshots: immutable, hashed label datasets (JSONL, CSV, Parquet and a card).

A snapshot is requested (pending), then built by ``annotation.export_snapshot`` on the default
queue: claimed under a row lock, files written to a scratch directory of its own (emptied at the
start of every attempt, so a killed attempt leaks nothing past the next one), stored, hashed, and
marked ready. While it builds, a thread moves its heartbeat; ``sweep_stuck_snapshots`` (beat)
sends a snapshot whose builder died back to the queue, so none stays "running" forever. The file writers
and the SQL live in ``annotation.export_files``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction

from annotation.export_params import FORMATS, ExportParams
from annotation.models import ExportSnapshot, Round
from annotation.services.builds import RowBuild
from labelhub.files import sha256_file
from labelhub.storage import artifacts_dir

logger = logging.getLogger(__name__)
Status = ExportSnapshot.Status
BUILD = RowBuild(
    ExportSnapshot, task="annotation.export_snapshot", id_argument="snapshot_id", label="export"
)

__all__ = [
    "FORMATS",
    "build_snapshot",
    "content_hash",
    "create_snapshot",
    "request_snapshot",
    "request_snapshot_build",
    "sweep_stuck_snapshots",
]


def request_snapshot(
    *,
    round_ids: list[int] | None,
    test_fraction: float = 0.1,
    seed: int = 0,
    include_ratings: bool = False,
    created_by=None,
) -> ExportSnapshot:
    """Record a pending snapshot (validated parameters) without building it yet."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction!r}")
    if round_ids is None:
        resolved = sorted(Round.objects.values_list("id", flat=True))
    else:
        resolved = sorted(set(int(r) for r in round_ids))
        missing = set(resolved) - set(
            Round.objects.filter(id__in=resolved).values_list("id", flat=True)
        )
        if missing:
            raise ValueError(f"unknown round ids: {sorted(missing)}")
    params = ExportParams(resolved, float(test_fraction), int(seed), bool(include_ratings))
    return ExportSnapshot.objects.create(params=params.as_json(), created_by=created_by)


def create_snapshot(
    *,
    round_ids: list[int] | None,
    test_fraction: float = 0.1,
    seed: int = 0,
    include_ratings: bool = False,
    created_by=None,
    progress: Callable[[str, int], None] | None = None,
) -> ExportSnapshot:
    """Build a snapshot now, in this process (``export_labels`` and tests)."""
    snapshot = request_snapshot(
        round_ids=round_ids,
        test_fraction=test_fraction,
        seed=seed,
        include_ratings=include_ratings,
        created_by=created_by,
    )
    return build_snapshot(snapshot_id=snapshot.pk, progress=progress)


def request_snapshot_build(**kwargs) -> ExportSnapshot:
    """Record a pending snapshot and send ``annotation.export_snapshot`` after commit."""
    snapshot = request_snapshot(**kwargs)
    BUILD.send(snapshot.pk)
    return snapshot


def build_snapshot(
    *, snapshot_id: int, progress: Callable[[str, int], None] | None = None
) -> ExportSnapshot:
    """Write the files of a snapshot, store and hash them, mark it ready. A delivery for a
    snapshot that is ready or being built by a live worker does nothing."""
    if not BUILD.claim(snapshot_id):
        return ExportSnapshot.objects.get(pk=snapshot_id)
    snapshot = ExportSnapshot.objects.get(pk=snapshot_id)
    p = snapshot.params
    params = ExportParams(p["round_ids"], p["test_fraction"], p["seed"], p["include_ratings"])

    scratch = artifacts_dir("export-scratch") / str(snapshot_id)
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed attempt left behind
    scratch.mkdir(parents=True)
    try:
        with BUILD.heartbeat(snapshot_id):
            # The writers load pyarrow and numpy: only a build pays for them, not every page.
            from annotation.export_files import write_export_files

            with _consistent_read():
                written, row_counts = write_export_files(scratch, params, progress=progress)
            files = {kind: _store(snapshot_id, path) for kind, path in written.items()}
    except Exception as exc:
        logger.exception("export snapshot %s failed", snapshot_id)
        BUILD.fail(snapshot_id, exc)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    BUILD.finish(snapshot_id, files=files, row_counts=row_counts, content_hash=content_hash(files))
    snapshot.refresh_from_db()
    return snapshot


def _store(snapshot_id: int, path: Path) -> dict:
    """Save one file under ``exports/<id>/`` (replacing an earlier attempt's) and describe it."""
    name = f"exports/{snapshot_id}/{path.name}"
    if default_storage.exists(name):
        default_storage.delete(name)
    with path.open("rb") as fh:
        stored = default_storage.save(name, File(fh, name=path.name))
    size = path.stat().st_size
    if default_storage.size(stored) != size:
        raise OSError(f"{stored}: stored {default_storage.size(stored)} bytes, wrote {size}")
    return {"name": stored, "bytes": size, "sha256": sha256_file(path)}


def sweep_stuck_snapshots() -> list[int]:
    """Send snapshots whose builder stopped beating back to the queue; returns their ids."""
    return BUILD.sweep()


def content_hash(files: dict[str, dict]) -> str:
    """sha256 over each file's base name and sha256, in name order (storage paths excluded)."""
    digest = hashlib.sha256()
    for entry in sorted(files.values(), key=lambda e: os.path.basename(e["name"])):
        digest.update(f"{os.path.basename(entry['name'])}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


class _consistent_read:
    """All files read one snapshot of the database (REPEATABLE READ when we own the transaction)."""

    def __enter__(self):
        self._owns = not connection.in_atomic_block
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        if self._owns:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return self

    def __exit__(self, *exc):
        return self._atomic.__exit__(*exc)
