"""Celery tasks of the human side (``default`` queue). Ids in; each task only calls a service."""

from django.conf import settings

from annotation.services import dataset_folders, exports, ingest
from labelhub.celery import app


@app.task(
    name="annotation.ingest_row",
    acks_late=True,
    soft_time_limit=settings.LABELHUB_INGEST_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.LABELHUB_INGEST_TASK_TIME_LIMIT,
)
def ingest_row(row_id: int) -> None:
    """Ingest one import row; a duplicate delivery of a row in progress or done does nothing."""
    ingest.ingest_import_row(row_id)


@app.task(name="annotation.sweep_stuck_imports", acks_late=True, soft_time_limit=120)
def sweep_stuck_imports() -> dict:
    """Beat: requeue or fail import rows whose worker died; resend messages a broker lost."""
    return ingest.sweep_stuck_imports()


# --- Export snapshots ---------------------------------------------------------------------------


@app.task(name="annotation.export_snapshot", acks_late=True)
def export_snapshot(snapshot_id: int) -> None:
    """Build an export snapshot; a delivery for one that is ready or being built does nothing."""
    exports.build_snapshot(snapshot_id=snapshot_id)


@app.task(name="annotation.sweep_stuck_snapshots")
def sweep_stuck_snapshots() -> list[int]:
    """Beat: send snapshots whose builder died back to the queue."""
    return exports.sweep_stuck_snapshots()


@app.task(name="annotation.build_dataset_folder", acks_late=True)
def build_dataset_folder(folder_id: int) -> None:
    """Build a snapshot's dataset folder; a delivery for one ready or being built does nothing."""
    dataset_folders.build_dataset_folder(folder_id=folder_id)


@app.task(name="annotation.sweep_stuck_dataset_folders")
def sweep_stuck_dataset_folders() -> list[int]:
    """Beat: send dataset folders whose builder died back to the queue (they resume)."""
    return dataset_folders.sweep_stuck_dataset_folders()
