"""Who is working: the live Celery workers per queue, from Celery's own inspection, joined with
our run rows (what each runs, its last heartbeat). Torch-free: the web page and API read it.

A gpu worker runs with the solo pool, one task at a time, so while it executes a run it does not
answer Celery's broadcasts: such a worker is known from its run's heartbeat ("busy"); one whose
run went silent past the stale window is "lost" (dead host), and one that answers is "idle" or,
if it answers while holding a run, "busy" too.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from runs.models import Run
from runs.services import queue_for

WORKER_COMMAND = "labelhub_worker"  # the inspect command labelhub.celery registers on every worker


def live_workers(*, timeout: float = 1.0) -> list[dict]:
    """One row per worker: name, host, queues, GPUs, state, the runs it holds, last heartbeat."""
    from labelhub.celery import app  # Celery loads with the page that asks, not with every command

    # One broadcast answers both (queues and GPUs): a second one sent right after Celery's own
    # active_queues inspection often came back empty, and the page showed "?" GPUs.
    try:
        queues: dict[str, list[str]] = {}
        gpus: dict[str, int] = {}
        for reply in app.control.broadcast(WORKER_COMMAND, reply=True, timeout=timeout) or []:
            for name, answer in reply.items():
                queues[name] = list((answer or {}).get("queues", []))
                gpus[name] = int((answer or {}).get("gpus", 0))
        broker_error = ""
    except Exception as error:  # the broker is down: the run rows still say who was working
        queues, gpus, broker_error = {}, {}, f"{type(error).__name__}: {error}"
    stale_before = timezone.now() - timedelta(seconds=settings.LABELHUB_RUN_STALE_SECONDS)
    held: dict[str, list[Run]] = {}
    for run in Run.objects.filter(status=Run.Status.RUNNING).exclude(worker=""):
        held.setdefault(run.worker, []).append(run)
    rows = []
    for name in sorted(set(queues) | set(held)):
        running = held.get(name, [])
        heartbeat = max((r.heartbeat_at for r in running if r.heartbeat_at), default=None)
        if running and heartbeat and heartbeat >= stale_before:
            state = "busy"
        elif running:
            state = "lost"
        else:
            state = "idle" if name in queues else "gone"
        rows.append(
            {
                "name": name,
                "host": name.partition("@")[2] or name.partition(":")[0],
                "queues": queues.get(name, []),
                "gpus": gpus.get(name),
                "state": state,
                "answered": name in queues,
                "runs": [
                    {
                        "id": r.pk,
                        "kind": r.kind,
                        "parent": r.parent_id,
                        "step": r.step,
                        "total_steps": r.total_steps,
                        "queue": queue_for(r.params),
                    }
                    for r in running
                ],
                "heartbeat_at": heartbeat.isoformat() if heartbeat else None,
                "broker_error": broker_error,
            }
        )
    return rows


def queues_without_worker(queued: list[Run], workers: list[dict]) -> dict[int, str]:
    """Queued runs that no live worker will take, and their queue: ``gpus: 4`` asks for a worker
    on ``gpu-x4`` that may not exist. A worker serves the queues it answered with and, while busy
    (a solo-pool gpu worker answers nothing), the queue of the run it holds. Empty when the
    broker did not answer: then nothing is known."""
    if not workers or any(w["broker_error"] for w in workers):
        return {}
    served = {
        queue
        for w in workers
        if w["state"] in ("idle", "busy")
        for queue in (*w["queues"], *(r["queue"] for r in w["runs"]))
    }
    return {run.pk: queue for run in queued if (queue := queue_for(run.params)) not in served}
