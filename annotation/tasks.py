"""Celery tasks of the human side (``default`` queue). Ids in; each task only calls a service."""

from labelhub.celery import app


@app.task(name="annotation.ingest_row", acks_late=True)
def ingest_row(row_id: int) -> None:
    from annotation.services.ingest import ingest_import_row

    ingest_import_row(row_id)


# --- Leads' tools (issue 5) -------------------------------------------------------------------


@app.task(name="annotation.export_snapshot", acks_late=True)
def export_snapshot(snapshot_id: int) -> None:
    """Build a pending export snapshot; a redelivered task finds it ready and does nothing."""
    from annotation.services.exports import build_snapshot

    build_snapshot(snapshot_id=snapshot_id)
