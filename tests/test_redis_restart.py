"""Fault injection with real workers (issue 11): the Redis broker is SIGKILLed in the middle of
an import and comes back empty (every queued message lost); no import row is lost.

The broker is a private ``redis-server`` on a free port (never the shared one): the worker, beat
and this process all point at it. The rows whose messages were lost are still ``queued`` in
Postgres, and the import sweeper sends them again after LABELHUB_IMPORT_RESEND_SECONDS (3 s here,
300 s in production; measure those with LABELHUB_CRASH_TEST_PRODUCTION_TIMINGS=1 ... -s).
"""

import time

import pytest

from annotation.models import Clip, ImportBatch, ImportRow
from annotation.services.ingest import import_manifest_file
from tests.factories import distinct_videos_manifest, make_round
from tests.faults import PrivateRedis
from tests.workers import beat_running, celery_worker, recovery_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLIPS = 10
RECOVERY_ENV = recovery_env("IMPORT", resend=3)
LIMIT = 60 if RECOVERY_ENV else 900


@pytest.fixture
def broker(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_redis_restart_mid_import_loses_no_row(isolated_media, tmp_path, settings, broker):
    for name, value in RECOVERY_ENV.items():  # this process enqueues with the same settings
        if name.startswith("LABELHUB_IMPORT"):
            setattr(settings, name, float(value))
    make_round("r1")
    manifest = distinct_videos_manifest(tmp_path, CLIPS)
    log_path = tmp_path / "worker.log"
    with beat_running(tmp_path, extra_env=RECOVERY_ENV, broker=broker.url):
        with celery_worker(
            queues="default",
            media_root=isolated_media,
            log_path=log_path,
            extra_env=RECOVERY_ENV,
            broker=broker.url,
        ):
            batch = import_manifest_file(path=manifest)
            rows = ImportRow.objects.filter(batch=batch)
            wait_for(
                lambda: rows.filter(status="ok").count() >= 2 and broker.queued() >= 3,
                log_path=log_path,
                timeout=60,
            )
            broker.kill()  # the Redis host dies, and with it every queued message
            killed_at = time.monotonic()
            waiting_at_kill = rows.filter(status="queued").count()
            broker.start()  # back, empty
            assert broker.queued() == 0
            finished_at = wait_for(
                lambda: ImportBatch.objects.get(pk=batch.pk).status == ImportBatch.Status.DONE,
                log_path=log_path,
                timeout=LIMIT,
            )

    print(
        f"\nRedis killed with {waiting_at_kill}/{CLIPS} rows queued; "
        f"batch finished {finished_at - killed_at:.1f}s after the kill"
    )
    assert waiting_at_kill >= 2  # messages were really lost, not drained before the kill
    statuses = list(rows.values_list("status", "message"))
    assert len(statuses) == CLIPS and all(status == "ok" for status, _ in statuses), statuses
    assert Clip.objects.filter(round__name="r1", status=Clip.Status.READY).count() == CLIPS
    assert ImportBatch.objects.get(pk=batch.pk).finished_at is not None
