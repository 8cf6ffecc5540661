"""One round of the loop as one run: export -> reward training (or a given reward model) ->
scoring -> preference pairs -> GAPO/DPO/SFT -> generation -> import into the next round ->
scoring the new candidates.

The round is a parent run (kind "round") whose job executes each step as a child run in its own
process: a gpu worker runs one task at a time, so a parent that enqueued its children and waited
would wait for itself. Each step's output (snapshot id, reward model id, checkpoint id, import
batch id, ...) is recorded on the parent's artifacts as soon as the step succeeds; requeueing a
failed or cancelled round runs it again and skips every step whose output is recorded, so it
resumes from the step that failed (a training step that wrote a checkpoint continues from it).

Torch-free: the children's job functions load the ML core when they execute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from annotation.models import Clip, ClipLabel, ExportSnapshot, Round
from annotation.services.exports import build_snapshot, request_snapshot
from labelhub.progress import Progress
from runs import services as runs
from runs.models import Run
from scoring import services as scoring
from scoring.anime_reward.config import RewardTrainConfig
from scoring.models import RewardModel
from training.alignment.config import TrainConfig
from training.models import Candidate, PolicyCheckpoint, PreferencePair
from training.services import evaluation
from training.services.launch import (
    TRAINING_KINDS,
    InvalidParams,
    validate_gpus,
    validate_params,
)

Kind = Run.Kind
Status = Run.Status
LOSSES = tuple(str(k) for k in TRAINING_KINDS)
PERCENT = 100  # the parent's progress: percent of the round, each step an equal share


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    output: str  # the artifact that proves the step is done (then a resume skips it)


STEPS = (
    Step("export", "Export labels", "snapshot_id"),
    Step("reward_training", "Reward training", "reward_model_id"),
    Step("scoring", "Score the round", "scoring_run_id"),
    Step("pairs", "Preference pairs", "pairs_run_id"),
    Step("training", "Policy training", "checkpoint_id"),
    Step("generation", "Generate and import", "generation_run_id"),
    Step("scoring_next", "Score the new candidates", "next_scoring_run_id"),
    Step("evaluation", "Human evaluation against the base", "evaluation_tasks"),
)
STEP_BY_KEY = {step.key: step for step in STEPS}


class StepFailed(RuntimeError):
    """A step of the round did not succeed; the round fails and can be resumed from it."""


def plan(params: dict) -> list[Step]:
    """The steps a round with ``params`` runs, in order (no export or reward training when a
    reward model was given)."""
    skip = {"export", "reward_training"} if params.get("reward_model_id") else set()
    if not params.get("evaluate"):
        skip.add("evaluation")
    return [step for step in STEPS if step.key not in skip]


# --- launching --------------------------------------------------------------------------------


def _int(params: dict, key: str, default=None, *, low: int | None = None, high: int | None = None):
    value = params.pop(key, default)
    if value in (None, ""):
        return default
    try:
        value = int(value)
    except (TypeError, ValueError) as error:
        raise InvalidParams(f"{key} must be an integer, got {value!r}") from error
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidParams(f"{key} must be in {low}..{high}, got {value}")
    return value


def validate_round_params(params: dict) -> dict:
    """Clean the parameters of a round; InvalidParams names the bad field and why.

    ``round_id`` (rated round), ``next_round`` (name; created if new), one of ``reward_model_id``
    or ``train_reward``, ``loss`` (gapo/dpo/sft), ``steps``, ``candidates`` (K per condition);
    optional ``init_checkpoint_id`` (default: the policy that generated most of the round),
    ``reward_epochs``, ``reward_objective``, ``test_fraction``, ``seed``, ``chunk_conditions``
    (generation) and ``chunk_clips`` (scoring): how much work each gpu task of a fanned-out step
    takes; ``evaluate`` (``held_out`` or ``round``: end with policy-vs-base pairwise tasks on those
    conditions).
    """
    params = dict(params or {})
    round_id = _int(params, "round_id")
    if round_id is None:
        raise InvalidParams("round_id is required")
    round_ = Round.objects.filter(pk=round_id).first()
    if round_ is None:
        raise InvalidParams(f"round {round_id} does not exist")
    next_round = str(params.pop("next_round", "") or "").strip()
    if not next_round:
        raise InvalidParams(
            "next_round (the name of the round that receives the candidates) is required"
        )
    if next_round == round_.name:
        raise InvalidParams("next_round must be a different round from the one trained on")
    target = Round.objects.filter(name=next_round).first()
    if target is not None and target.status != Round.Status.OPEN:
        raise InvalidParams(f"round {next_round!r} is closed")

    reward_model_id = _int(params, "reward_model_id")
    train_reward = params.pop("train_reward", False) in (True, "1", "true", "on", 1)
    if (reward_model_id is None) == (not train_reward):
        raise InvalidParams("give either reward_model_id or train_reward, not both or neither")
    if reward_model_id is not None and not RewardModel.objects.filter(pk=reward_model_id).exists():
        raise InvalidParams(f"reward model {reward_model_id} does not exist")
    if not Clip.objects.filter(round=round_, status=Clip.Status.READY).exists():
        raise InvalidParams(f"round {round_.name!r} has no ready clips")
    if train_reward:
        labelled = ClipLabel.objects.filter(clip__round=round_, count__gt=0).count()
        if labelled < 2:
            raise InvalidParams(
                f"round {round_.name!r} has {labelled} rated clips; reward training needs "
                "rated clips (or give reward_model_id)"
            )

    loss = str(params.pop("loss", "gapo") or "gapo")
    if loss not in LOSSES:
        raise InvalidParams(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    cleaned = {
        "round_id": round_id,
        "next_round": next_round,
        "reward_model_id": reward_model_id,
        "train_reward": train_reward,
        "loss": loss,
        "steps": _int(params, "steps", 1000, low=1, high=10_000_000),
        "candidates": _int(params, "candidates", 4, low=1, high=64),
        "init_checkpoint_id": _int(params, "init_checkpoint_id"),
        "reward_epochs": _int(params, "reward_epochs", low=1, high=100_000),
        "reward_objective": str(params.pop("reward_objective", "") or "regression"),
        "seed": _int(params, "seed", 0),
        # How generation and scoring fan out over the gpu workers (None: the runs' defaults).
        "chunk_conditions": _int(params, "chunk_conditions", low=1, high=10_000),
        "chunk_clips": _int(params, "chunk_clips", low=1, high=1_000_000),
        # Policy (and heads-only reward) training on this many GPUs of one host; the whole round
        # then goes to the queue of workers that own that many (generation and scoring still fan out).
        "gpus": validate_gpus(params.pop("gpus", None)),
        # Names of the round's outputs (defaults: named after their runs).
        "reward_model_name": str(params.pop("reward_model_name", "") or "").strip(),
        "checkpoint_name": str(params.pop("checkpoint_name", "") or "").strip(),
        "evaluate": str(params.pop("evaluate", "") or ""),
    }
    if cleaned["evaluate"] not in ("", *evaluation.SCOPES):
        raise InvalidParams(
            f"evaluate must be one of {', '.join(evaluation.SCOPES)}, got {cleaned['evaluate']!r}"
        )
    if PolicyCheckpoint.objects.filter(name=cleaned["checkpoint_name"] or None).exists():
        raise InvalidParams(
            f"a policy checkpoint named {cleaned['checkpoint_name']!r} exists already"
        )
    test_fraction = params.pop("test_fraction", None)
    try:
        cleaned["test_fraction"] = 0.1 if test_fraction in (None, "") else float(test_fraction)
    except (TypeError, ValueError) as error:
        raise InvalidParams(f"test_fraction must be a number, got {test_fraction!r}") from error
    if not 0 <= cleaned["test_fraction"] < 1:
        raise InvalidParams("test_fraction must be in [0, 1)")
    if (
        cleaned["init_checkpoint_id"] is not None
        and not PolicyCheckpoint.objects.filter(pk=cleaned["init_checkpoint_id"]).exists()
    ):
        raise InvalidParams(f"policy checkpoint {cleaned['init_checkpoint_id']} does not exist")
    try:  # the trainer's own checks, now rather than after reward training
        TrainConfig(
            output_dir="-",
            loss_type=loss,
            preset=settings.LABELHUB_GENERATOR_PRESET,
            model_path=settings.LABELHUB_COGVIDEOX_PATH,
            max_steps=cleaned["steps"],
        )
        RewardTrainConfig(
            epochs=cleaned["reward_epochs"] or 1, objective=cleaned["reward_objective"]
        )
    except (TypeError, ValueError) as error:
        raise InvalidParams(str(error).removeprefix("invalid training config: ")) from error
    if params:
        raise InvalidParams(f"unknown parameter(s) for a round: {', '.join(sorted(params))}")
    return cleaned


def launch_round(*, params: dict, created_by=None, send: bool = True) -> Run:
    """Validate and create a queued round run; ``send`` puts it on the gpu queue after commit
    (``manage.py run_round`` executes it in its own process instead)."""
    cleaned = validate_round_params(params)
    return runs.launch(kind=Kind.ROUND, params=cleaned, created_by=created_by, send=send)


def resume_round(*, run_id: int, send: bool = True) -> Run:
    """Queue a failed or cancelled round again; its recorded steps are skipped when it runs."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.kind != Kind.ROUND:
        raise InvalidParams(f"run {run_id} is not a round run")
    if run.status not in (Status.FAILED, Status.CANCELLED):
        raise InvalidParams(
            f"run {run_id} is {run.status}; only a failed or cancelled round resumes"
        )
    return runs.requeue(run_id, send=send)


