"""The workers view (issue 24): the Training runs page and ``/api/training/workers/`` list the live
workers from Celery's inspection (a real worker process) joined with our run rows: an idle gpu
worker, a busy one known by its run's heartbeat, a lost one whose heartbeat went stale."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Run
from tests.conftest import make_user
from tests.workers import celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_workers_api_and_page_show_idle_busy_and_lost_workers(client, isolated_media, tmp_path):
    lead = make_user("watcher", "lead")
    admin = make_user("boss", "admin")
    now = timezone.now()
    Run.objects.create(
        kind="generation_chunk",
        status=Run.Status.RUNNING,
        worker="gpu7@host-b",
        heartbeat_at=now,
        step=3,
        total_steps=8,
    )
    lost = Run.objects.create(
        kind="scoring_chunk",
        status=Run.Status.RUNNING,
        worker="gpu3@host-c",
        heartbeat_at=now - timedelta(hours=2),
    )
    # Queued: one run for the gpu queue (the worker below takes it), one asking for 4 GPUs of a
    # host (no worker listens on gpu-x4: the page says so instead of a bare "queued").
    served = Run.objects.create(kind="gapo", status=Run.Status.QUEUED, params={"gpus": 1})
    unserved = Run.objects.create(kind="gapo", status=Run.Status.QUEUED, params={"gpus": 4})
    with celery_worker(
        queues="gpu",
        media_root=isolated_media,
        log_path=tmp_path / "gpu.log",
        name="gpu0",
        extra_env={"CUDA_VISIBLE_DEVICES": "0"},
    ):
        client.force_login(lead)
        rows = {}
        for _ in range(30):  # the worker answers once it has connected
            response = client.get("/api/training/workers/")
            assert response.status_code == 200
            rows = {row["name"].split("@")[0]: row for row in response.json()["results"]}
            if "gpu0" in rows:
                break
        idle = rows["gpu0"]
        assert idle["state"] == "idle" and idle["answered"] and idle["queues"] == ["gpu"]
        assert idle["gpus"] == 1 and idle["runs"] == []
        busy = rows["gpu7"]
        assert busy["state"] == "busy" and busy["host"] == "host-b" and not busy["answered"]
        assert busy["runs"][0]["kind"] == "generation_chunk" and busy["runs"][0]["step"] == 3
        assert rows["gpu3"]["state"] == "lost" and rows["gpu3"]["runs"][0]["id"] == lost.pk

        client.force_login(admin)
        page = client.get("/runs/").content.decode()
        assert 'id="workers"' in page
        assert "gpu7@host-b" in page and "worker-lost" in page and "worker-idle" in page
        # The page asks with a shorter timeout than the API: the GPU count is there too.
        gpu0_row = page[page.index("gpu0@") :].split("</tr>")[0]
        assert "<td>1</td>" in gpu0_row, gpu0_row
        runs_table = page[page.index('id="runs"') :]
        rows = {
            int(re.search(r">(\d+)</a>", row).group(1)): row
            for row in runs_table.split('<tr class="run-')[1:]
        }
        assert "no worker listens on gpu-x4" in rows[unserved.pk], rows[unserved.pk]
        assert "no worker listens" not in rows[served.pk], rows[served.pk]

    client.force_login(make_user("ann", "annotator"))
    assert client.get("/api/training/workers/").status_code == 403
