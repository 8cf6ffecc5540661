"""One command runs a round of the loop (tiny presets, eager tasks, real ffmpeg and Postgres):
export -> reward training -> scoring -> pairs -> GAPO -> generation -> import into the next round
-> scoring the candidates, as one parent run with a child run per step; a failed round resumes
from the step that failed, skipping the steps it recorded."""

import uuid
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from annotation.models import (
    Clip,
    ClipLabel,
    Condition,
    ExportSnapshot,
    ImportRow,
    Round,
)
from annotation.services.assignment import lease_next_clip
from annotation.services.ratings import submit_rating
from runs import services as runs
from runs.models import Run
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.models import ClipScore, RewardModel
from tests.conftest import make_user, store_file
from tests.lead_data import sha
from training.models import Candidate, PolicyCheckpoint
from training.services.loop import launch_round

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.usefixtures("two_threads"),
]
CONDITIONS, PER_CONDITION, K = 3, 2, 2
CHILD_KINDS = ["reward_training", "scoring", "pairs", "gapo", "generation", "scoring"]


@pytest.fixture
def rated_round(tmp_path):
    """Round 1: CONDITIONS conditions x PER_CONDITION real clips, each rated once by a person."""
    round_ = Round.objects.create(name="loop-r1", ratings_per_clip=1)
    rater = make_user("rita", "annotator")
    labels = {}
    synthetic = make_labelled_clips(tmp_path / "clips", CONDITIONS * PER_CONDITION, seed=3)
    for c in range(CONDITIONS):
        first = synthetic[c * PER_CONDITION]
        condition = Condition.objects.create(
            content_hash=sha(f"cond{c}"),
            image=store_file(first.condition_image_path, f"conditions/c{c}.png"),
            image_sha256=sha(f"image{c}"),
            prompt=f"{first.prompt} (condition {c})",
            prompt_sha256=sha(f"prompt{c}"),
        )
        for item in synthetic[c * PER_CONDITION : (c + 1) * PER_CONDITION]:
            video = store_file(item.video_path, f"clips/v{item.index}.mp4")
            clip = Clip.objects.create(
                round=round_,
                condition=condition,
                source_kind=Clip.SourceKind.EXTERNAL,
                source_name="toy",
                original=video,
                original_sha256=sha(f"orig{item.index}"),
                video=video,
                status=Clip.Status.READY,
                target_ratings=1,
            )
            labels[clip.pk] = {k: min(5, max(1, round(v))) for k, v in item.labels.items()}
    while (lease := lease_next_clip(round_id=round_.pk, annotator=rater)) is not None:
        submit_rating(
            clip_id=lease.clip_id,
            annotator=rater,
            scores=labels[lease.clip_id],
            idempotency_key=uuid.uuid4(),
        )
    assert ClipLabel.objects.filter(clip__round=round_, count=1).count() == len(labels)
    return round_


def _args(round_: Round, next_round: str = "loop-r2") -> list[str]:
    return [
        "--round",
        str(round_.pk),
        "--train-reward",
        "--reward-epochs",
        "2",
        "--test-fraction",
        "0.34",
        "--steps",
        "2",
        "--candidates",
        str(K),
        "--next-round",
        next_round,
    ]


def _assert_round_done(parent: Run, round_: Round) -> None:
    parent.refresh_from_db()
    assert parent.status == Run.Status.SUCCEEDED, parent.error
    children = list(parent.children.order_by("pk"))
    assert [c.kind for c in children] == CHILD_KINDS
    assert all(c.status == Run.Status.SUCCEEDED for c in children)
    a = parent.artifacts
    snapshot = ExportSnapshot.objects.get(pk=a["snapshot_id"])
    assert snapshot.status == ExportSnapshot.Status.READY
    assert snapshot.params["round_ids"] == [round_.pk]
    reward_model = RewardModel.objects.get(pk=a["reward_model_id"])
    assert reward_model.run_id == children[0].pk
    checkpoint = PolicyCheckpoint.objects.get(pk=a["checkpoint_id"])
    assert checkpoint.run_id == children[3].pk and a["training_run_id"] == children[3].pk
    assert a["pairs"] >= 1
    next_round = Round.objects.get(name="loop-r2")
    assert a["next_round_id"] == next_round.pk
    # generation fanned out into chunks (2 conditions each), each importing what it made
    generation = Run.objects.get(pk=a["generation_run_id"])
    chunks = list(generation.children.order_by("pk"))
    assert [c.params["condition_ids"].__len__() for c in chunks] == [2, 1]
    assert {c.kind for c in chunks} == {Run.Kind.GENERATION_CHUNK}
    batch_ids = [b for c in chunks for b in c.artifacts["import_batch_ids"]]
    rows = ImportRow.objects.filter(batch_id__in=batch_ids)
    clips = Clip.objects.filter(round=next_round)
    assert set(rows.values_list("status", flat=True)) == {ImportRow.Status.OK}
    assert sorted(rows.values_list("clip_id", flat=True)) == sorted(
        clips.values_list("pk", flat=True)
    )
    # exactly K candidates per condition, all playable, all from the new policy
    assert clips.count() == K * CONDITIONS == a["next_round_clips"]
    assert set(clips.values_list("status", flat=True)) == {Clip.Status.READY}
    conditions = set(Clip.objects.filter(round=round_).values_list("condition_id", flat=True))
    assert Counter(clips.values_list("condition_id", flat=True)) == dict.fromkeys(conditions, K)
    assert set(
        Candidate.objects.filter(clip__in=clips).values_list("checkpoint_id", flat=True)
    ) == {checkpoint.pk}
    assert set(clips.values_list("source_name", flat=True)) == {f"policy:{checkpoint.name}"}
    # the new candidates are scored by the round's reward model (the scoreboard's yardstick)
    assert (
        ClipScore.objects.filter(clip__in=clips, reward_model=reward_model, error="").count()
        == K * CONDITIONS
    )
    assert parent.step == parent.total_steps == 100


