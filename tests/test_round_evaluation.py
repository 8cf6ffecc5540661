"""A round ends with a human evaluation: ``run_round --evaluate`` pairs the new policy's candidates
with the base generator's (same condition and seed, generated once into their own round), three
judges answer through the API, and the scoreboard shows the checkpoint's win rate with its Wilson
interval under the 2-of-3 rule and, per dimension, the reward-hacking alarm. A round whose base
candidates cannot be generated fails at that step with the reason, keeps its other steps, and
resumes from it (tiny presets, eager tasks, real ffmpeg and Postgres)."""

import pytest
from django.core.management import CommandError, call_command

from annotation.models import PairwiseTask, Round
from annotation.selectors.pairwise import wilson_interval
from runs.models import Run
from scoring.models import ClipScore
from tests.conftest import make_user
from tests.test_run_round import CONDITIONS, K, _args, rated_round  # noqa: F401 (fixture)
from training.models import Candidate, PolicyCheckpoint
from training.services.evaluation import BASE_ROUND, EVALUATION_JUDGES

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("two_threads"),
]


def _judge_for_base(client, judge) -> int:
    """One judge leases their next task through the API and prefers the base clip everywhere."""
    client.force_login(judge)
    response = client.post("/api/pairwise/next/", {}, content_type="application/json")
    assert response.status_code == 200, response.content
    task = PairwiseTask.objects.select_related("clip_a").get(pk=response.json()["task_id"])
    base_is_a = task.clip_a.source_name == "base"
    side = "left" if base_is_a == task.a_on_left else "right"
    response = client.post(
        f"/api/pairwise/{task.pk}/judge/",
        {"choice": side, "dimensions": {"visual_motion": side, "visual_appeal": "tie"}},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return task.pk


def test_a_round_ends_with_policy_vs_base_tasks_judged_into_the_scoreboard(
    rated_round,  # noqa: F811
    client,
    capsys,
):
    # The base generator's round is closed: the evaluation step cannot generate into it.
    Round.objects.create(name=BASE_ROUND, status=Round.Status.CLOSED)
    with pytest.raises(CommandError, match="Human evaluation against the base"):
        call_command("run_round", *_args(rated_round), "--evaluate", "round")
    parent = Run.objects.get(kind=Run.Kind.ROUND)
    assert parent.status == Run.Status.FAILED
    assert f"round {BASE_ROUND!r} is closed" in parent.error
    kept = {
        key: parent.artifacts[key]
        for key in ("checkpoint_id", "generation_run_id", "next_scoring_run_id", "reward_model_id")
    }
    assert "evaluation_tasks" not in parent.artifacts and not PairwiseTask.objects.exists()

    Round.objects.filter(name=BASE_ROUND).update(status=Round.Status.OPEN)
    call_command("run_round", "--resume", str(parent.pk))
    parent.refresh_from_db()
    assert parent.status == Run.Status.SUCCEEDED, parent.error
    assert {key: parent.artifacts[key] for key in kept} == kept  # nothing before it redone
    checkpoint_id = kept["checkpoint_id"]

    # The base candidates: same conditions and seeds as the policy's, scored by the round's model.
    policy = set(
        Candidate.objects.filter(checkpoint_id=checkpoint_id).values_list(
            "clip__condition_id", "seed"
        )
    )
    base = Candidate.objects.filter(checkpoint__isnull=True)
    assert set(base.values_list("clip__condition_id", "seed")) == policy
    assert set(base.values_list("clip__round__name", "clip__source_name")) == {(BASE_ROUND, "base")}
    assert base.count() == K * CONDITIONS
    # one task per condition, three judges, policy clip against its base twin of the same seed
    tasks = list(PairwiseTask.objects.select_related("clip_a", "clip_b"))
    policy_source = f"policy:{PolicyCheckpoint.objects.get(pk=checkpoint_id).name}"
    assert len(tasks) == CONDITIONS == parent.artifacts["evaluation_tasks"]
    for task in tasks:
        assert task.judges_needed == EVALUATION_JUDGES
        assert task.clip_a.condition_id == task.clip_b.condition_id
        assert {task.clip_a.candidate.seed} == {task.clip_b.candidate.seed}
        assert sorted([task.clip_a.source_name, task.clip_b.source_name]) == [
            "base",
            policy_source,
        ]
    base_clips = [t.clip_b_id if t.clip_b.source_name == "base" else t.clip_a_id for t in tasks]
    assert ClipScore.objects.filter(
        clip_id__in=base_clips, reward_model_id=kept["reward_model_id"], error=""
    ).count() == len(base_clips)

    # Resuming again or rerunning the step creates nothing twice; the next round reuses the base.
    generations = Run.objects.filter(kind=Run.Kind.GENERATION).count()

    # Three judges prefer the base on every task, through the API.
    judges = [make_user(f"judge{i}", "annotator") for i in range(3)]
    lead = make_user("lena", "lead")
    for judge in judges:
        for _ in range(CONDITIONS):
            _judge_for_base(client, judge)
    client.force_login(lead)
    data = client.get("/api/training/scoreboard/").json()
    (evaluation,) = data["human_evaluations"]
    assert evaluation["checkpoint"]["id"] == checkpoint_id
    assert evaluation["evaluation_tasks"] == CONDITIONS and evaluation["tasks_awaiting_judges"] == 0
    by_key = {d["key"]: d for d in evaluation["dimensions"]}
    low, high = wilson_interval(0, CONDITIONS)
    for key in ("overall", "visual_motion"):  # 3 of 3 judges for the base: a loss each time
        assert (by_key[key]["wins"], by_key[key]["losses"]) == (0, CONDITIONS)
        assert by_key[key]["win_rate"] == 0 and by_key[key]["ci95"] == pytest.approx([low, high])
    # a dimension nobody judged, or judged a tie, is a tie, not a loss
    assert by_key["visual_appeal"]["ties"] == by_key["text_consistency"]["ties"] == CONDITIONS
    # the humans disagree with any rise: the alarm is up exactly where AnimeReward rose
    for d in evaluation["dimensions"]:
        assert d["scored_pairs"] == CONDITIONS
        assert d["alarm"] == (d["reward_delta"] > 0), d
    policy_row = next(r for r in data["rows"] if r["source"].startswith("policy:"))
    assert data["baseline"] == "base"
    assert policy_row["win_rate"]["tasks"] == CONDITIONS
    assert policy_row["win_rate"]["loss"]["count"] == CONDITIONS

    page = client.get("/scoreboard/").content.decode()
    assert "against the base generator" in page and "2 of 3 judges" in page
    if evaluation["alarm"]:
        assert "Reward-hacking alarm" in page and "reward hacking" in page
    client.force_login(make_user("adam", "admin"))  # run pages are for admins
    run_page = client.get(f"/runs/{parent.pk}/").content.decode()
    assert f'data-checkpoint="{checkpoint_id}"' in run_page
    assert Run.objects.filter(kind=Run.Kind.GENERATION).count() == generations
    capsys.readouterr()
