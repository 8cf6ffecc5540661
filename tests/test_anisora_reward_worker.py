"""The anisora preset on a real gpu worker process over Redis: the worker reads the release's
folder from its own environment (LABELHUB_ANISORA_REWARD_DIR), evaluates the released models on
a snapshot and scores the round with them."""

from __future__ import annotations

import time

import pytest

from annotation.models import Clip, ClipLabel, Condition
from annotation.services.exports import create_snapshot
from labelhub.dimensions import DIMENSION_KEYS
from runs.models import Run
from scoring import services
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.models import ClipScore, RewardModel
from tests import anisora_replica as replica
from tests.conftest import store_file
from tests.lead_data import make_round, sha
from tests.workers import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_run(run_id, *, worker, log_path, timeout=600.0) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status in (Run.Status.SUCCEEDED, Run.Status.FAILED):
            return run
        assert worker.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"timed out; worker log:\n{log_path.read_text()[-3000:]}")


@pytest.mark.slow
def test_a_gpu_worker_scores_a_round_with_the_released_models(isolated_media, settings, tmp_path):
    root = replica.write_release(tmp_path / "reward")
    sam = tmp_path / "sam2.1-hiera-base-plus"
    replica.sam2(sam)
    settings.LABELHUB_REWARD_PRESET = "anisora"
    settings.LABELHUB_ANISORA_REWARD_DIR = str(root)
    settings.LABELHUB_REWARD_SOURCES = {"sam": str(sam)}
    round_ = make_round("anisora-worker")
    for synthetic in make_labelled_clips(tmp_path / "clips", 4, seed=9):
        key = str(synthetic.index)
        condition = Condition.objects.create(
            content_hash=sha("wc" + key),
            image=store_file(synthetic.condition_image_path, f"conditions/w{key}.png"),
            image_sha256=sha("wi" + key),
            prompt=synthetic.prompt,
            prompt_sha256=sha("wp" + key),
        )
        video = store_file(synthetic.video_path, f"clips/w{key}.mp4")
        clip = Clip.objects.create(
            round=round_,
            condition=condition,
            source_kind="external",
            source_name="toy",
            original=video,
            original_sha256=sha("wo" + key),
            video=video,
            status=Clip.Status.READY,
            target_ratings=3,
            rating_count=3,
        )
        ClipLabel.objects.create(
            clip=clip,
            count=3,
            overall=3.0,
            **{f"{k}_mean": v for k, v in synthetic.labels.items()},
            **{f"{k}_std": 0.0 for k in DIMENSION_KEYS},
        )
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    log_path = tmp_path / "gpu-worker.log"
    env = {
        "LABELHUB_REWARD_PRESET": "anisora",
        "LABELHUB_ANISORA_REWARD_DIR": str(root),
        "LABELHUB_REWARD_SOURCE_SAM": str(sam),
    }
    with celery_worker(
        queues="gpu", media_root=isolated_media, log_path=log_path, extra_env=env
    ) as worker:
        run = services.request_reward_training(
            snapshot_id=snapshot.pk, config={"release_finetune": "none"}, name="released"
        )
        run = wait_for_run(run.pk, worker=worker, log_path=log_path)
        assert run.status == Run.Status.SUCCEEDED, run.log_tail
        reward_model = RewardModel.objects.get(name="released")
        assert reward_model.preset == "anisora"
        scoring = services.request_scoring(reward_model_id=reward_model.pk, round_id=round_.pk)
        scoring = wait_for_run(scoring.pk, worker=worker, log_path=log_path)
        assert scoring.status == Run.Status.SUCCEEDED, scoring.log_tail
    scores = ClipScore.objects.filter(reward_model=reward_model)
    assert scores.count() == 4
    for score in scores:
        assert score.error == "" and all(0.0 <= v <= 1.0 for v in score.rewards().values())
