"""Fault injection with real workers (issue 11): SIGKILL the GPU worker in the middle of a GAPO
run; beat's ``runs.fail_stale_runs`` (on a default-queue worker) notices the silent heartbeat
and marks the run failed, resumable from its last checkpoint (``tests/test_celery_worker.py``
proves the resume). No clock is faked: this measures how long the platform takes to notice.

Short settings here (heartbeat 1 s, stale after 4 s, sweep every 1 s); production defaults are
30 s / 600 s / 60 s. Measure those with LABELHUB_CRASH_TEST_PRODUCTION_TIMINGS=1 ... -s.
"""

import pytest

from runs.models import Run
from tests.gapo_runs import launch_endless_gapo, pairs_scored_by_brightness
from tests.workers import beat_running, celery_worker, recovery_env, sigkill, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECOVERY_ENV = recovery_env("RUN")
LIMIT = 60 if RECOVERY_ENV else 900


def test_gpu_worker_sigkilled_mid_run_is_failed_resumable_by_beat(
    seed_round, admin_user, isolated_media, tmp_path
):
    reward_model = pairs_scored_by_brightness(seed_round)
    gpu_log, default_log = tmp_path / "gpu-worker.log", tmp_path / "worker.log"
    with celery_worker(
        queues="gpu", media_root=isolated_media, log_path=gpu_log, extra_env=RECOVERY_ENV
    ) as gpu:
        run = launch_endless_gapo(
            round_=seed_round,
            reward_model=reward_model,
            created_by=admin_user,
            learning_rate=1e-3,
        )
        wait_for(
            lambda: Run.objects.get(pk=run.pk).checkpoint_path,
            log_path=gpu_log,
            timeout=120,
        )
        killed_at = sigkill(gpu)  # the GPU host dies mid-run
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING

    with beat_running(tmp_path, extra_env=RECOVERY_ENV):
        with celery_worker(
            queues="default",
            media_root=isolated_media,
            log_path=default_log,
            extra_env=RECOVERY_ENV,
            flush_broker=False,
        ):
            failed_at = wait_for(
                lambda: Run.objects.get(pk=run.pk).status == Run.Status.FAILED,
                log_path=default_log,
                timeout=LIMIT,
                interval=0.5,
            )
    print(f"\ntraining run marked failed (resumable) {failed_at - killed_at:.1f}s after the kill")

    run.refresh_from_db()
    assert "no heartbeat" in run.error and run.checkpoint_path
    # Not before the stale window: a live run is never failed early.
    stale = float(RECOVERY_ENV.get("LABELHUB_RUN_STALE_SECONDS", 600))
    heartbeat_every = float(RECOVERY_ENV.get("LABELHUB_RUN_HEARTBEAT_SECONDS", 30))
    assert failed_at - killed_at >= stale - heartbeat_every - 1