# --- running ----------------------------------------------------------------------------------


class _Round:
    """The state of one execution of a round run: its params, artifacts so far and reporter."""

    def __init__(self, run: Run, report: Progress):
        self.run, self.report = run, report
        self.params = run.params
        self.artifacts = dict(run.artifacts)
        self.steps = plan(self.params)
        self.index = 0

    def record(self, **values) -> None:
        self.artifacts.update(values)
        runs.record_artifacts(self.run.pk, **values)

    def percent(self, fraction: float = 0.0) -> int:
        return int(PERCENT * (self.index + min(max(fraction, 0.0), 1.0)) / len(self.steps))

    def say(self, message: str, fraction: float = 0.0) -> None:
        self.report(self.percent(fraction), PERCENT, None, message)

    def execute(self, step: Step, child: Run) -> Run:
        """Run a child now, in this process, forwarding its progress; StepFailed unless it
        succeeds."""
        runs.adopt(child.pk, parent_id=self.run.pk)
        step_runs = {**self.artifacts.get("step_runs", {})}
        step_runs[step.key] = [*step_runs.get(step.key, []), child.pk]
        self.record(step_runs=step_runs)
        self.say(f"{step.label}: {child.get_kind_display()} run {child.pk}")

        # The child's own row keeps its log and metrics; the round's row gets its progress only,
        # and a terminal following the round (the reporter's ``also``) sees the child's lines.
        terminal = getattr(self.report, "also", None)

        def forward(done: int, total: int, metrics: dict | None = None, message: str = "") -> None:
            percent = self.percent(done / total if total else 0.0)
            self.report(percent, PERCENT, None, "")
            if terminal is not None and (message or metrics):
                terminal(percent, PERCENT, metrics, f"  {message}" if message else "")

        runs.execute_run(child.pk, on_progress=forward, worker=self.run.worker)
        child.refresh_from_db()
        if child.status == Status.CANCELLED:
            raise runs.RunCancelled(f"step {step.key} (run {child.pk}) was cancelled")
        if child.status != Status.SUCCEEDED:
            detail = child.error.strip().splitlines()[0] if child.error.strip() else child.status
            raise StepFailed(
                f"step {self.index + 1}/{len(self.steps)} ({step.label}) failed in run "
                f"{child.pk}: {detail}. Fix the cause and resume this round: steps already done "
                "are skipped."
            )
        outputs = ", ".join(
            f"{key} {value}"
            for key, value in child.artifacts.items()
            if isinstance(value, int | float | str) and len(str(value)) < 40
        )
        self.say(f"  run {child.pk} succeeded: {outputs}")
        return child


