"""Admin pages: the runs list with a launch form, and a watch page (live progress, ETA, loss and
accuracy plot) that polls the run's JSON endpoint. Thin: services do the work."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Round
from labelhub.roles import ADMIN, role_required
from runs.models import TrainingRun
from scoring.models import RewardModel
from training import selectors
from training.models import PolicyCheckpoint
from training.services import launch

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
    ),
}


@role_required(ADMIN)
def runs_page(request):
    return render(
        request,
        "training/runs.html",
        {
            "runs": [selectors.run_summary(run) for run in selectors.runs()],
            "checkpoints": selectors.checkpoints()[:50],
            "rounds": Round.objects.order_by("-created_at")[:200],
            "reward_models": RewardModel.objects.order_by("-created_at")[:100],
            "policy_checkpoints": PolicyCheckpoint.objects.order_by("-created_at")[:100],
            "kinds": [(k, TrainingRun.Kind(k).label) for k in launch.LAUNCHABLE_KINDS],
            "trainer_help": launch.TRAINER_HELP,
        },
    )


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
        messages.error(request, f"Not launched: {error}")
        return redirect("training:runs")
    messages.success(request, f"Launched {run}.")
    return redirect("training:run", run_id=run.pk)


@role_required(ADMIN)
def run_page(request, run_id: int):
    run = get_object_or_404(TrainingRun, pk=run_id)
    return render(
        request, "training/run.html", {"run": run, "progress": selectors.run_progress(run)}
    )


@role_required(ADMIN)
@require_POST
def cancel_view(request, run_id: int):
    get_object_or_404(TrainingRun, pk=run_id)
    launch.cancel(run_id=run_id)
    messages.success(request, f"Cancel requested for run {run_id}.")
    return redirect("training:run", run_id=run_id)


@role_required(ADMIN)
@require_POST
def resume_view(request, run_id: int):
    get_object_or_404(TrainingRun, pk=run_id)
    max_steps = request.POST.get("max_steps") or None
    try:
        run = launch.resume(
            run_id=run_id, created_by=request.user, max_steps=int(max_steps) if max_steps else None
        )
    except (launch.InvalidParams, ValueError) as error:
        messages.error(request, f"Not resumed: {error}")
        return redirect("training:run", run_id=run_id)
    messages.success(request, f"Resumed as run {run.pk}.")
    return redirect("training:run", run_id=run.pk)
