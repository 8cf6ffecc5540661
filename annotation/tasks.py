"""Celery tasks of the human side (``default`` queue). Ids in; each task only calls a service."""

from labelhub.celery import app


@app.task(name="annotation.ingest_row", acks_late=True)
def ingest_row(row_id: int) -> None:
    from annotation.services.ingest import ingest_import_row

    ingest_import_row(row_id)
