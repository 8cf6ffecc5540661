"""Reward model pages for leads and admins: the list, and one model's held-out evaluation with a
predicted-vs-human scatter plot per dimension (inline SVG drawn here, no JavaScript)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import ExportSnapshot, Round
from labelhub.roles import ADMIN, LEAD, has_role, role_required
from labelhub.svg import scatter_svg
from scoring import selectors, services
from scoring.models import RewardModel

lead_required = role_required(LEAD)


def _format(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@lead_required
def reward_models_page(request):
    return render(
        request,
        "scoring/reward_models.html",
        {
            "reward_models": selectors.list_reward_models(),
            "can_launch": has_role(request.user, ADMIN),
            "snapshots": ExportSnapshot.objects.filter(status=ExportSnapshot.Status.READY).order_by(
                "-created_at"
            )[:50],
            "rounds": Round.objects.order_by("-created_at"),
        },
    )


@require_POST
@role_required(ADMIN)
def launch_training_view(request):
    config = {"epochs": int(request.POST["epochs"])} if request.POST.get("epochs") else {}
    try:
        run = services.request_reward_training(
            snapshot_id=int(request.POST.get("snapshot_id") or 0),
            config=config,
            name=request.POST.get("name", "").strip(),
            created_by=request.user,
        )
    except (ValueError, ExportSnapshot.DoesNotExist) as exc:
        messages.error(request, f"Not launched: {exc}")
        return redirect("scoring:reward_models")
    return redirect(f"/runs/{run.pk}/")


@require_POST
@role_required(ADMIN)
def launch_scoring_view(request):
    try:
        run = services.request_scoring(
            reward_model_id=int(request.POST.get("reward_model_id") or 0),
            round_id=int(request.POST.get("round_id") or 0),
            created_by=request.user,
        )
    except (ValueError, RewardModel.DoesNotExist) as exc:
        messages.error(request, f"Not launched: {exc}")
        return redirect("scoring:reward_models")
    return redirect(f"/runs/{run.pk}/")


@lead_required
def reward_model_page(request, reward_model_id: int):
    reward_model = get_object_or_404(RewardModel.objects.select_related("run"), pk=reward_model_id)
    dimensions = selectors.reward_model_evaluation(reward_model)
    for dimension in dimensions:
        dimension.svg = scatter_svg(dimension.points, title=dimension.name)
        dimension.metric_values = [
            _format(dimension.metrics.get(name)) for name in selectors.METRIC_NAMES
        ]
    return render(
        request,
        "scoring/reward_model.html",
        {
            "reward_model": reward_model,
            "dimensions": dimensions,
            "metric_names": selectors.METRIC_NAMES,
        },
    )
