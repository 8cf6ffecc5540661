"""Admin pages: the runs list with a launch form, and a watch page (live progress, ETA, loss and
accuracy plot) that polls the run's JSON endpoint. Thin: services do the work."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Round
from labelhub.roles import ADMIN, has_role
from scoring.models import RewardModel
from training import selectors
from training.models import PolicyCheckpoint, TrainingRun
from training.services import launch

SOURCE_FIELDS = ("round_id", "origin", "reward_model_id")
TRAIN_FORM_FIELDS = ("checkpoint_name", "max_steps", "learning_rate", "lora_rank", "beta", "alpha",
                     "batch_pairs", "seed", "checkpoint_every")
KIND_FIELDS = {
    "pairs": (*SOURCE_FIELDS, "min_gap"),
    "gapo": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "dpo": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "sft": (*SOURCE_FIELDS, *TRAIN_FORM_FIELDS),
    "generation": ("source_round_id", "target_round", "checkpoint_id", "candidates_per_condition", "base_seed",
                   "inference_steps", "guidance_scale"),
}


def _admin_only(request) -> None:
    if not has_role(request.user, ADMIN):
        raise PermissionDenied("You need the admin role for training runs.")


@login_required
def runs_page(request):
    _admin_only(request)
    return render(request, "training/runs.html", {
        "runs": [selectors.run_summary(run) for run in selectors.runs()],
        "checkpoints": selectors.checkpoints()[:50],
        "rounds": Round.objects.order_by("-created_at")[:200],
        "reward_models": RewardModel.objects.order_by("-created_at")[:100],
        "policy_checkpoints": PolicyCheckpoint.objects.order_by("-created_at")[:100],
        "kinds": [(k, TrainingRun.Kind(k).label) for k in launch.LAUNCHABLE_KINDS],
        "trainer_help": launch.TRAINER_HELP,
    })


@login_required
@require_POST
def launch_view(request):
    _admin_only(request)
    kind = request.POST.get("kind", "")
    params = {name: request.POST[name] for name in KIND_FIELDS.get(kind, ()) if request.POST.get(name, "") != ""}
    try:
        run = launch.launch_run(kind=kind, params=params, created_by=request.user)
    except launch.InvalidParams as error:
        messages.error(request, f"Not launched: {error}")
        return redirect("training:runs")
    messages.success(request, f"Launched {run}.")
    return redirect("training:run", run_id=run.pk)


@login_required
def run_page(request, run_id: int):
    _admin_only(request)
    run = get_object_or_404(TrainingRun, pk=run_id)
    return render(request, "training/run.html", {"run": run, "progress": selectors.run_progress(run)})


@login_required
@require_POST
def cancel_view(request, run_id: int):
    _admin_only(request)
    get_object_or_404(TrainingRun, pk=run_id)
    launch.cancel(run_id=run_id)
    messages.success(request, f"Cancel requested for run {run_id}.")
    return redirect("training:run", run_id=run_id)


@login_required
@require_POST
def resume_view(request, run_id: int):
    _admin_only(request)
    get_object_or_404(TrainingRun, pk=run_id)
    max_steps = request.POST.get("max_steps") or None
    try:
        run = launch.resume(run_id=run_id, created_by=request.user, max_steps=int(max_steps) if max_steps else None)
    except (launch.InvalidParams, ValueError) as error:
        messages.error(request, f"Not resumed: {error}")
        return redirect("training:run", run_id=run_id)
    messages.success(request, f"Resumed as run {run.pk}.")
    return redirect("training:run", run_id=run.pk)
