"""A GAPO run that asks for 2 GPUs, with real processes (issue 24): it goes to the ``gpu-x2`` queue,
the worker there launches 2 training processes with ``accelerate launch`` (on CPU: gloo), and
when one rank is SIGKILLed the run fails promptly (not hangs, not only when the stale sweep
notices) and resumes from its last checkpoint, again on 2 processes. A reward-training run with
gpus=2 goes the same way: it trains on 2 ranks and saves a model that scores, and a killed rank
fails it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from annotation.models import Clip
from annotation.services.exports import create_snapshot
from runs.models import Run
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.jobs import score_clips
from scoring.models import ClipScore, RewardModel
from scoring.services import RewardRunError, request_reward_training
from tests.gapo_runs import launch_endless_gapo, pairs_scored_by_brightness
from tests.lead_data import make_labelled_round
from tests.workers import celery_worker, wait_for
from training.services import launch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Heartbeat 1 s; the stale window stays long (60 s) so a failure inside it is the launcher's.
ENV = {
    "LABELHUB_RUN_HEARTBEAT_SECONDS": "1",
    "LABELHUB_RUN_STALE_SECONDS": "60",
    "OMP_NUM_THREADS": "1",
}
ENDED = (Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED)


def rank_pids(rank: int, module: bytes = b"training.ranks") -> list[int]:
    """Processes running ``-m module`` as torch.distributed rank ``rank``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if module in cmdline and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_gpus_2_runs_on_two_ranks_fails_when_one_dies_and_resumes(
    seed_round, admin_user, isolated_media, tmp_path
):
    reward_model = pairs_scored_by_brightness(seed_round)
    log = tmp_path / "gpu-x2.log"
    with celery_worker(
        queues="gpu-x2", media_root=isolated_media, log_path=log, extra_env=ENV, name="gpu-x2"
    ):
        run = launch_endless_gapo(
            round_=seed_round,
            reward_model=reward_model,
            created_by=admin_user,
            batch_pairs=2,
            gpus=2,
        )
        assert run.params["gpus"] == 2
        wait_for(lambda: Run.objects.get(pk=run.pk).checkpoint_path, timeout=300, log_path=log)
        assert Run.objects.get(pk=run.pk).worker.startswith("gpu-x2@")
        victims = rank_pids(1)
        assert len(victims) == 1, victims  # two ranks: rank 1 is one process
        assert len(rank_pids(0)) == 1
        os.kill(victims[0], signal.SIGKILL)
        killed_at = time.monotonic()
        failed_at = wait_for(
            lambda: Run.objects.get(pk=run.pk).status in ENDED, timeout=120, log_path=log
        )
        run.refresh_from_db()
        assert run.status == Run.Status.FAILED
        assert "a training process died" in run.error and "no heartbeat" not in run.error
        assert failed_at - killed_at < float(ENV["LABELHUB_RUN_STALE_SECONDS"])
        wait_for(lambda: not rank_pids(0) and not rank_pids(1), timeout=60)  # no rank left behind
        checkpoint_step = int(Path(run.checkpoint_path).name.rsplit("-", 1)[1])

        resumed = launch.resume(run_id=run.pk, created_by=admin_user, max_steps=checkpoint_step + 2)
        assert resumed.params["gpus"] == 2
        wait_for(
            lambda: Run.objects.get(pk=resumed.pk).status in ENDED,
            timeout=300,
            log_path=log,
        )
    resumed.refresh_from_db()
    assert resumed.status == Run.Status.SUCCEEDED, resumed.error
    assert f"at step {checkpoint_step}" in resumed.log_tail  # continued, not restarted
    assert resumed.artifacts["steps"] == checkpoint_step + 2
    print(f"\n2-rank run failed {failed_at - killed_at:.1f}s after rank 1 was killed")


def test_reward_training_on_two_ranks_saves_a_model_that_scores_and_fails_when_a_rank_dies(
    isolated_media, tmp_path
):
    round_ = make_labelled_round("reward-x2", make_labelled_clips(tmp_path / "clips", 16, seed=5))
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    with pytest.raises(RewardRunError, match="gpus must be a whole number in 1..64"):
        request_reward_training(snapshot_id=snapshot.pk, gpus=0, enqueue=False)
    with pytest.raises(RewardRunError, match="fine-tuning encoders .* not supported on 2"):
        request_reward_training(
            snapshot_id=snapshot.pk, config={"finetune_encoders": True}, gpus=2, enqueue=False
        )
    log = tmp_path / "gpu-x2.log"
    heads = {"dimensions": ["visual_appeal", "visual_motion"], "batch_size": 4}
    with celery_worker(
        queues="gpu-x2", media_root=isolated_media, log_path=log, extra_env=ENV, name="gpu-x2"
    ):
        endless = request_reward_training(
            snapshot_id=snapshot.pk, config={**heads, "epochs": 100_000}, gpus=2
        )
        wait_for(
            lambda: "epoch 1/" in Run.objects.get(pk=endless.pk).log_tail,
            timeout=300,
            log_path=log,
        )
        module = b"scoring.anime_reward.ranks"
        victims = rank_pids(1, module)
        assert len(victims) == 1 and len(rank_pids(0, module)) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        wait_for(lambda: Run.objects.get(pk=endless.pk).status in ENDED, timeout=120, log_path=log)
        endless.refresh_from_db()
        assert endless.status == Run.Status.FAILED
        assert "a training process died" in endless.error
        wait_for(lambda: not rank_pids(0, module) and not rank_pids(1, module), timeout=60)

        run = request_reward_training(
            snapshot_id=snapshot.pk, config={**heads, "epochs": 2}, name="two-ranks", gpus=2
        )
        wait_for(lambda: Run.objects.get(pk=run.pk).status in ENDED, timeout=300, log_path=log)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.worker.startswith("gpu-x2@") and "launching 2 training processes" in run.log_tail
    reward_model = RewardModel.objects.get(name="two-ranks")
    assert reward_model.config["train_clips"] == 12 and reward_model.config["test_clips"] == 4
    assert reward_model.config["gpus"] == 2
    assert set(reward_model.metrics["visual_appeal"]) >= {"spearman", "mae"}
    clip_ids = list(Clip.objects.filter(round=round_).values_list("pk", flat=True)[:2])
    score_clips(reward_model=reward_model, clip_ids=clip_ids, batch_size=2)
    scores = ClipScore.objects.filter(reward_model=reward_model, error="")
    assert scores.count() == 2 and all(0 <= s.visual_appeal <= 1 for s in scores)
