"""The demo's closed loop, on the rated demo round, launched and followed the way a user does it:
one round of the loop (``training.services.loop.launch_round``: export -> AnimeReward -> scores
-> pairs -> GAPO -> candidates generated into the next round -> their scores) on the ``gpu``
worker, followed by the caller; then pairwise tasks for the judge page.

Idempotent: a round run that already succeeded is not launched again, one still queued or
running is followed, a failed one is resumed (its finished steps are skipped), so a second
``make demo`` adds nothing. Sizes are the smallest that still show real numbers: tiny presets,
a few epochs and steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotation.demo import DEMO_ROUND, hash_text
from annotation.models import Clip, PairwiseTask, Round
from annotation.services.pairwise import create_pairwise_tasks, lease_next_pair, submit_judgement
from labelhub.roles import ANNOTATOR
from runs.models import Run
from training.models import PolicyCheckpoint
from training.services.loop import launch_round, resume_round

Status = Run.Status

NEXT_ROUND = "demo-round-2"
REWARD_MODEL_NAME = "demo-animereward"
CHECKPOINT_NAME = "demo-gapo"
ROUND_PARAMS = {
    "next_round": NEXT_ROUND,
    "train_reward": True,
    "reward_epochs": 10,
    "test_fraction": 0.25,  # of the 12 demo conditions, 3 held out whole for evaluation
    "steps": 8,  # GAPO steps
    "candidates": 2,  # two per condition: round 2 can be paired in its turn
    "seed": 0,
    "reward_model_name": REWARD_MODEL_NAME,
    "checkpoint_name": CHECKPOINT_NAME,
    # the last step: demo-gapo against the base generator on the 3 held-out conditions
    "evaluate": "held_out",
}
JUDGED_SOURCES = ("hailuo", "vidu")  # the judge page compares two made-up generators
PAIRWISE_BATCH = "demo"
LAUNCHED_BY = "admin"  # the demo admin (seed_demo), shown as the runs' launcher


@dataclass
class DemoLoop:
    round_id: int
    round_run_id: int
    snapshot_id: int
    reward_model_id: int
    checkpoint_id: int
    next_round_id: int
    pairwise_tasks: int


Follow = Callable[[Run], Run]
Say = Callable[[str], None]


def run_demo_loop(*, follow: Follow, say: Say) -> DemoLoop:
    """Close the loop once on the rated demo round (see the module docstring)."""
    round_ = Round.objects.filter(name=DEMO_ROUND).first()
    if round_ is None or not round_.clips.filter(label__count__gt=0).exists():
        raise RuntimeError(f"round {DEMO_ROUND!r} has no rated clips yet: run seed_demo first")

    run = (
        Run.objects.filter(
            kind=Run.Kind.ROUND, params__round_id=round_.pk, params__next_round=NEXT_ROUND
        )
        .order_by("-pk")
        .first()
    )
    if run is not None and run.status == Status.SUCCEEDED:
        say(f"round: run {run.pk} already succeeded")
    else:
        if run is None:
            admin = get_user_model().objects.filter(username=LAUNCHED_BY).first()
            run = launch_round(params={"round_id": round_.pk, **ROUND_PARAMS}, created_by=admin)
            say(f"round: launched run {run.pk} on the gpu queue")
        elif run.status in (Status.FAILED, Status.CANCELLED):
            run = resume_round(run_id=run.pk)
            say(f"round: resuming run {run.pk}: steps already done are skipped")
        else:
            say(f"round: following run {run.pk} ({run.status})")
        run = follow(run)
    a = run.artifacts
    next_round = Round.objects.get(pk=a["next_round_id"])
    ready = next_round.clips.filter(status=Clip.Status.READY).count()
    say(f"round {next_round.name!r} (id {next_round.pk}): {ready} generated candidates to rate")

    created = create_pairwise_tasks(
        source_a=JUDGED_SOURCES[0],
        source_b=JUDGED_SOURCES[1],
        round_ids=[round_.pk],
        batch=PAIRWISE_BATCH,
    )
    tasks = PairwiseTask.objects.filter(batch=PAIRWISE_BATCH).count()
    say(f"pairwise: {len(created)} new task(s), {tasks} {' vs '.join(JUDGED_SOURCES)} in all")
    judge_evaluation(checkpoint_id=a["checkpoint_id"], say=say)
    return DemoLoop(
        round_id=round_.pk,
        round_run_id=run.pk,
        snapshot_id=a["snapshot_id"],
        reward_model_id=a["reward_model_id"],
        checkpoint_id=a["checkpoint_id"],
        next_round_id=next_round.pk,
        pairwise_tasks=tasks,
    )


# --- the human evaluation's judges (issue 21) ---------------------------------------------------

DEMO_JUDGES = ("demo-rater-1", "demo-rater-2", "demo-rater-3")


def judge_evaluation(*, checkpoint_id: int, say: Say) -> int:
    """Three demo judges answer the round's checkpoint-vs-base tasks through the judging service,
    so the scoreboard's win rate has a point. The tiny generator's candidates are noise on both
    sides, so a demo judge's choice is a hash of (judge, task): a real verdict needs real judges.
    Returns the judgements added (none when run again)."""
    name = PolicyCheckpoint.objects.get(pk=checkpoint_id).name
    batch = PairwiseTask.objects.filter(batch=f"{name} vs base")
    others = list(PairwiseTask.objects.exclude(pk__in=batch).values_list("pk", flat=True))
    added = 0
    for username in DEMO_JUDGES:
        judge, _ = get_user_model().objects.get_or_create(username=username)
        judge.groups.add(Group.objects.get_or_create(name=ANNOTATOR)[0])
        while (lease := lease_next_pair(judge=judge, exclude=others)) is not None:
            side = ("left", "right", "tie")[hash_text(f"{username}|{lease.task_id}") % 3]
            submit_judgement(task_id=lease.task_id, judge=judge, side=side)
            added += 1
    say(f"evaluation: {batch.count()} {name}-vs-base task(s), {added} new demo judgement(s)")
    return added
