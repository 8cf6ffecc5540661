"""The demo's closed loop, on the rated demo round: export -> AnimeReward -> scores -> pairs ->
GAPO -> policy checkpoint -> candidates generated into the next round, plus pairwise tasks for the
judge page. Every step goes through the same services as the Training runs page; the runs execute
on the ``gpu`` worker and ``follow`` (the caller's) waits for each one.

Idempotent: a step whose run already succeeded (found by its parameters) is skipped, one still
queued or running is followed instead of launched again, so a second ``make demo`` adds nothing.
Sizes are the smallest that still show real numbers: tiny presets, a few epochs and steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotation.demo import DEMO_ROUND, hash_text
from annotation.models import Clip, ExportSnapshot, PairwiseTask, Round
from annotation.services.exports import create_snapshot
from annotation.services.pairwise import (
    create_pairwise_tasks,
    create_tasks_for_clip_pairs,
    lease_next_pair,
    submit_judgement,
)
from labelhub.roles import ANNOTATOR
from runs.models import TrainingRun
from scoring.models import RewardModel
from scoring.services import request_reward_training, request_scoring
from training.models import PolicyCheckpoint, PreferencePair
from training.services import evaluation
from training.services.launch import launch_run

Kind = TrainingRun.Kind
Status = TrainingRun.Status

NEXT_ROUND = "demo-round-2"
REWARD_MODEL_NAME = "demo-animereward"
CHECKPOINT_NAME = "demo-gapo"
TEST_FRACTION = 0.25  # of the 12 demo conditions, 3 held out whole for evaluation
REWARD_CONFIG = {"epochs": 10, "seed": 0}
GAPO_PARAMS = {"max_steps": 8, "lora_rank": 4, "checkpoint_every": 4, "log_every": 1}
CANDIDATES_PER_CONDITION = 2  # two per condition: round 2 can be paired in its turn
INFERENCE_STEPS = 4  # half the tiny preset's: noise either way, twice as fast
JUDGED_SOURCES = ("hailuo", "vidu")  # the judge page compares two made-up generators
PAIRWISE_BATCH = "demo"
LAUNCHED_BY = "admin"  # the demo admin (seed_demo), shown as the runs' launcher


@dataclass
class DemoLoop:
    round_id: int
    snapshot_id: int
    reward_model_id: int
    checkpoint_id: int
    next_round_id: int
    pairwise_tasks: int


Follow = Callable[[TrainingRun], TrainingRun]
Say = Callable[[str], None]


def _existing(kind: str, match: dict) -> TrainingRun | None:
    """The newest run of ``kind`` whose params contain ``match`` and that did not fail."""
    return (
        TrainingRun.objects.filter(kind=kind, params__contains=match)
        .exclude(status__in=(Status.FAILED, Status.CANCELLED))
        .order_by("-pk")
        .first()
    )


def _once(kind: str, match: dict, launch: Callable[[], TrainingRun], follow: Follow, say: Say):
    """The succeeded run of this step: found, followed to its end, or launched and followed."""
    run = _existing(kind, match)
    if run is not None and run.status == Status.SUCCEEDED:
        say(f"{kind}: run {run.pk} already succeeded")
        return run
    if run is None:
        run = launch()
        say(f"{kind}: launched run {run.pk} on the gpu queue")
    else:
        say(f"{kind}: following run {run.pk} ({run.status})")
    return follow(run)


def demo_snapshot(round_: Round, say: Say) -> ExportSnapshot:
    """The demo round's export (grouped split, a quarter of the conditions held out)."""
    snapshot = (
        ExportSnapshot.objects.filter(
            status=ExportSnapshot.Status.READY,
            params__round_ids=[round_.pk],
            params__test_fraction=TEST_FRACTION,
        )
        .order_by("pk")
        .first()
    )
    if snapshot is None:
        snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=TEST_FRACTION, seed=0)
        say(
            f"export: snapshot {snapshot.pk}, {snapshot.row_counts['train']} train / "
            f"{snapshot.row_counts['test']} test clips"
        )
    if not snapshot.row_counts.get("test"):
        raise RuntimeError(f"snapshot {snapshot.pk} holds no test clips; rate more conditions")
    return snapshot