def round_job(run: Run, report: Progress) -> dict:
    """The job of a "round" run: every step not yet done, in order, as child runs."""
    state = _Round(run, report)
    actions: dict[str, Callable[[_Round], None]] = {
        "export": _export,
        "reward_training": _reward_training,
        "scoring": lambda state: _scoring(state, round_id=state.params["round_id"]),
        "pairs": _pairs,
        "training": _training,
        "generation": _generation,
        "scoring_next": lambda state: _scoring(state, round_id=state.artifacts["next_round_id"]),
        "evaluation": _evaluation,
    }
    for index, step in enumerate(state.steps):
        state.index = index
        if state.artifacts.get(step.output) is not None:
            state.say(f"step {index + 1}/{len(state.steps)} {step.label}: done already, skipped")
            continue
        state.say(f"step {index + 1}/{len(state.steps)} {step.label}")
        try:
            actions[step.key](state)
        except (StepFailed, runs.RunCancelled):
            raise
        except InvalidParams as error:  # e.g. the target round was closed meanwhile
            raise StepFailed(
                f"step {index + 1}/{len(state.steps)} ({step.label}) cannot start: {error}. "
                "Fix the cause and resume this round: steps already done are skipped."
            ) from error
        except Exception as error:  # a step done here (the export): name it like a child's
            raise StepFailed(
                f"step {index + 1}/{len(state.steps)} ({step.label}) failed: "
                f"{type(error).__name__}: {error}. Fix the cause and resume this round: steps "
                "already done are skipped."
            ) from error
    state.index = len(state.steps)
    state.say(f"round done: candidates in {state.params['next_round']}", 0.0)
    return {
        "next_round_clips": Clip.objects.filter(round_id=state.artifacts["next_round_id"]).count()
    }


