"""The progress-callback type both ML cores share (AnimeReward and the GAPO trainer), free of
Django and of torch (the web side imports it).

``Progress`` is the one progress-callback type: ``report(step, total, metrics, message)``; the
Django side passes ``runs.services.RunReporter``, the CLIs a tqdm bar, tests a list's append.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, "dict | None", str], None]


def no_progress(step: int, total: int, metrics: dict | None = None, message: str = "") -> None:
    """A progress callback that ignores everything."""
