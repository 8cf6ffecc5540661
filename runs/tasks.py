"""The one Celery task that runs GPU jobs (``gpu`` queue, late ack, prefetch 1), and the beat task
that fails runs whose worker died. Ids in; ``runs.services`` does the work."""

from labelhub.celery import app
from runs import services


@app.task(name="runs.execute", bind=True, acks_late=True, reject_on_worker_lost=True)
def execute_run(self, run_id: int) -> int:
    services.execute_run(run_id, worker=self.request.hostname or "")
    return run_id


@app.task(name="runs.fail_stale_runs")
def fail_stale_runs() -> int:
    """Beat task (``default`` queue): mark runs whose worker stopped sending heartbeats as failed."""
    return services.fail_stale_runs()
