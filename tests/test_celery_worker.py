"""Work on real Celery worker processes over the real Redis broker (no eager mode)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import ImportRow
from annotation.services.ingest import import_manifest_file
from runs.models import Run
from runs.services import fail_stale_runs
from tests.factories import make_round, write_manifest
from tests.gapo_runs import launch_endless_gapo, pairs_scored_by_brightness
from tests.workers import celery_worker, sigkill, wait_for
from training.models import PolicyCheckpoint
from training.services import launch

pytestmark = pytest.mark.django_db(transaction=True)


def test_ingest_runs_on_a_real_worker(isolated_media, tmp_path, video_factory):
    make_round("r1")
    good = video_factory("good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    log_path = tmp_path / "worker.log"
    with celery_worker(queues="default", media_root=isolated_media, log_path=log_path) as worker:
        batch = import_manifest_file(
            path=write_manifest(
                tmp_path / "m.jsonl",
                [
                    {"video": str(good), "prompt": "p", "round": "r1"},
                    {"video": str(bad), "prompt": "p", "round": "r1"},
                ],
            )
        )

        def rows():
            return list(ImportRow.objects.filter(batch=batch).order_by("line"))

        wait_for(
            lambda: all(r.status in {"ok", "error"} for r in rows()),
            worker=worker,
            log_path=log_path,
            timeout=240,
        )
        rows = rows()
    assert [r.status for r in rows] == ["ok", "error"]
    assert "not a readable video" in rows[1].message


@pytest.mark.slow
def test_worker_killed_mid_gapo_run_leaves_a_failed_run_that_resumes(
    seed_round,  # noqa: F811 - the fixture imported above
    admin_user,
    isolated_media,
    tmp_path,
    django_capture_on_commit_callbacks,  # noqa: F811
):
    reward_model = pairs_scored_by_brightness(seed_round)

    log_path = tmp_path / "gpu-worker.log"
    with celery_worker(queues="gpu", media_root=isolated_media, log_path=log_path) as worker:
        run = launch_endless_gapo(
            round_=seed_round,
            reward_model=reward_model,
            created_by=admin_user,
            learning_rate=1e-3,
        )
        wait_for(
            lambda: Run.objects.get(pk=run.pk).checkpoint_path,
            worker=worker,
            log_path=log_path,
            timeout=300,
        )
        sigkill(worker)  # the GPU host dies mid-run

    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING  # nobody has noticed yet
    assert fail_stale_runs(now=timezone.now() + timedelta(hours=1)) == 1
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.checkpoint_path
    resumed_at = int(run.checkpoint_path.rstrip("/").rsplit("-", 1)[1])

    with django_capture_on_commit_callbacks(execute=True):
        resumed = launch.resume(run_id=run.pk, created_by=admin_user, max_steps=resumed_at + 2)
    resumed.refresh_from_db()
    assert resumed.status == Run.Status.SUCCEEDED, resumed.error
    assert f"at step {resumed_at}" in resumed.log_tail
    assert resumed.metrics[0]["step"] == resumed_at + 1  # continued, not restarted
    assert PolicyCheckpoint.objects.filter(run=resumed).exists()