def run_demo_loop(*, follow: Follow, say: Say) -> DemoLoop:
    """Close the loop once on the rated demo round (see the module docstring)."""
    round_ = Round.objects.filter(name=DEMO_ROUND).first()
    if round_ is None or not round_.clips.filter(label__count__gt=0).exists():
        raise RuntimeError(f"round {DEMO_ROUND!r} has no rated clips yet: run seed_demo first")

    admin = get_user_model().objects.filter(username=LAUNCHED_BY).first()
    reward_model = RewardModel.objects.filter(name=REWARD_MODEL_NAME).first()
    snapshot_id = reward_model.config["snapshot_id"] if reward_model else None
    if reward_model is None:
        snapshot = demo_snapshot(round_, say)
        snapshot_id = snapshot.pk
        run = _once(
            Kind.REWARD_TRAINING,
            {"name": REWARD_MODEL_NAME},
            lambda: request_reward_training(
                snapshot_id=snapshot.pk,
                name=REWARD_MODEL_NAME,
                config=REWARD_CONFIG,
                created_by=admin,
            ),
            follow,
            say,
        )
        reward_model = RewardModel.objects.get(pk=run.artifacts["reward_model_id"])
    else:
        say(f"reward model {reward_model.pk} ({reward_model.name}) exists")

    _once(
        Kind.SCORING,
        {"reward_model_id": reward_model.pk, "round_id": round_.pk},
        lambda: request_scoring(
            reward_model_id=reward_model.pk, round_id=round_.pk, created_by=admin
        ),
        follow,
        say,
    )
    pair_source = {
        "round_id": round_.pk,
        "origin": PreferencePair.Origin.REWARD_MODEL,
        "reward_model_id": reward_model.pk,
    }
    _once(
        Kind.PAIRS,
        pair_source,
        lambda: launch_run(kind=Kind.PAIRS, params=pair_source, created_by=admin),
        follow,
        say,
    )

    checkpoint = PolicyCheckpoint.objects.filter(name=CHECKPOINT_NAME).first()
    if checkpoint is None:
        run = _once(
            Kind.GAPO,
            {"checkpoint_name": CHECKPOINT_NAME},
            lambda: launch_run(
                kind=Kind.GAPO,
                params={**pair_source, "checkpoint_name": CHECKPOINT_NAME, **GAPO_PARAMS},
                created_by=admin,
            ),
            follow,
            say,
        )
        checkpoint = PolicyCheckpoint.objects.get(pk=run.artifacts["policy_checkpoint_id"])
    else:
        say(f"policy checkpoint {checkpoint.pk} ({checkpoint.name}) exists")

    generation = {"target_round": NEXT_ROUND, "checkpoint_id": checkpoint.pk}
    _once(
        Kind.GENERATION,
        generation,
        lambda: launch_run(
            kind=Kind.GENERATION,
            params={
                **generation,
                "source_round_id": round_.pk,
                "candidates_per_condition": CANDIDATES_PER_CONDITION,
                "inference_steps": INFERENCE_STEPS,
            },
            created_by=admin,
        ),
        follow,
        say,
    )
    next_round = Round.objects.get(name=NEXT_ROUND)
    ready = next_round.clips.filter(status=Clip.Status.READY).count()
    say(f"round {next_round.name!r} (id {next_round.pk}): {ready} generated candidates to rate")
    # The scoreboard compares rounds with the same yardstick: score the candidates too.
    _once(
        Kind.SCORING,
        {"reward_model_id": reward_model.pk, "round_id": next_round.pk},
        lambda: request_scoring(
            reward_model_id=reward_model.pk, round_id=next_round.pk, created_by=admin
        ),
        follow,
        say,
    )

    created = create_pairwise_tasks(
        source_a=JUDGED_SOURCES[0],
        source_b=JUDGED_SOURCES[1],
        round_ids=[round_.pk],
        batch=PAIRWISE_BATCH,
    )
    tasks = PairwiseTask.objects.filter(batch=PAIRWISE_BATCH).count()
    say(f"pairwise: {len(created)} new task(s), {tasks} {' vs '.join(JUDGED_SOURCES)} in all")
    evaluate_against_base(round_, snapshot_id, reward_model, checkpoint, admin, follow, say)
    return DemoLoop(
        round_id=round_.pk,
        snapshot_id=snapshot_id,
        reward_model_id=reward_model.pk,
        checkpoint_id=checkpoint.pk,
        next_round_id=next_round.pk,
        pairwise_tasks=tasks,
    )


# --- human evaluation of the checkpoint against the base generator (issue 21) ----------------------

DEMO_JUDGES = ("demo-rater-1", "demo-rater-2", "demo-rater-3")


def evaluate_against_base(round_, snapshot_id, reward_model, checkpoint, admin, follow, say):
    """What ``run_round --evaluate`` does, step by step through the same services: the base
    generator's candidates (same seeds, into their own round), scored; one checkpoint-vs-base task
    per held-out condition; then three demo judges answer them so the scoreboard has a point.
    The tiny generator's candidates are noise either way, so the demo judges choose by a hash of
    (judge, task): a real verdict needs real judges."""
    base = {"target_round": evaluation.BASE_ROUND, "checkpoint_id": None}
    _once(
        Kind.GENERATION,
        base,
        lambda: launch_run(
            kind=Kind.GENERATION,
            params={
                **base,
                "source_round_id": round_.pk,
                "candidates_per_condition": CANDIDATES_PER_CONDITION,
                "inference_steps": INFERENCE_STEPS,
            },
            created_by=admin,
        ),
        follow,
        say,
    )
    base_round = Round.objects.get(name=evaluation.BASE_ROUND)
    _once(
        Kind.SCORING,
        {"reward_model_id": reward_model.pk, "round_id": base_round.pk},
        lambda: request_scoring(
            reward_model_id=reward_model.pk, round_id=base_round.pk, created_by=admin
        ),
        follow,
        say,
    )
    conditions = evaluation.evaluation_conditions(
        round_id=round_.pk, scope="held_out", snapshot_id=snapshot_id
    )
    pairs, _missing = evaluation.policy_vs_base_pairs(
        checkpoint_id=checkpoint.pk, condition_ids=conditions
    )
    tasks = create_tasks_for_clip_pairs(
        clip_pairs=pairs,
        judges_needed=evaluation.EVALUATION_JUDGES,
        batch=f"{checkpoint.name} vs base",
    )
    others = list(
        PairwiseTask.objects.exclude(pk__in=[t.pk for t in tasks]).values_list("pk", flat=True)
    )
    judged = 0
    for username in DEMO_JUDGES:
        judge, _ = get_user_model().objects.get_or_create(username=username)
        judge.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
        while (lease := lease_next_pair(judge=judge, exclude=others)) is not None:
            side = ("left", "right", "tie")[hash_text(f"{username}|{lease.task_id}") % 3]
            submit_judgement(task_id=lease.task_id, judge=judge, side=side)
            judged += 1
    say(f"evaluation: {len(tasks)} {checkpoint.name}-vs-base task(s), {judged} new judgement(s)")
