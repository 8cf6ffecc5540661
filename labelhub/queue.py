"""Enqueue Celery work by task name once the current transaction commits.

Services never import task functions (tasks import services, so that would be a cycle); they name
the task. Arguments are ids and plain values. Under eager mode (tests) the task runs in-process
right after the commit, as a worker would run it.
"""

from __future__ import annotations

from django.db import transaction


def send_now(
    task_name: str, *, queue: str | None = None, soft_time_limit: int | None = None, **kwargs
) -> None:
    """Send the task at once (callers that are outside a transaction or already committed);
    ``queue`` overrides the task's route (a run for a worker that owns several GPUs);
    ``soft_time_limit`` (seconds) replaces the configured one for this message only."""
    # Celery loads with the first task sent, not with every page process and manage.py command.
    from labelhub.celery import app

    if app.conf.task_always_eager:
        app.loader.import_default_modules()
        app.tasks[task_name].apply(kwargs=kwargs, throw=True)
    else:
        options = {"queue": queue, "soft_time_limit": soft_time_limit}
        app.send_task(task_name, kwargs=kwargs, **{k: v for k, v in options.items() if v})


def enqueue(
    task_name: str, *, queue: str | None = None, soft_time_limit: int | None = None, **kwargs
) -> None:
    """Send ``task_name(**kwargs)`` after the surrounding transaction commits (at once without one)."""
    transaction.on_commit(
        lambda: send_now(task_name, queue=queue, soft_time_limit=soft_time_limit, **kwargs)
    )
