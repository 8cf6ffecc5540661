"""Fault-injection helpers: a Postgres connection of the test's own (to hold locks while a worker or
a request waits on them) and a private Redis server a test may kill and restart."""

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import redis
from django.db import connection


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
