"""Celery tasks of the human side (``default`` queue). Ids in; each task only calls a service."""

from django.conf import settings

from labelhub.celery import app


@app.task(
    name="annotation.ingest_row",
    acks_late=True,
    soft_time_limit=settings.LABELHUB_INGEST_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.LABELHUB_INGEST_TASK_TIME_LIMIT,
)
def ingest_row(row_id: int) -> None:
    """Ingest one import row; a duplicate delivery of a row in progress or done does nothing."""
    from annotation.services.ingest import ingest_import_row

    ingest_import_row(row_id)


@app.task(name="annotation.sweep_stuck_imports", acks_late=True, soft_time_limit=120)
def sweep_stuck_imports() -> dict:
    """Beat: requeue or fail import rows whose worker died; resend messages a broker lost."""
    from annotation.services.ingest import sweep_stuck_imports as sweep

    return sweep()


# --- Leads' tools (issue 5) -------------------------------------------------------------------


@app.task(name="annotation.export_snapshot", acks_late=True)
def export_snapshot(snapshot_id: int) -> None:
    """Build a pending export snapshot; a redelivered task finds it ready and does nothing."""
    from annotation.services.exports import build_snapshot

    build_snapshot(snapshot_id=snapshot_id)


@app.task(name="annotation.sweep_stuck_snapshots")
def sweep_stuck_snapshots() -> list[int]:
    """Beat: send snapshots whose builder died back to the queue."""
    from annotation.services.exports import sweep_stuck_snapshots as sweep

    return sweep()
