"""Start a real Celery worker process against the test database and a Redis database of its own."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from labelhub.celery import app

BROKER = os.environ.get("LABELHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# LABELHUB_CRASH_TEST_PRODUCTION_TIMINGS=1 pytest tests/test_<x>_crash.py -s measures recovery
# with the production defaults (minutes) instead of the crash tests' short timings.
PRODUCTION_TIMINGS = os.environ.get("LABELHUB_CRASH_TEST_PRODUCTION_TIMINGS") == "1"


def recovery_env(
    kind: str, *, heartbeat: int = 1, stale: int = 4, sweep: int = 1, **seconds: int
) -> dict[str, str]:
    """Short recovery timings for a crash test's workers and beat, so a killed worker is noticed
    in seconds: ``LABELHUB_<KIND>_HEARTBEAT/STALE/SWEEP_SECONDS`` (plus any ``seconds``, e.g.
    ``resend=3`` for ``LABELHUB_<KIND>_RESEND_SECONDS``) and a broker visibility timeout of 8 s.
    Empty (the production defaults) under LABELHUB_CRASH_TEST_PRODUCTION_TIMINGS=1."""
    if PRODUCTION_TIMINGS:
        return {}
    timings = {"heartbeat": heartbeat, "stale": stale, "sweep": sweep, **seconds}
    env = {f"LABELHUB_{kind}_{name.upper()}_SECONDS": str(value) for name, value in timings.items()}
    return {**env, "LABELHUB_BROKER_VISIBILITY_TIMEOUT": "8"}


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
    broker: str = BROKER,
    name: str = "",
    pool: str = "solo",
):
    """Yield a running worker (subprocess.Popen); tasks sent meanwhile go through Redis, not eagerly.

    ``flush_broker=False`` keeps the messages already queued (a worker restarted after a crash);
    ``broker`` points the worker and this process at another Redis (a private one a test restarts);
    ``name`` gives the worker its own node name (``name@host``: two gpu workers side by side);
    ``pool="prefork"`` runs tasks in one child process, as production's gpu workers do
    (``--concurrency 1``), where Celery enforces time limits (the solo pool does not).
    """
    saved = {"task_always_eager": app.conf.task_always_eager, "broker_url": app.conf.broker_url}
    app.conf.update(task_always_eager=False, broker_url=broker)
    _reset_broker_pools()
    if flush_broker:
        with app.connection_for_write() as conn:  # start from an empty broker database
            conn.default_channel.client.flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
        "LABELHUB_DB_NAME": connection.settings_dict["NAME"],
        "LABELHUB_REDIS_URL": broker,
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
            pool,
            *(["--concurrency", "1"] if pool == "prefork" else []),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
            *(["-n", f"{name}@%h"] if name else []),
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


@contextlib.contextmanager
def beat_running(tmp_path: Path, *, extra_env: dict | None = None, broker: str = BROKER):
    """``celery beat`` (the sweepers) against the test database while the block runs."""
    beat = start_beat(tmp_path, extra_env=extra_env, broker=broker)
    try:
        yield beat
    finally:
        beat.terminate()
        beat.wait(timeout=30)


def sigkill(process: subprocess.Popen) -> float:
    """Kill a worker as a dying host does (SIGKILL: no clean-up runs); the moment it died
    (``time.monotonic()``), once it is gone."""
    os.kill(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    process.wait(timeout=30)
    return killed_at


def start_beat(
    tmp_path: Path, *, extra_env: dict | None = None, broker: str = BROKER
) -> subprocess.Popen:
    """Start ``celery beat`` (the sweepers) against the test database; the caller terminates it."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
        "LABELHUB_DB_NAME": connection.settings_dict["NAME"],
        "LABELHUB_REDIS_URL": broker,
        "LABELHUB_CELERY_EAGER": "0",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "labelhub",
            "beat",
            "-s",
            str(tmp_path / "beat-schedule"),
            "-l",
            "info",
        ],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=open(tmp_path / "beat.log", "a"),
        stderr=subprocess.STDOUT,
    )


def wait_for(
    predicate,
    *,
    timeout: float,
    log_path: Path | None = None,
    worker: subprocess.Popen | None = None,
    interval: float = 0.2,
) -> float:
    """Poll ``predicate`` until true; return the monotonic time it became true. Fail showing the
    end of ``log_path`` (a worker's log) at the timeout, or at once when ``worker`` has exited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic()
        if worker is not None and worker.poll() is not None:
            raise AssertionError(
                f"the worker exited ({worker.returncode}); log:\n{_tail(log_path)}"
            )
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; log:\n{_tail(log_path)}")


def _tail(log_path: Path | None) -> str:
    return log_path.read_text()[-4000:] if log_path and log_path.exists() else ""
