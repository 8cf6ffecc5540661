"""Pairwise judging: side shuffle, 3 judges a task, 2-of-3 verdicts, win rates and pairs."""

import random

import pytest

from annotation.models import PairwiseJudgement, PairwiseTask
from annotation.selectors.pairwise import iter_preference_pairs, verdict, wilson_interval, win_rate
from annotation.services.pairwise import (
    PairwiseError,
    create_pairwise_tasks,
    lease_next_pair,
    submit_judgement,
)
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round


@pytest.fixture
def pairs(db):
    round_ = make_round()
    for i in range(4):
        condition = make_condition(f"i{i}", f"p{i}")
        make_clip(round_, condition, "ground_truth")
        make_clip(round_, condition, "ckpt-3", source_kind="policy")
    make_clip(round_, make_condition("lonely", "lonely"), "ckpt-3", source_kind="policy")
    tasks = create_pairwise_tasks(source_a="ckpt-3", source_b="ground_truth", rng=random.Random(0))
    return round_, tasks


def test_verdict_needs_two_of_three_and_wilson_interval():
    assert verdict(["a", "a", "b"]) == "a"
    assert verdict(["b", "tie", "b"]) == "b"
    assert verdict(["a", "b", "tie"]) == "tie"
    assert verdict(["tie", "tie", "a"]) == "tie"
    low, high = wilson_interval(5, 10)
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half = 1.96*sqrt(0.025 + 0.0096)/1.384 = 0.2366
    assert (low, high) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_tasks_judged_by_three_with_sides_mapped_back(pairs):
    _round, tasks = pairs
    assert len(tasks) == 4  # the condition with one source only gets no task
    assert {t.a_on_left for t in tasks} == {True, False}  # rng(0) shuffles both ways
    judges = [make_user(f"j{i}", "annotator") for i in range(4)]
    # Every judge prefers the checkpoint clip (clip_a) on every task, whatever side it is on.
    for judge in judges[:3]:
        while (lease := lease_next_pair(judge=judge)) is not None:
            task = lease.task
            submit_judgement(
                task_id=task.pk,
                judge=judge,
                side="left" if task.a_on_left else "right",
                dimension_sides={"visual_motion": "tie"},
            )
    assert all(t.judgement_count == 3 for t in PairwiseTask.objects.all())
    assert set(PairwiseJudgement.objects.values_list("choice", flat=True)) == {"a"}
    assert set(
        PairwiseJudgement.objects.values_list("dimension_choices__visual_motion", flat=True)
    ) == {"tie"}
    assert lease_next_pair(judge=judges[3]) is None  # each task has its three judges
    with pytest.raises(PairwiseError):
        submit_judgement(task_id=tasks[0].pk, judge=judges[0], side="left")  # judged already
    with pytest.raises(PairwiseError):
        submit_judgement(task_id=tasks[0].pk, judge=judges[3], side="left")  # task is full

    report = win_rate(source_x="ckpt-3", source_y="ground_truth")
    assert (report.tasks, report.wins, report.ties, report.losses) == (4, 4, 0, 0)
    assert report.as_dict()["win"]["rate"] == 1.0
    reverse = win_rate(source_x="ground_truth", source_y="ckpt-3")
    assert reverse.losses == 4
    pairs_out = list(iter_preference_pairs())
    assert len(pairs_out) == 4 and {p["winner_source"] for p in pairs_out} == {"ckpt-3"}
    assert all(p["votes_for_winner"] == 3 for p in pairs_out)


def test_split_votes_are_ties_and_pairs_skip_them(pairs):
    _round, tasks = pairs
    task = tasks[0]
    a_side, b_side = ("left", "right") if task.a_on_left else ("right", "left")
    for judge, side in zip(
        [make_user(f"k{i}", "annotator") for i in range(3)], [a_side, b_side, "tie"], strict=True
    ):
        lease_next_pair(judge=judge)
        submit_judgement(task_id=task.pk, judge=judge, side=side)
    report = win_rate(source_x="ckpt-3", source_y="ground_truth")
    assert (report.tasks, report.ties) == (1, 1)
    assert list(iter_preference_pairs()) == []


def test_pairwise_api_round_trip(pairs, client):
    judge = make_user("api-judge", "annotator")
    client.force_login(judge)
    response = client.post("/api/pairwise/next/", {}, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    task = PairwiseTask.objects.get(pk=body["task_id"])
    left_clip = task.clip_a_id if task.a_on_left else task.clip_b_id
    assert f"/media/clip/{left_clip}/video" in body["left"]["video_url"]
    response = client.post(
        f"/api/pairwise/{task.pk}/judge/", {"choice": "right"}, content_type="application/json"
    )
    assert response.status_code == 201
    judgement = PairwiseJudgement.objects.get(task=task, judge=judge)
    assert judgement.choice == ("b" if task.a_on_left else "a")
    assert (
        client.post(
            f"/api/pairwise/{task.pk}/judge/", {"choice": "left"}, content_type="application/json"
        ).status_code
        == 409
    )
    client.force_login(make_user("nobody"))
    assert (
        client.post("/api/pairwise/next/", {}, content_type="application/json").status_code == 403
    )
