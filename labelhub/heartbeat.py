"""A heartbeat thread: while a long job runs, touch its row every few seconds on a connection of
its own, so a sweeper can tell a silent-but-alive worker (one long query, a lock wait, a model
load) from a dead one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connection

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

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
