"""The reward-hacking alarm, decided per dimension on known numbers: AnimeReward rose on appeal
and overall, fell on motion; five judged policy-vs-base tasks (three judges, 2 of 3 decide) where
the judges prefer the policy overall and the base on appeal. The alarm is up on appeal only;
overall is backed by the judges once their interval clears 0.5 (5 of 5 wins: 0.57), and a rise
nobody has judged yet waits instead of alarming."""

import pytest

from annotation.models import PairwiseTask
from annotation.services.pairwise import (
    create_tasks_for_clip_pairs,
    lease_next_pair,
    side_to_choice,
    submit_judgement,
)
from labelhub.dimensions import DIMENSION_KEYS
from scoring.models import ClipScore, RewardModel
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round
from training.models import Candidate, PolicyCheckpoint
from training.selectors import human_evaluation, scoreboard

pytestmark = pytest.mark.django_db

TASKS = 5


def _score(clip, reward_model, **rewards):
    values = {key: 0.5 for key in DIMENSION_KEYS} | rewards
    ClipScore.objects.create(
        clip=clip, reward_model=reward_model, overall=sum(values.values()) / 6, **values
    )


@pytest.fixture
def evaluated():
    policy_round, base_round = make_round("r2"), make_round("base-candidates")
    checkpoint = PolicyCheckpoint.objects.create(name="ckpt", base_preset="tiny", lora_path="x")
    reward_model = RewardModel.objects.create(name="rm", preset="tiny", checkpoint_dir="x")
    pairs = []
    for index in range(TASKS):
        condition = make_condition(f"img{index}", f"prompt {index}")
        policy = make_clip(policy_round, condition, "policy:ckpt", source_kind="policy")
        base = make_clip(base_round, condition, "base", source_kind="policy")
        Candidate.objects.create(clip=policy, checkpoint=checkpoint, seed=7)
        Candidate.objects.create(clip=base, checkpoint=None, seed=7)
        _score(policy, reward_model, visual_appeal=0.9, visual_motion=0.2)
        _score(base, reward_model, visual_appeal=0.4, visual_motion=0.6)
        pairs.append((policy.pk, base.pk))
    create_tasks_for_clip_pairs(clip_pairs=pairs, judges_needed=3)
    return checkpoint, reward_model


def _side(task, source: str) -> str:
    """The screen side the judge sees ``source`` ("policy" or "base") on."""
    policy_is_a = task.clip_a.source_name.startswith("policy:")
    wanted = "a" if (source == "policy") == policy_is_a else "b"
    return next(s for s in ("left", "right") if side_to_choice(task, s) == wanted)


def _judge_all(judges, *, overall: str, appeal: str) -> None:
    """Each judge answers every task: ``overall`` and ``appeal`` name the preferred source."""
    for judge in judges:
        while (lease := lease_next_pair(judge=judge)) is not None:
            task = PairwiseTask.objects.select_related("clip_a").get(pk=lease.task_id)
            submit_judgement(
                task_id=task.pk,
                judge=judge,
                side=_side(task, overall),
                dimension_sides={"visual_appeal": _side(task, appeal), "visual_motion": "tie"},
            )


def test_the_alarm_is_up_where_the_reward_rose_and_the_judges_disagree(evaluated):
    checkpoint, reward_model = evaluated
    before = human_evaluation(checkpoint_id=checkpoint.pk, reward_model_id=reward_model.pk)
    by_key = {d["key"]: d for d in before["dimensions"]}
    assert before["evaluation_tasks"] == TASKS == before["tasks_awaiting_judges"]
    assert by_key["visual_appeal"]["reward_delta"] == pytest.approx(0.5)
    assert by_key["visual_appeal"]["awaiting_humans"] and not before["alarm"]

    _judge_all([make_user(f"j{i}", "annotator") for i in range(3)], overall="policy", appeal="base")
    after = human_evaluation(checkpoint_id=checkpoint.pk, reward_model_id=reward_model.pk)
    by_key = {d["key"]: d for d in after["dimensions"]}
    assert after["tasks_awaiting_judges"] == 0
    appeal, motion, overall = by_key["visual_appeal"], by_key["visual_motion"], by_key["overall"]
    assert (appeal["wins"], appeal["losses"]) == (0, TASKS) and appeal["alarm"]
    assert motion["reward_delta"] < 0 and motion["ties"] == TASKS and not motion["alarm"]
    assert overall["reward_delta"] > 0 and overall["wins"] == TASKS
    assert overall["ci95"][0] > 0.5 and not overall["alarm"]  # the judges back the rise
    assert after["alarm_dimensions"] == ["Visual appeal"]
    # the scoreboard carries the same report for the page and the API
    (report,) = scoreboard(reward_model_id=reward_model.pk)["human_evaluations"]
    assert report["alarm_dimensions"] == ["Visual appeal"]
