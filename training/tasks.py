"""Celery tasks of the alignment loop: ids in, services do the work. Routed to the ``gpu`` queue
(``training.*``), late acknowledgement, prefetch 1 (settings), so a killed worker's message is
redelivered and ``begin_run`` turns the orphaned run into a failed, resumable one."""

from labelhub.celery import app


@app.task(name="training.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run_task(run_id: int) -> int:
    from training.services.jobs import execute_run  # torch only on the worker that runs it

    execute_run(run_id)
    return run_id


@app.task(name="training.fail_stale_runs")
def fail_stale_runs_task() -> int:
    """Beat task (default queue): mark runs whose worker stopped sending heartbeats as failed."""
    from training.services.runs import fail_stale_runs

    return fail_stale_runs()
