"""Reads of export snapshots: listings for leads and a streaming reader for training code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from django.core.files.storage import default_storage
from django.db.models import QuerySet

from annotation.models import ExportSnapshot

READ_BATCH_ROWS = 5000


def list_snapshots() -> QuerySet[ExportSnapshot]:
    """Every snapshot, newest first, with its creator (one query)."""
    return ExportSnapshot.objects.select_related("created_by").order_by("-created_at", "-id")


@contextmanager
def open_snapshot_file(snapshot: ExportSnapshot, kind: str) -> Iterator[BinaryIO]:
    """Open one of a ready snapshot's files from storage (local disk or S3)."""
    if snapshot.status != ExportSnapshot.Status.READY:
        raise ValueError(f"snapshot {snapshot.pk} is {snapshot.status}, not ready")
    try:
        name = snapshot.files[kind]["name"]
    except KeyError:
        raise KeyError(f"snapshot {snapshot.pk} has no {kind!r} file") from None
    with default_storage.open(name, "rb") as fh:
        yield fh


def iter_snapshot_rows(snapshot: ExportSnapshot, split: str | None = None) -> Iterator[dict]:
    """Yield the label rows of a ready snapshot (dicts keyed like the export), optionally one split.

    Reads the Parquet file a batch at a time, so memory stays flat however large the snapshot.
    """
    import pyarrow.parquet as pq  # loaded by the first page that needs it, not at start-up

    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    with open_snapshot_file(snapshot, "labels_parquet") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=READ_BATCH_ROWS):
            for row in batch.to_pylist():
                if split is None or row["split"] == split:
                    yield row


def iter_snapshot_judgements(snapshot: ExportSnapshot) -> Iterator[dict]:
    """Yield the A/B/tie judgement rows of a snapshot (one per judge, pair and dimension); none
    for a snapshot exported before judgements were part of snapshots."""
    if "judgements_parquet" not in snapshot.files:
        return
    import pyarrow.parquet as pq  # as in iter_snapshot_rows: not at start-up

    with open_snapshot_file(snapshot, "judgements_parquet") as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=READ_BATCH_ROWS):
            yield from batch.to_pylist()
