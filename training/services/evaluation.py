"""The human evaluation step of a round: did the new policy beat the base generator, by humans?

For the evaluated conditions (the held-out conditions of the round's export snapshot, or all of
the round's conditions) each policy candidate is paired with the base generator's candidate of
the same condition and the same seed, and one pairwise task per condition (the smallest seed
both have) goes to three judges, sides shuffled per task. The base generator's candidates are
generated once, into their own round (``BASE_ROUND``), and reused by every later round: the
generation skips a (condition, seed) already there. They are scored with the round's reward
model so the scoreboard can set the reward's view beside the judges' (the reward-hacking alarm,
``training.selectors.human_evaluation``).

A step that cannot get its base candidates fails with the reason; the round's other steps keep
their recorded outputs, and a resume redoes only this step. Torch-free.
"""

from __future__ import annotations

from annotation.models import Clip, ExportSnapshot
from annotation.selectors.exports import iter_snapshot_rows
from annotation.services.pairwise import create_tasks_for_clip_pairs
from runs import services as runs
from runs.models import Run
from scoring import services as scoring
from scoring.models import ClipScore, RewardModel
from training.models import Candidate, PolicyCheckpoint
from training.services.launch import validate_params

BASE_ROUND = "base-candidates"  # the base generator's candidates, shared by every round
SCOPES = ("held_out", "round")  # which conditions a round's evaluation uses
EVALUATION_JUDGES = 3  # a win or a loss needs 2 of 3 (annotation.selectors.pairwise.MAJORITY)


class EvaluationError(ValueError):
    """The evaluation step cannot go on; the message says why."""


def evaluation_conditions(*, round_id: int, scope: str, snapshot_id: int | None) -> list[int]:
    """The condition ids a round's evaluation uses: the round's conditions that the snapshot
    held out (``held_out``), or all of the round's conditions (``round``)."""
    if scope not in SCOPES:
        raise EvaluationError(f"evaluate must be one of {', '.join(SCOPES)}, not {scope!r}")
    in_round = set(Clip.objects.filter(round_id=round_id).values_list("condition_id", flat=True))
    if scope == "round":
        return sorted(in_round)
    snapshot = ExportSnapshot.objects.filter(pk=snapshot_id).first() if snapshot_id else None
    if snapshot is None:
        raise EvaluationError(
            "held-out conditions come from an export snapshot, and this round has none (its "
            "reward model names no snapshot): evaluate on the round's conditions instead"
        )
    held_out = {row["condition_id"] for row in iter_snapshot_rows(snapshot, split="test")}
    chosen = sorted(in_round & held_out)
    if not chosen:
        raise EvaluationError(
            f"snapshot {snapshot.pk} holds out none of round {round_id}'s conditions (test "
            "fraction 0?): evaluate on the round's conditions instead"
        )
    return chosen


def policy_vs_base_pairs(
    *, checkpoint_id: int, condition_ids: list[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per condition, (policy clip, base clip) of the smallest seed the policy has there; and the
    (condition, seed) whose base candidate is missing. Only ready clips count."""
    policy: dict[int, tuple[int, int]] = {}  # condition -> (seed, clip) with the smallest seed
    for clip_id, condition_id, seed in Candidate.objects.filter(
        checkpoint_id=checkpoint_id,
        clip__condition_id__in=condition_ids,
        clip__status=Clip.Status.READY,
    ).values_list("clip_id", "clip__condition_id", "seed"):
        if condition_id not in policy or (seed, clip_id) < policy[condition_id]:
            policy[condition_id] = (seed, clip_id)
    base: dict[tuple[int, int], int] = {}
    for clip_id, condition_id, seed in (
        Candidate.objects.filter(
            checkpoint__isnull=True,
            clip__condition_id__in=list(policy),
            clip__status=Clip.Status.READY,
        )
        .order_by("clip_id")
        .values_list("clip_id", "clip__condition_id", "seed")
    ):
        base.setdefault((condition_id, seed), clip_id)
    pairs, missing = [], []
    for condition_id, (seed, clip_id) in sorted(policy.items()):
        if (condition_id, seed) in base:
            pairs.append((clip_id, base[(condition_id, seed)]))
        else:
            missing.append((condition_id, seed))
    return pairs, missing


def run_evaluation_step(state, step, *, reward_model_id: int) -> None:
    """The round's evaluation step (``state``: the round's execution, ``training.services.loop``):
    base candidates (generated when missing, then scored), then the policy-vs-base tasks."""
    p, artifacts = state.params, state.artifacts
    checkpoint = PolicyCheckpoint.objects.get(pk=artifacts["checkpoint_id"])
    snapshot_id = artifacts.get("snapshot_id")
    if snapshot_id is None:
        snapshot_id = RewardModel.objects.get(pk=reward_model_id).config.get("snapshot_id")
    conditions = evaluation_conditions(
        round_id=p["round_id"], scope=p["evaluate"], snapshot_id=snapshot_id
    )
    pairs, missing = policy_vs_base_pairs(checkpoint_id=checkpoint.pk, condition_ids=conditions)
    if missing:
        state.say(f"  base candidates missing for {len(missing)} conditions: generating them")
        params = validate_params(
            Run.Kind.GENERATION,
            {
                "source_round_id": p["round_id"],
                "target_round": BASE_ROUND,
                "checkpoint_id": None,  # the base generator
                "candidates_per_condition": p["candidates"],
                "base_seed": p["seed"],  # the seeds the policy's candidates used
            },
        )
        child = runs.create_run(
            kind=Run.Kind.GENERATION, params=params, created_by=state.run.created_by
        )
        state.execute(step, child)
        pairs, missing = policy_vs_base_pairs(checkpoint_id=checkpoint.pk, condition_ids=conditions)
        if missing:
            raise EvaluationError(
                f"the base generator's candidates are still missing for {len(missing)} "
                f"(condition, seed): {missing[:5]}"
            )
    if not pairs:
        raise EvaluationError(
            f"{checkpoint.name} has no ready candidates on the {len(conditions)} evaluated conditions"
        )
    base_clips = [base for _policy, base in pairs]
    scored = set(
        ClipScore.objects.filter(
            reward_model_id=reward_model_id, clip_id__in=base_clips, error=""
        ).values_list("clip_id", flat=True)
    )
    if set(base_clips) - scored:
        child = scoring.request_scoring(
            reward_model_id=reward_model_id,
            clip_ids=sorted(set(base_clips) - scored),
            created_by=state.run.created_by,
            enqueue=False,
        )
        state.execute(step, child)
    tasks = create_tasks_for_clip_pairs(
        clip_pairs=pairs, judges_needed=EVALUATION_JUDGES, batch=f"{checkpoint.name} vs base"
    )
    state.say(
        f"  {len(tasks)} {checkpoint.name}-vs-base tasks on {len(conditions)} conditions "
        f"({p['evaluate'].replace('_', '-')}), {EVALUATION_JUDGES} judges each: /pairwise/"
    )
    state.record(evaluation_tasks=len(tasks), evaluation_conditions=len(conditions))
