"""Fault-injection helpers: a Postgres connection of the test's own (to hold locks while a worker or
a request waits on them), a private Redis server a test may kill and restart, and many users
acting at once on threads of their own (``all_at_once``)."""

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import redis
from django.db import close_old_connections, connection


def all_at_once(work: Callable[[object], object], args: Sequence, *, timeout: float = 120) -> None:
    """Run ``work(arg)`` for every arg on a thread of its own (so a database connection of its
    own, closed after), all released together by a barrier. Fails the test when a thread raised,
    or still runs after ``timeout`` seconds."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(args))

    def run(arg) -> None:
        try:
            barrier.wait()
            work(arg)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    close_old_connections()
    assert not any(thread.is_alive() for thread in threads), f"still running after {timeout} s"
    assert not errors, errors


def own_connection() -> psycopg.Connection:
    """A Postgres connection outside Django's, to hold locks while a worker waits on them."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


@contextlib.contextmanager
def table_locked(table: str):
    """ACCESS EXCLUSIVE lock on ``table`` until the block ends (then committed: released)."""
    with own_connection() as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield holder


def backends_waiting_on_lock() -> int:
    """How many connections to the test database are waiting for a lock right now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


class PrivateRedis:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port, no persistence: a restart loses
    every queued message, as a Redis host that died without its data would. Never the shared one.
    """

    def __init__(self, workdir: Path):
        self.workdir = workdir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=open(self.workdir / "redis.log", "a"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server dies with everything it held."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def queued(self, queue: str = "default") -> int:
        """Messages waiting in ``queue`` (all its priority lists)."""
        client = redis.Redis(host="127.0.0.1", port=self.port)
        return sum(client.llen(key) for key in client.scan_iter(f"{queue}*"))
