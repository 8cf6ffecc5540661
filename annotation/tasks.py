"""Celery tasks of the human side (``default`` queue). Ids in; each task only calls a service."""

from annotation.services import exports
from labelhub.celery import app


@app.task(name="annotation.ingest_row", acks_late=True)
def ingest_row(row_id: int) -> None:
    from annotation.services.ingest import ingest_import_row

    ingest_import_row(row_id)


# --- Export snapshots ---------------------------------------------------------------------------


@app.task(name="annotation.export_snapshot", acks_late=True)
def export_snapshot(snapshot_id: int) -> None:
    """Build an export snapshot; a delivery for one that is ready or being built does nothing."""
    exports.build_snapshot(snapshot_id=snapshot_id)


@app.task(name="annotation.sweep_stuck_snapshots")
def sweep_stuck_snapshots() -> list[int]:
    """Beat: send snapshots whose builder died back to the queue."""
    return exports.sweep_stuck_snapshots()
