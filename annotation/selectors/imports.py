"""Reads of import batches: the per-row report shown on the page, the API and the command."""

from django.conf import settings
from django.utils import timezone

from annotation.models import ImportBatch, ImportRow
from labelhub.heartbeat import silent


def row_state(row: ImportRow, *, now=None) -> str:
    """What a person should read for a row: queued, retrying, in_progress, stalled, ok or error.

    ``retrying``: its worker was lost and it is queued again; ``stalled``: its worker stopped
    heartbeating and the sweeper will requeue it within a minute or so.
    """
    if row.status == ImportRow.Status.QUEUED:
        return "retrying" if row.attempts else "queued"
    if row.status == ImportRow.Status.PROCESSING:
        if silent(row.heartbeat_at, settings.LABELHUB_IMPORT_STALE_SECONDS, now=now):
            return "stalled"
        return "in_progress"
    return row.status


STATES = ("ok", "error", "queued", "retrying", "in_progress", "stalled")


def batch_report(batch: ImportBatch) -> dict:
    """The batch's rows and counts; ``counts`` keeps the row statuses and adds ``states``."""
    rows = list(batch.rows.all())
    now = timezone.now()
    states = [row_state(r, now=now) for r in rows]
    counts = {
        status: sum(1 for r in rows if r.status == status) for status in ImportRow.Status.values
    }
    return {
        "id": batch.pk,
        "manifest": batch.manifest_name,
        "status": batch.status,
        "counts": counts,
        "states": {state: states.count(state) for state in STATES},
        "started": sum(1 for r in rows if r.attempts),
        "retried": sum(
            1
            for r, state in zip(rows, states, strict=True)
            if r.attempts > 1 or state == "retrying"
        ),
        "rows": [
            {
                "line": r.line,
                "video": r.video_path,
                "status": r.status,
                "state": state,
                "state_label": state.replace("_", " "),
                "attempts": r.attempts,
                "message": r.message,
                "clip_id": r.clip_id,
            }
            for r, state in zip(rows, states, strict=True)
        ],
    }
