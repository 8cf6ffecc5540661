"""Admin pages: the runs list with a launch form, and a watch page (live progress, ETA, loss and
accuracy plot) that polls the run's JSON endpoint. Thin: services do the work."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Case, When
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.models import Round
from labelhub.dimensions import DIMENSIONS
from labelhub.pages import show_error
from labelhub.roles import ADMIN, LEAD, role_required
from labelhub.svg import rounds_svg
from runs.models import Run
from runs.workers import live_workers, queues_without_worker
from scoring.anime_reward.config import OBJECTIVES
from scoring.models import RewardModel
from training import selectors
from training.models import PolicyCheckpoint
from training.services import launch, loop
from training.services.evaluation import BASE_ROUND

SOURCE_FIELDS = ("round_id", "origin", "reward_model_id")
TRAIN_FORM_FIELDS = (
    "checkpoint_name",
    "init_checkpoint_id",
    "max_steps",
    "learning_rate",
    "lora_rank",
    "beta",
    "alpha",
    "batch_pairs",
    "seed",
    "checkpoint_every",
    "gpus",
)
KIND_FIELDS = {
    "pairs": (*SOURCE_FIELDS, "min_gap"),
    "gapo": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "dpo": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "sft": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "generation": (
        "source_round_id",
        "target_round",
        "checkpoint_id",
        "candidates_per_condition",
        "base_seed",
        "inference_steps",
        "guidance_scale",
        "sampler",
        "chunk_conditions",
    ),
}


@role_required(ADMIN)
def runs_page(request):
    workers = live_workers(timeout=0.5)
    listed = list(selectors.runs())
    runs = [selectors.run_summary(run) for run in listed]
    queued = [run for run in listed if run.status == Run.Status.QUEUED]
    waiting = queues_without_worker(queued, workers)
    for row in runs:  # "queued" alone would not say that nothing will ever take it
        row["waiting_for"] = waiting.get(row["id"], "")
    return render(
        request,
        "training/runs.html",
        {
            "runs": runs,
            "workers": workers,
            "checkpoints": selectors.checkpoints()[:50],
            # Newest first; the base generator's shared round is a place to keep candidates, not a
            # round to learn from, so it never comes first (it stays selectable).
            "rounds": Round.objects.order_by(
                Case(When(name=BASE_ROUND, then=1), default=0), "-created_at"
            )[:200],
            "reward_models": RewardModel.objects.order_by("-created_at")[:100],
            "policy_checkpoints": PolicyCheckpoint.objects.order_by("-created_at")[:100],
            "kinds": [(k, Run.Kind(k).label) for k in launch.LAUNCHABLE_KINDS],
            "trainer_help": launch.TRAINER_HELP,
            "losses": loop.LOSSES,
            "reward_objectives": OBJECTIVES,
        },
    )


ROUND_FORM_FIELDS = (
    "round_id",
    "next_round",
    "reward_model_id",
    "train_reward",
    "loss",
    "steps",
    "candidates",
    "init_checkpoint_id",
    "reward_epochs",
    "reward_objective",
    "test_fraction",
    "evaluate",
    "seed",
    "gpus",
    "chunk_conditions",
)


@role_required(ADMIN)
@require_POST
def launch_round_view(request):
    params = {
        name: request.POST[name] for name in ROUND_FORM_FIELDS if request.POST.get(name, "") != ""
    }
    if params.get("reward_model_id"):
        params.pop("train_reward", None)
    else:
        params["train_reward"] = True
    try:
        run = loop.launch_round(params=params, created_by=request.user)
    except launch.InvalidParams as error:
        show_error(request, error, doing="Round not launched")
        return redirect("training:runs")
    messages.success(request, f"Launched {run}.")
    return redirect("training:run", run_id=run.pk)


@role_required(ADMIN)
@require_POST
def launch_view(request):
    kind = request.POST.get("kind", "")
    params = {
        name: request.POST[name]
        for name in KIND_FIELDS.get(kind, ())
        if request.POST.get(name, "") != ""
    }
    try:
        run = launch.launch_run(kind=kind, params=params, created_by=request.user)
    except launch.InvalidParams as error:
        show_error(request, error, doing="Not launched")
        return redirect("training:runs")
    messages.success(request, f"Launched {run}.")
    return redirect("training:run", run_id=run.pk)


@role_required(ADMIN)
def run_page(request, run_id: int):
    run = get_object_or_404(Run.objects.select_related("parent"), pk=run_id)
    return render(
        request,
        "training/run.html",
        {
            "run": run,
            "progress": selectors.run_progress(run),
            "params": selectors.labelled_rows(run.params),
            "artifacts": selectors.labelled_rows(run.artifacts),
            "plots": selectors.run_plots(run),
            "steps": selectors.round_steps(run) if run.kind == Run.Kind.ROUND else None,
            "chunks": selectors.chunks(run),
            "human_evaluation": _checkpoint_evaluation(run),
        },
    )


def _checkpoint_evaluation(run: Run) -> dict | None:
    """The policy checkpoint a run made (or a round trained), against the base generator, under
    the reward model the run used (else the scoreboard's)."""
    checkpoint_id = run.artifacts.get("policy_checkpoint_id") or run.artifacts.get("checkpoint_id")
    if not checkpoint_id or run.kind == Run.Kind.GENERATION:
        return None
    reward_model_id = run.params.get("reward_model_id") or run.artifacts.get("reward_model_id")
    if reward_model_id is None:
        latest = selectors.scoreboard_reward_models().first()
        reward_model_id = latest.pk if latest else None
    return selectors.human_evaluation(checkpoint_id=checkpoint_id, reward_model_id=reward_model_id)


@role_required(ADMIN)
@require_POST
def cancel_view(request, run_id: int):
    get_object_or_404(Run, pk=run_id)
    launch.cancel(run_id=run_id)
    messages.success(request, f"Cancel requested for run {run_id}.")
    return redirect("training:run", run_id=run_id)


@role_required(ADMIN)
@require_POST
def resume_view(request, run_id: int):
    run = get_object_or_404(Run, pk=run_id)
    if run.kind == Run.Kind.ROUND:  # the same row again, done steps skipped
        try:
            loop.resume_round(run_id=run_id)
        except launch.InvalidParams as error:
            show_error(request, error, doing="Not resumed")
        else:
            messages.success(request, f"Round run {run_id} queued again from its failed step.")
        return redirect("training:run", run_id=run_id)
    max_steps = request.POST.get("max_steps") or None
    if max_steps is not None and not (max_steps.isascii() and max_steps.isdigit()):
        messages.error(request, f"Not resumed: max steps must be a whole number, not {max_steps!r}")
        return redirect("training:run", run_id=run_id)
    try:
        run = launch.resume(
            run_id=run_id, created_by=request.user, max_steps=int(max_steps) if max_steps else None
        )
    except launch.InvalidParams as error:
        show_error(request, error, doing="Not resumed")
        return redirect("training:run", run_id=run_id)
    messages.success(request, f"Resumed as run {run.pk}.")
    return redirect("training:run", run_id=run.pk)


# --- the loop's scoreboard --------------------------------------------------------------------


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def scoreboard_plots(data: dict, clips_url) -> dict:
    """SVG plots across rounds: human and AnimeReward means (overall and per dimension), and the
    win rate against the baseline with its interval. Every point links to its clips."""
    names = [r["name"] for r in data["rounds"]]

    def series(value, *, interval=None) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for row in data["rows"]:
            y = value(row)
            if y is None:
                continue
            name = "generator" if row["generated"] else row["source"]
            point = {
                "x": row["round_index"],
                "y": y,
                "href": clips_url(row),
                "title": f"{row['round']['name']} · {row['source']}: {y:.3f}",
            }
            if interval:
                point["low"], point["high"] = interval(row)
            out.setdefault(name, []).append(point)
        return out

    dims = [("overall", "Overall", None)] + [(d.key, d.name, d.key) for d in DIMENSIONS]

    def plots(kind: str, title: str, low: float, high: float) -> list:
        """One plot per dimension (and overall) of ``kind``: "human" or "reward" means."""
        return [
            rounds_svg(
                names,
                series(lambda r, k=key: r[f"{kind}_overall"] if k is None else r[kind][k]),
                title=f"{title} · {label}",
                low=low,
                high=high,
            )
            for _, label, key in dims
        ]

    human, reward = plots("human", "Human", 1, 5), plots("reward", "AnimeReward", 0, 1)
    win = rounds_svg(
        names,
        series(
            lambda r: r["win_rate"]["win"]["rate"] if r["win_rate"] else None,
            interval=lambda r: tuple(r["win_rate"]["win"]["ci95"]),
        ),
        title=f"Win rate vs {data['baseline'] or '(no baseline)'} (95% interval)",
        low=0,
        high=1,
        reference=0.5,
        width=480,
    )
    return {"human": human, "reward": reward, "win": win}


@role_required(LEAD)
def scoreboard_page(request):
    data = selectors.scoreboard(
        reward_model_id=_int_or_none(request.GET.get("reward_model")),
        baseline=request.GET.get("baseline") or None,
    )

    def clips_url(row: dict) -> str:
        query = {"round": row["round"]["id"], "source": row["source"]}
        if data["reward_model_id"]:
            query["reward_model"] = data["reward_model_id"]
        return f"{reverse('training:scoreboard_clips')}?{urlencode(query)}"

    for row in data["rows"]:
        row["clips_url"] = clips_url(row)
        row["human_list"] = [row["human"][d.key] for d in DIMENSIONS]
        row["reward_list"] = [row["reward"][d.key] for d in DIMENSIONS]
    return render(
        request,
        "training/scoreboard.html",
        {
            "data": data,
            "plots": scoreboard_plots(data, clips_url),
            "dimensions": DIMENSIONS,
        },
    )


@role_required(LEAD)
def scoreboard_clips_page(request):
    round_ = Round.objects.filter(pk=_int_or_none(request.GET.get("round"))).first()
    source = request.GET.get("source", "")
    if round_ is None or not source:
        raise Http404("give a round and a source")
    reward_model_id = _int_or_none(request.GET.get("reward_model"))
    return render(
        request,
        "training/scoreboard_clips.html",
        {
            "round": round_,
            "source": source,
            "reward_model": RewardModel.objects.filter(pk=reward_model_id).first(),
            "clips": selectors.scoreboard_clips(
                round_id=round_.pk, source=source, reward_model_id=reward_model_id
            ),
        },
    )
