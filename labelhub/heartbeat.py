"""A heartbeat thread: while a long job runs, touch its row every few seconds on a connection of
its own, so a sweeper can tell a silent-but-alive worker (one long query, a lock wait, a model
load) from a dead one; ``silent`` is that test, for the claim, the sweep and the pages alike."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls ``touch()`` every ``interval`` seconds until ``stop()``; use as a context manager."""

    def __init__(self, touch: Callable[[], object], *, interval: float, name: str):
        super().__init__(name=name, daemon=True)
        self.touch, self.interval = touch, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                self.touch()
        except Exception:  # a lost heartbeat only makes the job look stale; never crash it
            logger.exception("%s failed", self.name)
        finally:
            connection.close()  # this thread's own connection

    @classmethod
    def on_rows(cls, rows: QuerySet, *, interval: float, name: str) -> Heartbeat:
        """Moves ``heartbeat_at`` to now on ``rows``: filter them to the claim this worker holds,
        so a row another worker has taken over is no longer touched."""
        return cls(lambda: rows.update(heartbeat_at=timezone.now()), interval=interval, name=name)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stale_before(seconds: float, *, now: datetime | None = None) -> datetime:
    """The moment before which a last beat means its worker is gone (``seconds`` of silence)."""
    return (now or timezone.now()) - timedelta(seconds=seconds)


def silent(heartbeat_at: datetime | None, seconds: float, *, now: datetime | None = None) -> bool:
    """True when a worker never beat or its last beat is older than ``seconds``."""
    return heartbeat_at is None or heartbeat_at < stale_before(seconds, now=now)
