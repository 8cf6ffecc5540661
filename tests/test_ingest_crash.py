"""Fault injection with real workers (issue 11): SIGKILL the default worker in the middle of an
import, start a new one, and every row still ends ok or error, the batch finishes, storage holds
no unreferenced object and every stored clip decodes completely.

The worker and beat run with short recovery settings (heartbeat 1 s, stale after 4 s, sweep every
2 s, broker visibility 8 s) so the test is quick; production defaults are 10 s / 60 s / 30 s /
600 s, i.e. recovery in one to two minutes.
"""

from datetime import timedelta
from pathlib import Path

import pytest

from annotation.models import Clip, ImportBatch, ImportRow
from annotation.services.ingest import clean_unreferenced, import_manifest_file
from labelhub import storage
from tests.factories import count_decoded_frames, distinct_videos_manifest, make_round
from tests.workers import beat_running, celery_worker, recovery_env, sigkill, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RECOVERY_ENV = recovery_env("IMPORT", sweep=2, resend=30)
LIMIT = 120 if RECOVERY_ENV else 600


def test_worker_sigkilled_mid_import_leaves_nothing_stuck_or_orphaned(
    isolated_media, tmp_path, settings
):
    for name, value in RECOVERY_ENV.items():  # the test process reads the same settings
        if name.startswith("LABELHUB_IMPORT"):
            setattr(settings, name, float(value))
    make_round("r1")
    manifest = distinct_videos_manifest(tmp_path, 20)
    log_path = tmp_path / "worker.log"
    with beat_running(tmp_path, extra_env=RECOVERY_ENV):
        with celery_worker(
            queues="default", media_root=isolated_media, log_path=log_path, extra_env=RECOVERY_ENV
        ) as worker:
            batch = import_manifest_file(path=manifest)
            rows = ImportRow.objects.filter(batch=batch)
            wait_for(
                lambda: (
                    rows.filter(status="ok").count() >= 6
                    and rows.filter(status="processing").exists()
                ),
                log_path=log_path,
                timeout=120,
            )
            in_flight = list(rows.filter(status="processing").values_list("pk", flat=True))
            killed_at = sigkill(worker)  # the host dies mid-row
        done_at_kill = rows.filter(status__in=["ok", "error"]).count()
        assert done_at_kill < 20

        with celery_worker(
            queues="default",
            media_root=isolated_media,
            log_path=log_path,
            extra_env=RECOVERY_ENV,
            flush_broker=False,  # a restarted worker, not a fresh broker
        ):
            # Detected: the in-flight row is requeued by the sweeper (or re-claimed after the
            # broker redelivered its message); recovered: it has ended.
            detected_at = wait_for(
                lambda: not rows.filter(pk__in=in_flight, status="processing", attempts=1).exists(),
                log_path=log_path,
                timeout=LIMIT,
            )
            stuck_recovered_at = wait_for(
                lambda: (
                    not rows.filter(pk__in=in_flight, status__in=["processing", "queued"]).exists()
                ),
                log_path=log_path,
                timeout=LIMIT,
            )
            finished_at = wait_for(
                lambda: ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE,
                log_path=log_path,
                timeout=LIMIT,
            )

    print(
        f"\nkilled with {done_at_kill}/20 rows done and row(s) {in_flight} in flight; "
        f"abandoned row detected {detected_at - killed_at:.1f}s, "
        f"ended {stuck_recovered_at - killed_at:.1f}s, "
        f"batch finished {finished_at - killed_at:.1f}s after the kill"
    )
    statuses = list(rows.values_list("status", "attempts", "message"))
    assert all(status == "ok" for status, _, _ in statuses), statuses
    assert any(attempts > 1 for _, attempts, _ in statuses) or not in_flight
    assert ImportBatch.objects.get(pk=batch.pk).finished_at is not None
    clips = list(Clip.objects.select_related("condition"))
    assert len(clips) == 20
    referenced = set()
    for clip in clips:
        referenced |= {clip.original.name, clip.video.name, clip.poster.name}
        referenced.add(clip.condition.image.name)
        # Every stored clip decodes completely: the frame count matches what ingest recorded.
        path = Path(isolated_media) / clip.video.name
        assert count_decoded_frames(path) == clip.frames, clip.pk
        assert count_decoded_frames(Path(isolated_media) / clip.original.name) == clip.frames
    assert {o.name for o in storage.list_objects()} == referenced
    # A write cut off by the kill can only have left a temp file, which storage_gc removes.
    leftovers = clean_unreferenced(grace=timedelta(0), dry_run=False)
    assert all(name.startswith(f"{storage.TEMP_FOLDER}/") for name in leftovers), leftovers
    assert {o.name for o in storage.list_objects((storage.TEMP_FOLDER,))} == set()
