"""Which function does the work of each kind of run: one map, filled by the apps that own the work.

Scoring and training register dotted paths in their ``AppConfig.ready``; the function is imported
only when a run of that kind executes, so the web side never loads torch through this map.
A job function takes ``(run, report)`` and returns the artifacts to store on the run.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils.module_loading import import_string

_JOBS: dict[str, str] = {}


def register_job(kind: str, path: str) -> None:
    """Name the function (``"package.module.function"``) that runs ``kind`` runs."""
    if _JOBS.get(kind, path) != path:
        raise ValueError(f"run kind {kind!r} is registered twice: {_JOBS[kind]} and {path}")
    _JOBS[kind] = path


def job_function(kind: str) -> Callable:
    """The job function for ``kind``; a clear error when no app registered one."""
    try:
        return import_string(_JOBS[kind])
    except KeyError:
        raise LookupError(f"no job function is registered for {kind!r} runs") from None