def _export(state: _Round) -> None:
    p = state.params
    snapshot_id = state.artifacts.get("pending_snapshot_id")
    if snapshot_id is None:
        snapshot = request_snapshot(
            round_ids=[p["round_id"]],
            test_fraction=p["test_fraction"],
            seed=p["seed"],
            created_by=state.run.created_by,
        )
        state.record(pending_snapshot_id=snapshot.pk)
        snapshot_id = snapshot.pk
    snapshot = build_snapshot(snapshot_id=snapshot_id)
    if snapshot.status != ExportSnapshot.Status.READY:
        raise StepFailed(f"export snapshot {snapshot.pk} is {snapshot.status}: {snapshot.error}")
    state.say(
        f"  snapshot {snapshot.pk}: {snapshot.row_counts.get('clips', '?')} clips "
        f"({snapshot.row_counts.get('train', '?')} train / {snapshot.row_counts.get('test', '?')} test)"
    )
    state.record(snapshot_id=snapshot.pk)


def _reward_training(state: _Round) -> None:
    p = state.params
    config = {"epochs": p["reward_epochs"]} if p.get("reward_epochs") else {}
    if p.get("reward_objective", "regression") != "regression":
        config["objective"] = p["reward_objective"]
    # The round's GPUs train the reward model too, where its config is exact on several
    # processes (heads only); else it trains on one, and the round says so.
    gpus = p.get("gpus", 1)
    refusal = scoring.gpus_refusal(config=config, gpus=gpus)
    if refusal:
        state.say(f"  reward training on 1 GPU: {refusal}")
        gpus = 1
    child = scoring.request_reward_training(
        snapshot_id=state.artifacts["snapshot_id"],
        config=config,
        name=p.get("reward_model_name", ""),
        gpus=gpus,
        created_by=state.run.created_by,
        enqueue=False,
    )
    child = state.execute(STEP_BY_KEY["reward_training"], child)
    state.record(reward_model_id=child.artifacts["reward_model_id"])


def _reward_model_id(state: _Round) -> int:
    return state.params.get("reward_model_id") or state.artifacts["reward_model_id"]


