"""The soft time limit each run's message carries, read off the real broker: a parent run waits
for its chunks (30 days), a training run is one long job (7 days), a chunk or the pairs step keeps
the per-job limit (6 h). Celery stamps the sending process's configured limit on a message that
names none, once the task is bound to the app (as it is in a web process that has sent one)."""

from __future__ import annotations

import base64
import json

import pytest
from django.conf import settings

from labelhub.celery import app
from runs import services as runs
from runs import tasks as _tasks  # noqa: F401  (registers runs.execute with the app)
from runs.models import Run
from tests.workers import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)


def _queued_soft_limits() -> dict[int, int | None]:
    """run id -> the soft time limit of its message waiting on the ``gpu`` queue."""
    with app.connection_for_write() as conn:
        messages = conn.default_channel.client.lrange("gpu", 0, -1)
    limits = {}
    for raw in messages:
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        limits[body[1]["run_id"]] = message["headers"]["timelimit"][1]
    return limits


def test_each_kind_of_run_is_sent_with_its_own_soft_time_limit(isolated_media, tmp_path):
    kinds = [
        Run.Kind.ROUND,
        Run.Kind.GENERATION,
        Run.Kind.GAPO,
        Run.Kind.REWARD_TRAINING,
        Run.Kind.PAIRS,
        Run.Kind.SCORING_CHUNK,
    ]
    # Bound to the app, as in any process that has sent one: the task takes the config's limit.
    assert app.tasks["runs.execute"].soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    # A worker on another queue: tasks go through Redis (not eagerly) and nothing takes them.
    with celery_worker(queues="idle", media_root=isolated_media, log_path=tmp_path / "w.log"):
        runs_by_kind = {kind: runs.launch(kind=kind, params={}) for kind in kinds}
        limits = _queued_soft_limits()
    sent = {kind: limits[run.pk] for kind, run in runs_by_kind.items()}
    parent, training = (
        settings.LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT,
        settings.LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT,
    )
    assert sent == {
        Run.Kind.ROUND: parent,
        Run.Kind.GENERATION: parent,
        Run.Kind.GAPO: training,
        Run.Kind.REWARD_TRAINING: training,
        Run.Kind.PAIRS: settings.CELERY_TASK_SOFT_TIME_LIMIT,
        Run.Kind.SCORING_CHUNK: settings.CELERY_TASK_SOFT_TIME_LIMIT,
    }
    assert (
        settings.CELERY_TASK_SOFT_TIME_LIMIT
        < settings.LABELHUB_TRAINING_TASK_SOFT_TIME_LIMIT
        < settings.LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT
    )