def test_run_round_chains_every_step_into_the_next_round(rated_round, capsys):
    call_command("run_round", *_args(rated_round))
    out = capsys.readouterr()
    parent = Run.objects.get(kind=Run.Kind.ROUND)
    _assert_round_done(parent, rated_round)
    printed = out.out
    assert f"round run {parent.pk} succeeded" in printed
    for label in ("Export labels", "Reward training", "Policy training", "Generate and import"):
        assert label in printed
    assert f"{K * CONDITIONS} clips, {K * CONDITIONS} ready for annotators" in printed
    assert "step 6/7 Generate and import" in printed  # the bar's messages


def test_bad_round_parameters_are_refused_before_anything_runs(rated_round):
    with pytest.raises(CommandError, match="give --reward-model ID or --train-reward"):
        call_command("run_round", "--round", str(rated_round.pk), "--next-round", "x")
    with pytest.raises(CommandError, match="next_round must be a different round"):
        call_command("run_round", *_args(rated_round, next_round="loop-r1"))
    with pytest.raises(CommandError, match="reward model 999 does not exist"):
        call_command(
            "run_round", "--round", "loop-r1", "--reward-model", "999", "--next-round", "x"
        )
    assert not Run.objects.exists()


def test_a_failed_round_resumes_from_its_failed_step(rated_round, capsys):
    """A lead closes the target round while the policy trains: generation fails, the round fails
    with the reason; reopened and resumed, the round skips export, reward training, scoring,
    pairs and training (their outputs are recorded) and finishes."""
    parent = launch_round(
        params={
            "round_id": rated_round.pk,
            "next_round": "loop-r2",
            "train_reward": True,
            "reward_epochs": 2,
            "test_fraction": 0.34,
            "steps": 2,
            "candidates": K,
        },
        send=False,
    )

    def close_target_during_training(step, total, metrics=None, message=""):
        if "Policy training:" in message:
            Round.objects.update_or_create(name="loop-r2", defaults={"status": Round.Status.CLOSED})

    runs.execute_run(parent.pk, on_progress=close_target_during_training)
    parent.refresh_from_db()
    assert parent.status == Run.Status.FAILED
    assert "step 6/7 (Generate and import) cannot start: round 'loop-r2' is closed" in parent.error
    done = {k: parent.artifacts[k] for k in ("snapshot_id", "reward_model_id", "checkpoint_id")}
    assert "generation_run_id" not in parent.artifacts
    before = list(parent.children.order_by("pk").values_list("pk", "kind", "status"))
    assert [kind for _, kind, _ in before] == CHILD_KINDS[:4]

    Round.objects.filter(name="loop-r2").update(status=Round.Status.OPEN)
    call_command("run_round", "--resume", str(parent.pk))
    out = capsys.readouterr().out
    assert "steps already done are skipped" in out
    parent.refresh_from_db()
    assert {k: parent.artifacts[k] for k in done} == done  # nothing redone
    assert ExportSnapshot.objects.count() == 1 and RewardModel.objects.count() == 1
    assert PolicyCheckpoint.objects.count() == 1
    after = list(parent.children.order_by("pk").values_list("pk", "kind", "status"))
    assert after[:4] == before  # the first four children untouched, none added for them
    _assert_round_done(parent, rated_round)
    assert "done already, skipped" in parent.log_tail

    with pytest.raises(CommandError, match="only a failed or cancelled round resumes"):
        call_command("run_round", "--resume", str(parent.pk))
