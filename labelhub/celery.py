"""The Celery app. Tasks are declared with ``@app.task(name=...)`` from this module so the app is
configured wherever a task is imported (web process, worker, shell)."""

import os
import re

from celery import Celery
from celery.worker.control import inspect_command

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelhub.settings")

app = Celery("labelhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["runs", "annotation", "scoring", "training"])


@inspect_command(name="labelhub_worker")
def labelhub_worker(state) -> dict:
    """What ``runs.workers`` lists for this worker, in one reply: the queues it consumes and how
    many GPUs it owns (CUDA_VISIBLE_DEVICES when set, else the NVIDIA device files; no torch
    import for a control command)."""
    queues = sorted(queue.name for queue in state.consumer.task_consumer.queues)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    else:
        gpus = len([p for p in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", p)])
    return {"queues": queues, "gpus": gpus}