def _scoring(state: _Round, *, round_id: int) -> None:
    """Score a round with the round's reward model: the rated round before pairs are built, and
    the new candidates at the end (the scoreboard's yardstick). Chunks fan out to gpu workers."""
    step = state.steps[state.index]
    child = scoring.request_scoring(
        reward_model_id=_reward_model_id(state),
        round_id=round_id,
        chunk_clips=state.params.get("chunk_clips"),
        created_by=state.run.created_by,
        enqueue=False,
    )
    child = state.execute(step, child)
    state.record(**{step.output: child.pk})


def _pair_source(state: _Round) -> dict:
    return {
        "round_id": state.params["round_id"],
        "origin": PreferencePair.Origin.REWARD_MODEL,
        "reward_model_id": _reward_model_id(state),
    }


def _child(state: _Round, kind: str, params: dict, **kwargs) -> Run:
    return runs.create_run(kind=kind, params=params, created_by=state.run.created_by, **kwargs)


def _pairs(state: _Round) -> None:
    params = validate_params(Kind.PAIRS, {**_pair_source(state), "min_gap": 0.0})
    child = state.execute(STEP_BY_KEY["pairs"], _child(state, Kind.PAIRS, params))
    if not child.artifacts.get("pairs"):
        raise StepFailed(
            f"round {state.params['round_id']} gave no preference pairs (no condition has two "
            "scored clips with different rewards); nothing to train on"
        )
    state.record(pairs_run_id=child.pk, pairs=child.artifacts["pairs"])


def init_checkpoint_id(round_id: int) -> int | None:
    """The policy that generated most of a round's candidates (the next policy starts from it);
    None when the round holds no policy's candidates."""
    counts = Counter(
        Candidate.objects.filter(clip__round_id=round_id, checkpoint__isnull=False).values_list(
            "checkpoint_id", flat=True
        )
    )
    if not counts:
        return None
    return max(counts, key=lambda checkpoint_id: (counts[checkpoint_id], checkpoint_id))


def _training(state: _Round) -> None:
    p = state.params
    step = STEP_BY_KEY["training"]
    previous = (
        Run.objects.filter(
            pk__in=state.artifacts.get("step_runs", {}).get("training", []),
            status__in=(Status.FAILED, Status.CANCELLED),
        )
        .exclude(checkpoint_path="")
        .order_by("-pk")
        .first()
    )
    if previous is not None:  # continue the failed attempt from its last checkpoint
        params = {**previous.params, "trainer": dict(previous.params["trainer"])}
        params["resume_from"] = previous.checkpoint_path
        params["output_dir"] = previous.params.get("output_dir") or previous.artifacts.get(
            "output_dir", ""
        )
        child = _child(state, previous.kind, params, resumed_from=previous)
    else:
        init = p.get("init_checkpoint_id") or init_checkpoint_id(p["round_id"])
        params = validate_params(
            p["loss"],
            {
                **_pair_source(state),
                "max_steps": p["steps"],
                "init_checkpoint_id": init,
                "gpus": p.get("gpus", 1),
                "checkpoint_name": p.get("checkpoint_name", ""),
            },
        )
        child = _child(state, p["loss"], params)
    child = state.execute(step, child)
    state.record(training_run_id=child.pk, checkpoint_id=child.artifacts["policy_checkpoint_id"])


def _generation(state: _Round) -> None:
    p = state.params
    params = validate_params(
        Kind.GENERATION,
        {
            "source_round_id": p["round_id"],
            "target_round": p["next_round"],
            "checkpoint_id": state.artifacts["checkpoint_id"],
            "candidates_per_condition": p["candidates"],
            "base_seed": p["seed"],
            **({"chunk_conditions": p["chunk_conditions"]} if p.get("chunk_conditions") else {}),
        },
    )
    child = state.execute(STEP_BY_KEY["generation"], _child(state, Kind.GENERATION, params))
    state.record(
        generation_run_id=child.pk,
        next_round_id=child.artifacts["round_id"],
        imported=child.artifacts.get("imported"),
        already_in_round=child.artifacts.get("already_in_round", 0),
    )


def _evaluation(state: _Round) -> None:
    evaluation.run_evaluation_step(
        state, STEP_BY_KEY["evaluation"], reward_model_id=_reward_model_id(state)
    )
