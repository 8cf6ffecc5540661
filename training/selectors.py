"""Reads for the training pages and API: runs with progress and ETA, checkpoints, pairs, a round's
steps, and the loop's scoreboard (did the last round of training make the generator better?)."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count, Prefetch, Q, QuerySet

from annotation.models import Clip, ClipLabel, PairwiseJudgement, PairwiseTask, Round
from annotation.selectors.pairwise import (
    source_pairs,
    verdict,
    wilson_interval,
    win_rates_against,
)
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS
from runs.models import Run
from runs.services import eta_seconds
from scoring.models import ClipScore, RewardModel
from training.models import Candidate, PolicyCheckpoint
from training.services.loop import plan

CHUNK_KINDS = (Run.Kind.GENERATION_CHUNK, Run.Kind.SCORING_CHUNK)


def runs(*, limit: int = 100) -> QuerySet[Run]:
    """Recent runs, without chunks (a fanned-out run's page lists its own)."""
    return (
        Run.objects.exclude(kind__in=CHUNK_KINDS)
        .select_related("created_by")
        .order_by("-created_at")[:limit]
    )


def chunks(run: Run) -> list[dict]:
    """A fanned-out run's chunks for its page: number, status, worker, attempts, progress."""
    return [
        {
            "id": c.pk,
            "chunk": c.params.get("chunk"),
            "status": c.status,
            "worker": c.worker,
            "attempts": c.attempts,
            "step": c.step,
            "total_steps": c.total_steps or c.params.get("size", 0),
            "heartbeat_at": c.heartbeat_at,
            "error": (c.error.strip().splitlines() or [""])[-1][:200],
        }
        for c in run.children.filter(kind__in=CHUNK_KINDS).order_by("pk")
    ]


def run_progress(run: Run) -> dict:
    """Everything the watch page polls: status, step/total, ETA, metric series, log tail."""
    fraction = (
        run.step / run.total_steps
        if run.total_steps
        else (1.0 if run.status == "succeeded" else 0.0)
    )
    return {
        "id": run.pk,
        "kind": run.kind,
        "kind_display": run.get_kind_display(),
        "status": run.status,
        "params": run.params,
        "step": run.step,
        "total_steps": run.total_steps,
        "fraction": round(min(fraction, 1.0), 4),
        "eta_seconds": eta_seconds(run),
        "created_by": run.created_by.username if run.created_by else None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "metrics": run.metrics,
        "log_tail": run.log_tail,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "checkpoint_path": run.checkpoint_path,
        "artifacts": run.artifacts,
        "resumed_from": run.resumed_from_id,
        "parent": run.parent_id,
        "worker": run.worker,
        "attempts": run.attempts,
        "resumable": run.status in ("failed", "cancelled")
        and (
            run.kind in ("round", "generation", "scoring", *CHUNK_KINDS)
            or (run.kind in ("gapo", "dpo", "sft") and bool(run.checkpoint_path))
        ),
    }


# Labels for parameter and artefact names that a plain "capitalise the words" would get wrong.
PARAM_LABELS = {
    "round_id": "Round",
    "source_round_id": "Conditions of round",
    "target_round": "Into round",
    "next_round": "Next round",
    "next_round_id": "Next round (id)",
    "reward_model_id": "Reward model",
    "train_reward": "Train a reward model",
    "snapshot_id": "Export snapshot",
    "checkpoint_id": "Policy checkpoint",
    "init_checkpoint_id": "Starts from checkpoint",
    "policy_checkpoint_id": "Policy checkpoint",
    "candidates": "Candidates per condition",
    "candidates_per_condition": "Candidates per condition",
    "steps": "Training steps",
    "max_steps": "Training steps",
    "loss": "Loss",
    "loss_type": "Loss",
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_dir": "LoRA directory",
    "learning_rate": "Learning rate",
    "batch_pairs": "Pairs per step",
    "max_grad_norm": "Gradient clip (max norm)",
    "min_gap": "Minimum reward difference",
    "beta": "β (KL strength)",
    "alpha": "α (gap weight)",
    "model_path": "Model path",
    "import_batch_id": "Import batch",
    "cfg_dropout": "Condition dropout",
    "sampler": "Sampler",
    "text_dropout": "Prompt dropout",
    "validation_share": "Held-out share of pairs",
    "lr_warmup_steps": "Warmup steps",
    "lr_scheduler": "Learning-rate schedule",
    "gradient_accumulation_steps": "Gradient accumulation",
    "mixed_precision": "Mixed precision",
    "gradient_checkpointing": "Gradient checkpointing",
}
# Model weights a preset builds in code: its model path is never read, so it is not shown.
PRESETS_WITHOUT_MODEL_PATH = {"tiny"}


def _label(key: str) -> str:
    return PARAM_LABELS.get(key) or key.replace("_", " ").replace("/", " / ").capitalize()


def _display(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_display(v) for v in value) if value else "—"
    return str(value)


def labelled_rows(values: dict, *, prefix: str = "") -> list[dict]:
    """A run's parameters or artefacts as (label, value) rows for a table, nested dicts
    (the trainer's config) flattened under their group; a tiny preset's unused model path and
    the round's internal bookkeeping are left out."""
    rows = []
    preset = values.get("preset")
    for key, value in values.items():
        if key in ("step_runs", "pending_snapshot_id"):
            continue
        if key == "model_path" and preset in PRESETS_WITHOUT_MODEL_PATH:
            continue
        if isinstance(value, dict):
            rows.extend(labelled_rows(value, prefix=f"{_label(key)} · "))
            continue
        rows.append({"key": key, "label": prefix + _label(key), "value": _display(value)})
    return rows


PREFERENCE_PLOTS = (
    ("loss", "Loss"),
    ("implicit_accuracy", "Implicit accuracy"),
    ("reward_margin", "Reward margin"),
    ("grad_norm", "Gradient norm"),
)


def run_plots(run: Run) -> list[dict]:
    """The metric series a run's page plots, as {metric, label}: a GAPO/DPO/SFT run its step
    metrics, a reward training run each dimension's training loss per epoch, others none."""
    kind = Run.Kind
    if run.kind in (kind.GAPO, kind.DPO):
        plots = PREFERENCE_PLOTS
    elif run.kind == kind.SFT:
        plots = (PREFERENCE_PLOTS[0], PREFERENCE_PLOTS[3])
    elif run.kind == kind.REWARD_TRAINING:
        plots = tuple((f"{d.key}/loss", f"{d.name} · training loss") for d in DIMENSIONS)
    else:
        plots = ()
    return [{"metric": metric, "label": label} for metric, label in plots]


def run_summary(run: Run) -> dict:
    """A list row: no metric series or log."""
    data = run_progress(run)
    for key in ("metrics", "log_tail", "params", "artifacts"):
        data.pop(key)
    return data


def checkpoints() -> QuerySet[PolicyCheckpoint]:
    return PolicyCheckpoint.objects.select_related("run", "parent").order_by("-created_at")


def round_steps(run: Run) -> list[dict]:
    """A round run's steps for its page and the command: state, child runs, recorded output."""
    children = {child.pk: child for child in run.children.all()}
    step_runs = run.artifacts.get("step_runs", {})
    rows = []
    for step in plan(run.params):
        attempts = [children[pk] for pk in step_runs.get(step.key, []) if pk in children]
        output = run.artifacts.get(step.output)
        if output is not None:
            state = "done"
        elif attempts:
            state = attempts[-1].status
        else:
            state = "pending"
        rows.append(
            {
                "key": step.key,
                "label": step.label,
                "state": state,
                "runs": attempts,
                "output_name": step.output,
                "output": output,
            }
        )
    return rows


# --- the loop's scoreboard --------------------------------------------------------------------

GENERATED = "generated"
DIMENSION_NAMES = {d.key: d.name for d in DIMENSIONS}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def scoreboard_reward_models() -> QuerySet[RewardModel]:
    """Reward models that scored any clip, newest first (the scoreboard's picker)."""
    return RewardModel.objects.filter(scores__error="").distinct().order_by("-created_at", "-pk")


def default_baseline(sources: list[tuple[str, str]]) -> str | None:
    """The source most pairwise tasks compare against ("base", the base generator, if judged)."""
    counts = Counter(source for pair in sources for source in pair)
    if not counts:
        return None
    if "base" in counts:
        return "base"
    return min(counts, key=lambda source: (-counts[source], source))


def scoreboard(*, reward_model_id: int | None = None, baseline: str | None = None) -> dict:
    """Did the last round of training make the generator better? One row per round and source
    (a policy checkpoint's candidates, the base generator's, or an imported source): clips,
    human means per dimension (ClipLabel of rated clips), AnimeReward means per dimension
    (ClipScore under one reward model: the same yardstick for every round) and the pairwise win
    rate against ``baseline`` with its 95% interval."""
    reward_models = list(scoreboard_reward_models())
    if reward_model_id is None and reward_models:
        reward_model_id = reward_models[0].pk
    judged_sources = source_pairs()
    if baseline is None:
        baseline = default_baseline(judged_sources)

    rounds = list(Round.objects.order_by("created_at", "pk"))
    position = {round_.pk: index for index, round_ in enumerate(rounds)}
    clips = Clip.objects.exclude(status=Clip.Status.PULLED)
    groups: dict[tuple[int, str], dict] = {}

    def group(round_id: int, source: str) -> dict:
        key = (round_id, source)
        if key not in groups:
            groups[key] = {
                "round_id": round_id,
                "source": source,
                "clips": 0,
                "checkpoints": {},
                "generation_run_ids": set(),
                "human": {k: [] for k in DIMENSION_KEYS},
                "human_overall": [],
                "reward": {k: [] for k in DIMENSION_KEYS},
                "reward_overall": [],
            }
        return groups[key]

    for round_id, source, count in (
        clips.values("round_id", "source_name")
        .annotate(n=Count("pk"))
        .values_list("round_id", "source_name", "n")
    ):
        group(round_id, source)["clips"] = count
    for row in Candidate.objects.filter(clip__in=clips).values(
        "clip__round_id",
        "clip__source_name",
        "checkpoint_id",
        "checkpoint__name",
        "checkpoint__run_id",
        "run_id",
    ):
        g = group(row["clip__round_id"], row["clip__source_name"])
        if row["checkpoint_id"] is not None:
            g["checkpoints"][row["checkpoint_id"]] = {
                "id": row["checkpoint_id"],
                "name": row["checkpoint__name"],
                "run_id": row["checkpoint__run_id"],
            }
        if row["run_id"] is not None:
            g["generation_run_ids"].add(row["run_id"])
        g["generated"] = True
    label_fields = [f"{k}_mean" for k in DIMENSION_KEYS]
    for row in ClipLabel.objects.filter(clip__in=clips, count__gt=0).values(
        "clip__round_id", "clip__source_name", "overall", *label_fields
    ):
        g = group(row["clip__round_id"], row["clip__source_name"])
        for key in DIMENSION_KEYS:
            g["human"][key].append(row[f"{key}_mean"])
        g["human_overall"].append(row["overall"])
    if reward_model_id is not None:
        for row in ClipScore.objects.filter(
            clip__in=clips, reward_model_id=reward_model_id, error=""
        ).values("clip__round_id", "clip__source_name", "overall", *DIMENSION_KEYS):
            g = group(row["clip__round_id"], row["clip__source_name"])
            for key in DIMENSION_KEYS:
                g["reward"][key].append(row[key])
            g["reward_overall"].append(row["overall"])

    judged = {source for pair in judged_sources for source in pair}
    win_rates = (
        win_rates_against(baseline=baseline, sources={source for _, source in groups} & judged)
        if baseline
        else {}
    )
    round_names = {round_.pk: round_.name for round_ in rounds}
    rows = []
    for (round_id, source), g in sorted(
        groups.items(), key=lambda item: (position[item[0][0]], item[0][1])
    ):
        report = win_rates.get(source)
        win = report.as_dict() if report is not None and report.tasks else None
        rows.append(
            {
                "round": {"id": round_id, "name": round_names[round_id]},
                "round_index": position[round_id],
                "source": source,
                "generated": g.get("generated", False),
                "checkpoints": sorted(g["checkpoints"].values(), key=lambda c: c["id"]),
                "generation_run_ids": sorted(g["generation_run_ids"]),
                "clips": g["clips"],
                "rated": len(g["human_overall"]),
                "human": {k: _mean(v) for k, v in g["human"].items()},
                "human_overall": _mean(g["human_overall"]),
                "scored": len(g["reward_overall"]),
                "reward": {k: _mean(v) for k, v in g["reward"].items()},
                "reward_overall": _mean(g["reward_overall"]),
                "win_rate": win,
            }
        )
    return {
        "rounds": [{"id": r.pk, "name": r.name} for r in rounds],
        "human_evaluations": human_evaluations(reward_model_id=reward_model_id),
        "reward_model_id": reward_model_id,
        "reward_models": [{"id": m.pk, "name": m.name} for m in reward_models],
        "baseline": baseline,
        "baselines": sorted(judged),
        "rows": rows,
    }


def scoreboard_clips(*, round_id: int, source: str, reward_model_id: int | None) -> list[dict]:
    """The clips behind one scoreboard row, with their human and AnimeReward overall."""
    clips = (
        Clip.objects.filter(round_id=round_id, source_name=source)
        .exclude(status=Clip.Status.PULLED)
        .select_related("condition", "label", "candidate__checkpoint")
        .order_by("condition_id", "pk")
    )
    scores = dict(
        ClipScore.objects.filter(
            clip__in=clips, reward_model_id=reward_model_id, error=""
        ).values_list("clip_id", "overall")
    )
    out = []
    for clip in clips:
        label = getattr(clip, "label", None)
        candidate = getattr(clip, "candidate", None)
        out.append(
            {
                "id": clip.pk,
                "prompt": clip.condition.prompt,
                "condition_id": clip.condition_id,
                "status": clip.status,
                "human_overall": label.overall if label and label.count else None,
                "ratings": label.count if label else 0,
                "reward_overall": scores.get(clip.pk),
                "checkpoint": candidate.checkpoint if candidate else None,
                "seed": candidate.seed if candidate else None,
                "generation_run_id": candidate.run_id if candidate else None,
            }
        )
    return out


# --- human evaluation against the base, and the reward-hacking alarm ------------------------------

HUMAN_KEYS = ("overall", *DIMENSION_KEYS)
ALARM_MEANING = (
    "AnimeReward scores this checkpoint's candidates higher than the base generator's on the "
    "same conditions and seeds, but the judges do not agree: the human win rate's 95% interval "
    "reaches down to 0.5 or below, or the human means fell. The policy may be learning what the "
    "reward model likes rather than what people like (reward hacking): look at its clips before "
    "training on this reward model again."
)


def _matched_candidates(checkpoint_id: int) -> list[tuple[int, int]]:
    """(policy clip, base clip) pairs of one condition and seed (the first base clip of each)."""
    policy = list(
        Candidate.objects.filter(checkpoint_id=checkpoint_id).values_list(
            "clip_id", "clip__condition_id", "seed"
        )
    )
    base: dict[tuple[int, int], int] = {}
    for clip_id, condition_id, seed in (
        Candidate.objects.filter(
            checkpoint__isnull=True, clip__condition_id__in={c for _, c, _ in policy}
        )
        .order_by("clip_id")
        .values_list("clip_id", "clip__condition_id", "seed")
    ):
        base.setdefault((condition_id, seed), clip_id)
    return [(clip, base[(c, s)]) for clip, c, s in policy if (c, s) in base]


def human_evaluation(*, checkpoint_id: int, reward_model_id: int | None) -> dict | None:
    """A checkpoint against the base generator, per key (overall and the six dimensions): the
    AnimeReward means of matched candidates (same condition and seed, both scored), the human
    means of those both rated, and the judges' win / tie / loss on the policy-vs-base tasks
    (a task counts once fully judged, a side wins with 2 of 3: ``verdict``), with the win rate's
    Wilson interval; ``alarm`` where the reward rose and the humans do not agree
    (``ALARM_MEANING``). None when the checkpoint has no candidate with a base twin."""
    matched = _matched_candidates(checkpoint_id)
    if not matched:
        return None
    policy_ids = {p for p, _ in matched}
    base_ids = {b for _, b in matched}
    scores = {}
    if reward_model_id is not None:
        scores = {
            row["clip_id"]: row
            for row in ClipScore.objects.filter(
                reward_model_id=reward_model_id, clip_id__in=policy_ids | base_ids, error=""
            ).values("clip_id", "overall", *DIMENSION_KEYS)
        }
    labels = {
        row["clip_id"]: row
        for row in ClipLabel.objects.filter(clip_id__in=policy_ids | base_ids, count__gt=0).values(
            "clip_id", "overall", *(f"{k}_mean" for k in DIMENSION_KEYS)
        )
    }
    tasks = (
        PairwiseTask.objects.filter(
            Q(clip_a_id__in=policy_ids, clip_b_id__in=base_ids)
            | Q(clip_a_id__in=base_ids, clip_b_id__in=policy_ids)
        )
        .prefetch_related(
            Prefetch(
                "judgements",
                queryset=PairwiseJudgement.objects.only("task_id", "choice", "dimension_choices"),
            )
        )
        .order_by("pk")
    )
    outcomes = {key: Counter() for key in HUMAN_KEYS}
    pending = 0
    for task in tasks:
        judgements = list(task.judgements.all())
        if len(judgements) < task.judges_needed:
            pending += 1
            continue
        policy_side = "a" if task.clip_a_id in policy_ids else "b"
        for key in HUMAN_KEYS:
            # a judge who gave no choice on a dimension counts as a tie there
            choices = [
                j.choice if key == "overall" else j.dimension_choices.get(key, "tie")
                for j in judgements
            ]
            winner = verdict(choices)
            outcomes[key][
                "tie" if winner == "tie" else "win" if winner == policy_side else "loss"
            ] += 1

    def means(rows: dict, pairs, field) -> tuple[float | None, float | None, int]:
        both = [(p, b) for p, b in pairs if p in rows and b in rows]
        return (
            _mean([rows[p][field] for p, _ in both]),
            _mean([rows[b][field] for _, b in both]),
            len(both),
        )

    dimensions = []
    for key in HUMAN_KEYS:
        reward_policy, reward_base, scored = means(scores, matched, key)
        label_field = "overall" if key == "overall" else f"{key}_mean"
        human_policy, human_base, rated = means(labels, matched, label_field)
        counts = outcomes[key]
        judged = sum(counts.values())
        low, high = wilson_interval(counts["win"], judged)
        reward_rose = scored > 0 and reward_policy > reward_base
        humans_disagree = (judged > 0 and low <= 0.5) or (rated > 0 and human_policy < human_base)
        dimensions.append(
            {
                "key": key,
                "name": "Overall" if key == "overall" else DIMENSION_NAMES[key],
                "reward_policy": reward_policy,
                "reward_base": reward_base,
                "reward_delta": reward_policy - reward_base if scored else None,
                "scored_pairs": scored,
                "human_policy": human_policy,
                "human_base": human_base,
                "human_delta": human_policy - human_base if rated else None,
                "rated_pairs": rated,
                "tasks": judged,
                "wins": counts["win"],
                "ties": counts["tie"],
                "losses": counts["loss"],
                "win_rate": counts["win"] / judged if judged else None,
                "ci95": [low, high] if judged else None,
                "alarm": reward_rose and humans_disagree,
                "awaiting_humans": reward_rose and not judged and not rated,
            }
        )
    checkpoint = PolicyCheckpoint.objects.only("name").get(pk=checkpoint_id)
    return {
        "checkpoint": {"id": checkpoint_id, "name": checkpoint.name},
        "matched_candidates": len(matched),
        "evaluation_tasks": len(tasks),
        "tasks_awaiting_judges": pending,
        "dimensions": dimensions,
        "alarm": any(d["alarm"] for d in dimensions),
        "alarm_dimensions": [d["name"] for d in dimensions if d["alarm"]],
        "meaning": ALARM_MEANING,
    }


def human_evaluations(*, reward_model_id: int | None) -> list[dict]:
    """``human_evaluation`` of every checkpoint that has policy-vs-base candidates, newest first."""
    checkpoint_ids = (
        Candidate.objects.filter(checkpoint__isnull=False)
        .values_list("checkpoint_id", flat=True)
        .distinct()
    )
    out = []
    for checkpoint_id in sorted(set(checkpoint_ids), reverse=True):
        report = human_evaluation(checkpoint_id=checkpoint_id, reward_model_id=reward_model_id)
        if report is not None:
            out.append(report)
    return out
