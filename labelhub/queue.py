"""Enqueue Celery work by task name once the current transaction commits.

Services never import task functions (tasks import services, so that would be a cycle); they name
the task. Arguments are ids and plain values. Under eager mode (tests) the task runs in-process
right after the commit, as a worker would run it.
"""

from __future__ import annotations

from django.db import transaction

from labelhub.celery import app


def send_now(task_name: str, *, queue: str | None = None, **kwargs) -> None:
    """Send the task at once (callers that are outside a transaction or already committed);
    ``queue`` overrides the task's route (a run for a worker that owns several GPUs)."""
    if app.conf.task_always_eager:
        app.loader.import_default_modules()
        app.tasks[task_name].apply(kwargs=kwargs, throw=True)
    else:
        app.send_task(task_name, kwargs=kwargs, **({"queue": queue} if queue else {}))


def enqueue(task_name: str, *, queue: str | None = None, **kwargs) -> None:
    """Send ``task_name(**kwargs)`` after the surrounding transaction commits (at once without one)."""
    transaction.on_commit(lambda: send_now(task_name, queue=queue, **kwargs))
