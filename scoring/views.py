"""Reward model pages for leads and admins: the list, and one model's held-out evaluation with a
predicted-vs-human scatter plot per dimension (inline SVG drawn here, no JavaScript)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Clip, ExportSnapshot, Round
from annotation.services.gold import set_gold_from_labels
from annotation.services.overlap import request_extra_rating
from labelhub.errors import ServiceError
from labelhub.pages import show_error
from labelhub.roles import ADMIN, LEAD, has_role, role_required
from labelhub.svg import scatter_svg
from scoring import selectors, services
from scoring.anime_reward.config import ANISORA_FINETUNE, OBJECTIVES, TIE_MODELS, get_preset
from scoring.models import RewardModel
from scoring.selectors import model_disagreements

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
            "reward_preset": settings.LABELHUB_REWARD_PRESET,
            "preset": get_preset(settings.LABELHUB_REWARD_PRESET),
            "objectives": OBJECTIVES,
            "tie_models": TIE_MODELS,
            "finetune_default": ", ".join(
                key.replace("_", " ")
                for key in get_preset(settings.LABELHUB_REWARD_PRESET).finetune
            ),
        },
    )


FINETUNE_CHOICES = {"": None, "all": True, "none": False}
FORM_NUMBERS = (
    ("epochs", int),
    ("encoder_learning_rate", float),
    ("keyframes", int),
    ("track_frames", int),
    ("pair_weight", float),
    ("release_lora_rank", int),
)


def training_form_config(form) -> dict:
    """The launch form's fields as a RewardTrainConfig dict (blank = the default); a value that is
    not a number says which field."""
    config = {}
    for name, kind in FORM_NUMBERS:
        value = form.get(name, "").strip()
        if value:
            try:
                config[name] = kind(value)
            except ValueError:
                label = name.replace("_", " ")
                raise ValueError(f"{label} must be a number, not {value[:40]!r}") from None
    for name in ("objective", "tie_model"):  # the config names the valid choices
        if form.get(name, "").strip():
            config[name] = form[name].strip()
    release = form.get("release_finetune", "")
    if release:  # the anisora preset: what of the released models trains on the snapshot
        if release not in ANISORA_FINETUNE:
            raise ValueError(f"start from the release must be one of {', '.join(ANISORA_FINETUNE)}")
        config["release_finetune"] = release
    finetune = form.get("finetune_encoders", "")
    if finetune not in FINETUNE_CHOICES:
        raise ValueError(f"fine-tune encoders must be one of {', '.join(FINETUNE_CHOICES)}")
    if FINETUNE_CHOICES[finetune] is not None:
        config["finetune_encoders"] = FINETUNE_CHOICES[finetune]
    return config


@require_POST
@role_required(ADMIN)
def launch_training_view(request):
    return _launch(
        request,
        lambda: services.request_reward_training(
            snapshot_id=int(request.POST.get("snapshot_id") or 0),
            config=training_form_config(request.POST),
            name=request.POST.get("name", "").strip(),
            gpus=request.POST.get("gpus", "").strip(),
            created_by=request.user,
        ),
    )


@require_POST
@role_required(ADMIN)
def launch_scoring_view(request):
    return _launch(
        request,
        lambda: services.request_scoring(
            reward_model_id=int(request.POST.get("reward_model_id") or 0),
            round_id=int(request.POST.get("round_id") or 0),
            created_by=request.user,
        ),
    )


def _launch(request, launch):
    """The new run's page, or back to the list with what was wrong."""
    try:
        run = launch()
    except ValueError as exc:  # a form field that is not a number
        messages.error(request, f"Not launched: {exc}")
    except services.RewardRunError as error:
        show_error(request, error, doing="Not launched")
    else:
        return redirect(f"/runs/{run.pk}/")
    return redirect("scoring:reward_models")


@lead_required
def reward_model_page(request, reward_model_id: int):
    reward_model = get_object_or_404(RewardModel.objects.select_related("run"), pk=reward_model_id)
    dimensions = selectors.reward_model_evaluation(reward_model)
    for dimension in dimensions:
        dimension.svg = scatter_svg(dimension.points, title=dimension.name)
        dimension.metric_values = [
            _format(dimension.metrics.get(name)) for name in selectors.METRIC_NAMES
        ]
        dimension.comparison_values = [
            _format(dimension.metrics.get(name)) for name in selectors.COMPARISON_METRIC_NAMES
        ]
    return render(
        request,
        "scoring/reward_model.html",
        {
            "reward_model": reward_model,
            "dimensions": dimensions,
            "starting_weights": selectors.starting_weights(reward_model),
            "same_split": [
                {**row, "spearman": [_format(v) for v in row["spearman"]]}
                for row in selectors.same_split_models(reward_model)
            ],
            "metric_names": selectors.METRIC_NAMES,
            "metric_labels": [selectors.METRIC_LABELS[name] for name in selectors.METRIC_NAMES],
            "comparison_labels": [
                selectors.COMPARISON_METRIC_LABELS[name]
                for name in selectors.COMPARISON_METRIC_NAMES
            ],
            "judged": any("comparisons" in d.metrics for d in dimensions),
        },
    )


@lead_required
def qa_page(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    return render(
        request,
        "scoring/qa.html",
        {
            "round": round_,
            "qa": model_disagreements(round_id=round_.pk, limit=20),
            "full_page": True,
        },
    )


@lead_required
@require_POST
def qa_action(request, round_id: int):
    """One more rating for a clip, or mark it gold with the rounded human means."""
    round_ = get_object_or_404(Round, pk=round_id)
    clip_id = request.POST.get("clip_id", "")
    clip = Clip.objects.filter(
        pk=int(clip_id) if clip_id.isascii() and clip_id.isdigit() else 0, round=round_
    ).first()
    if clip is None:
        messages.error(request, f"No clip {clip_id!r} in {round_.name}.")
        return _back(request, round_)
    action = request.POST.get("action")
    try:
        if action == "extra_rating":
            clip = request_extra_rating(clip_id=clip.pk)
            messages.success(request, f"Clip {clip.pk} now needs {clip.target_ratings} ratings.")
        elif action == "gold":
            set_gold_from_labels(
                clip_id=clip.pk, created_by=request.user, note="from model-assisted QA"
            )
            messages.success(
                request,
                f"Clip {clip.pk} is a gold clip with the rounded human means; adjust them here.",
            )
            return redirect("annotation:lead_clip", clip_id=clip.pk)
        else:
            messages.error(request, f"Unknown action {action!r}.")
    except ServiceError as error:
        show_error(request, error, doing="Not done")
    return _back(request, round_)


def _back(request, round_: Round):
    """Back where the form was: the QA page or the dashboard (never a URL the client names)."""
    if request.POST.get("from") == "qa":
        return redirect("scoring:qa", round_id=round_.pk)
    return redirect(f"/lead/?round={round_.pk}")
