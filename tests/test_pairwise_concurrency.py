"""Pairwise assignment on the real Postgres under concurrency: judges lease and judge at once."""

import random

import pytest

from annotation.models import PairwiseJudgement, PairwiseTask
from annotation.services.pairwise import create_pairwise_tasks, lease_next_pair, submit_judgement
from tests.conftest import make_user
from tests.faults import all_at_once
from tests.lead_data import make_clip, make_condition, make_round

TASKS, JUDGES_NEEDED, JUDGES = 5, 3, 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_judges_never_overfill_a_task_or_judge_it_twice():
    """10 threads lease and judge at once over 5 tasks needing 3 judges each (15 slots)."""
    round_ = make_round()
    for i in range(TASKS):
        condition = make_condition(f"c{i}", f"p{i}")
        make_clip(round_, condition, "ground_truth")
        make_clip(round_, condition, "ckpt-1", source_kind="policy")
    tasks = create_pairwise_tasks(
        source_a="ckpt-1",
        source_b="ground_truth",
        judges_needed=JUDGES_NEEDED,
        rng=random.Random(0),
    )
    assert len(tasks) == TASKS
    judges = [make_user(f"judge{i}", "annotator") for i in range(JUDGES)]
    judged: list[tuple[int, int]] = []

    def work(judge):
        rng = random.Random(judge.pk)
        while (lease := lease_next_pair(judge=judge)) is not None:
            submit_judgement(
                task_id=lease.task_id,
                judge=judge,
                side=rng.choice(["left", "right", "tie"]),
                seconds_spent=1,
            )
            judged.append((lease.task_id, judge.pk))

    all_at_once(work, judges)
    # Every slot filled exactly once, never twice by one judge.
    assert len(judged) == TASKS * JUDGES_NEEDED == len(set(judged))
    for task in PairwiseTask.objects.all():
        judgements = PairwiseJudgement.objects.filter(task=task)
        assert task.judgement_count == judgements.count() == task.judges_needed
        assert judgements.values("judge").distinct().count() == task.judges_needed
    assert PairwiseJudgement.objects.count() == len(judged)
    # Nothing is left to lease for anyone.
    assert lease_next_pair(judge=judges[0]) is None
