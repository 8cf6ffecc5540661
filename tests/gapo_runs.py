"""A GAPO run that trains until its worker is killed, for the tests that kill workers mid-run
(``test_run_crash``, ``test_celery_worker``, ``test_multigpu_training``)."""

from __future__ import annotations

from runs.models import Run
from scoring.models import ClipScore, RewardModel
from tests.toy import mean_brightness
from training.services import launch
from training.services.pairs import build_round_pairs


def pairs_scored_by_brightness(round_) -> RewardModel:
    """Preference pairs for GAPO from a brightness 'reward model' over the seed round's clips."""
    reward_model = RewardModel.objects.create(name="brightness", preset="exact", checkpoint_dir="-")
    for clip in round_.clips.all():
        ClipScore.objects.create(
            clip=clip, reward_model=reward_model, overall=mean_brightness(clip.original.path)
        )
    clips = list(round_.clips.order_by("pk"))
    for loser in clips[1::2]:  # pairs need two clips of one condition
        loser.condition = clips[clips.index(loser) - 1].condition
        loser.save(update_fields=["condition"])
    assert build_round_pairs(
        round_id=round_.pk, origin="reward_model", reward_model_id=reward_model.pk
    )
    return reward_model


def launch_endless_gapo(*, round_, reward_model: RewardModel, created_by, **params) -> Run:
    """Launch GAPO on the round's reward-model pairs with a step budget no test reaches
    (100000), a checkpoint every 2 steps so a kill always has one to resume from; ``params``
    add or override trainer settings."""
    return launch.launch_run(
        kind="gapo",
        created_by=created_by,
        params={
            "round_id": round_.pk,
            "origin": "reward_model",
            "reward_model_id": reward_model.pk,
            "max_steps": 100000,
            "checkpoint_every": 2,
            **params,
        },
    )
