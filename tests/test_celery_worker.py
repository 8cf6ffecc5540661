"""Ingest through a real Celery worker process over the real Redis broker (no eager mode)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from annotation.models import ImportRow
from annotation.services.ingest import import_manifest_file
from labelhub.celery import app
from tests.factories import make_round, write_manifest

pytestmark = pytest.mark.django_db(transaction=True)
BROKER = os.environ.get("LABELHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def real_worker(isolated_media, tmp_path):
    saved = {"task_always_eager": app.conf.task_always_eager, "broker_url": app.conf.broker_url}
    app.conf.update(task_always_eager=False, broker_url=BROKER)
    with app.connection_for_write() as conn:  # start from an empty queue
        conn.default_channel.client.flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
        "LABELHUB_DB_NAME": connection.settings_dict["NAME"],
        "LABELHUB_REDIS_URL": BROKER,
        "LABELHUB_CELERY_EAGER": "0",
        "LABELHUB_MEDIA_ROOT": str(isolated_media),
        "LABELHUB_IMPORT_ROOTS": ",".join(str(p) for p in settings.LABELHUB_IMPORT_ROOTS),
    }
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "labelhub", "worker", "-Q", "default", "-P", "solo",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=Path(settings.BASE_DIR), env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield worker
    worker.terminate()
    worker.wait(timeout=30)
    log.close()
    app.conf.update(saved)


def test_ingest_runs_on_a_real_worker(real_worker, tmp_path, video_factory):
    make_round("r1")
    good = video_factory("good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    batch = import_manifest_file(path=write_manifest(tmp_path / "m.jsonl", [
        {"video": str(good), "prompt": "p", "round": "r1"},
        {"video": str(bad), "prompt": "p", "round": "r1"},
    ]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = list(ImportRow.objects.filter(batch=batch).order_by("line").values_list("status", flat=True))
        if all(s in {"ok", "error"} for s in statuses):
            break
        assert real_worker.poll() is None, (tmp_path / "worker.log").read_text()
        time.sleep(0.3)
    assert statuses == ["ok", "error"], (tmp_path / "worker.log").read_text()
    assert "not a readable video" in ImportRow.objects.get(batch=batch, line=2).message
