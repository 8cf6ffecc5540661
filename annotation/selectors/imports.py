"""Reads of import batches: the per-row report shown on the page, the API and the command."""

from annotation.models import ImportBatch, ImportRow


def batch_report(batch: ImportBatch) -> dict:
    rows = list(batch.rows.all())
    counts = {
        status: sum(1 for r in rows if r.status == status) for status in ImportRow.Status.values
    }
    return {
        "id": batch.pk,
        "manifest": batch.manifest_name,
        "status": batch.status,
        "counts": counts,
        "rows": [
            {
                "line": r.line,
                "video": r.video_path,
                "status": r.status,
                "message": r.message,
                "clip_id": r.clip_id,
            }
            for r in rows
        ],
    }
