"""Start a real Celery worker process against the test database and a Redis database of its own."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from labelhub.celery import app

BROKER = os.environ.get("LABELHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reset_broker_pools() -> None:
    """Forget the app's pooled broker connections so the next send uses the broker_url set now.

    Not closed: kombu keeps the producer pool of each broker URL in a registry for reuse.
    """
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def celery_worker(
    *,
    queues: str,
    media_root: Path,
    log_path: Path,
    extra_env: dict | None = None,
    flush_broker: bool = True,
):
    """Yield a running worker (subprocess.Popen); tasks sent meanwhile go through Redis, not eagerly.

    ``flush_broker=False`` keeps the messages already queued (a worker restarted after a crash).
    """
    saved = {"task_always_eager": app.conf.task_always_eager, "broker_url": app.conf.broker_url}
    app.conf.update(task_always_eager=False, broker_url=BROKER)
    _reset_broker_pools()
    if flush_broker:
        with app.connection_for_write() as conn:  # start from an empty broker database
            conn.default_channel.client.flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
        "LABELHUB_DB_NAME": connection.settings_dict["NAME"],
        "LABELHUB_REDIS_URL": BROKER,
        "LABELHUB_CELERY_EAGER": "0",
        "LABELHUB_MEDIA_ROOT": str(media_root),
        "LABELHUB_IMPORT_ROOTS": ",".join(str(p) for p in settings.LABELHUB_IMPORT_ROOTS),
        "LABELHUB_ARTIFACTS_ROOT": str(settings.LABELHUB_ARTIFACTS_ROOT),
        **(extra_env or {}),
    }
    log = open(log_path, "a")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "labelhub",
            "worker",
            "-Q",
            queues,
            "-P",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        log.close()
        app.conf.update(saved)
        _reset_broker_pools()
