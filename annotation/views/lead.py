"""Lead pages: dashboard, clip inspector (with its gold reference), round settings, export
snapshots and the pairwise report. Thin views; the figures come from ``annotation.selectors``,
writes go through ``annotation.services``; plots are inline SVG rendered here."""

from __future__ import annotations

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotation.models import Clip, ExportSnapshot, Round
from annotation.selectors import dashboard as dash
from annotation.selectors.clips import media_url, pulled_clips
from annotation.selectors.exports import list_snapshots
from annotation.selectors.pairwise import source_pairs, win_rate
from annotation.services.exports import request_snapshot_build
from annotation.services.gold import GoldError, remove_gold_reference, set_gold_reference
from annotation.services.pairwise import PairwiseError, create_pairwise_tasks
from annotation.services.ratings import RatingError, restore_clip
from annotation.services.rounds import RoundSettingsError, update_round_settings
from labelhub.dimensions import DIMENSIONS, SCORE_MAX, SCORE_MIN
from labelhub.roles import LEAD, role_required
from labelhub.svg import PALETTE, alpha_svg, histogram_svg, progress_svg

lead_required = role_required(LEAD)


# --- Pages ------------------------------------------------------------------------------------


@lead_required
def dashboard_page(request):
    rounds = list(Round.objects.order_by("-created_at", "-id"))
    if not rounds:
        return render(request, "lead/dashboard.html", {"rounds": []})
    round_id = request.GET.get("round")
    round_ = next((r for r in rounds if str(r.pk) == round_id), rounds[0])
    data = dash.dashboard(round_=round_)
    sources = sorted(
        {s for by in data["histograms"].values() for s in by},
        key=lambda s: (s != "ground_truth", s),
    )
    histograms = [
        {"dimension": dim, "svg": histogram_svg(data["histograms"][dim.key])} for dim in DIMENSIONS
    ]
    return render(
        request,
        "lead/dashboard.html",
        {
            **data,
            "rounds": rounds,
            "dimensions": DIMENSIONS,
            "progress_svg": progress_svg(data["progress"]),
            "alpha_svg": alpha_svg(data["alpha"]),
            "histograms": histograms,
            "legend": [(s, PALETTE[i % len(PALETTE)]) for i, s in enumerate(sources)],
            "pulled": pulled_clips(round_id=round_.pk),
        },
    )


@lead_required
@require_http_methods(["POST"])
def clip_restore(request, clip_id: int):
    """Put a pulled clip back into rating (the audit records who and when)."""
    clip = get_object_or_404(Clip, pk=clip_id)
    try:
        restore_clip(clip_id=clip.pk, lead=request.user)
    except RatingError as exc:
        messages.error(request, f"Clip {clip.pk} not restored: {exc}")
    else:
        messages.success(request, f"Clip {clip.pk} is back in rating; its flags were cleared.")
    return redirect(f"{reverse('annotation:lead_dashboard')}?round={clip.round_id}#pulled-clips")


@lead_required
def clip_page(request, clip_id: int):
    clip = get_object_or_404(
        Clip.objects.select_related("condition", "round", "label", "gold"), pk=clip_id
    )
    gold = getattr(clip, "gold", None)
    return render(
        request,
        "lead/clip.html",
        {
            "clip": clip,
            "video_url": media_url(clip.pk, "video"),
            "condition_url": media_url(clip.pk, "condition"),
            "ratings": dash.clip_ratings(clip_id=clip.pk),
            "dimensions": DIMENSIONS,
            "label": getattr(clip, "label", None),
            "gold": gold,
            "gold_rows": [
                {"dimension": d, "score": gold.scores()[d.key] if gold else None}
                for d in DIMENSIONS
            ],
            "score_choices": range(SCORE_MIN, SCORE_MAX + 1),
        },
    )


def _int_or_raw(value):
    """A form value as an int when it is one; otherwise as sent, for the service to refuse."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _float_or_raw(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@lead_required
@require_http_methods(["POST"])
def clip_gold_set(request, clip_id: int):
    clip = get_object_or_404(Clip, pk=clip_id)
    try:
        set_gold_reference(
            clip_id=clip.pk,
            scores={d.key: _int_or_raw(request.POST.get(d.key)) for d in DIMENSIONS},
            created_by=request.user,
            note=request.POST.get("note", "").strip(),
        )
    except GoldError as exc:
        messages.error(request, f"Gold reference not saved: {exc}")
    else:
        messages.success(request, f"Clip {clip.pk} is a gold clip with these reference scores.")
    return redirect("annotation:lead_clip", clip_id=clip.pk)


@lead_required
@require_http_methods(["POST"])
def clip_gold_remove(request, clip_id: int):
    clip = get_object_or_404(Clip, pk=clip_id)
    remove_gold_reference(clip_id=clip.pk)
    messages.success(request, f"Clip {clip.pk} is no longer a gold clip.")
    return redirect("annotation:lead_clip", clip_id=clip.pk)


@lead_required
@require_http_methods(["GET", "POST"])
def round_settings_page(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    values = {
        "ratings_per_clip": round_.ratings_per_clip,
        "lease_minutes": round_.lease_minutes,
        "gold_rate": round_.gold_rate,
        "disagreement_std": round_.disagreement_std,
        "max_ratings_per_clip": round_.max_ratings_per_clip,
        "status": round_.status,
        "queue_order": round_.queue_order,
    }
    apply_to_existing = False
    status = 200
    if request.method == "POST":
        post = request.POST
        std = post.get("disagreement_std", "").strip()
        values = {
            "ratings_per_clip": _int_or_raw(post.get("ratings_per_clip")),
            "lease_minutes": _int_or_raw(post.get("lease_minutes")),
            "gold_rate": _float_or_raw(post.get("gold_rate")),
            "disagreement_std": None if std == "" else _float_or_raw(std),  # blank = off
            "max_ratings_per_clip": _int_or_raw(post.get("max_ratings_per_clip")),
            "status": post.get("status"),
            "queue_order": post.get("queue_order", round_.queue_order),
        }
        apply_to_existing = post.get("apply_to_existing_clips") == "on"
        try:
            update_round_settings(
                round_id=round_.pk, apply_to_existing_clips=apply_to_existing, **values
            )
        except RoundSettingsError as exc:
            messages.error(request, f"Settings not saved: {exc}")
            status = 400  # the form is shown again with what the lead typed
        else:
            messages.success(request, f"Settings of {round_.name} saved.")
            return redirect("annotation:lead_round", round_id=round_.pk)
    return render(
        request,
        "lead/round.html",
        {
            "round": round_,
            "values": values,
            "apply_to_existing": apply_to_existing,
            "statuses": Round.Status.choices,
            "queue_orders": Round.QueueOrder.choices,
        },
        status=status,
    )


@lead_required
@require_http_methods(["GET", "POST"])
def exports_page(request):
    error = ""
    if request.method == "POST":
        try:
            round_ids = [int(r) for r in request.POST.getlist("rounds")] or None
            request_snapshot_build(
                round_ids=round_ids,
                test_fraction=float(request.POST.get("test_fraction", "0.1")),
                seed=int(request.POST.get("seed", "0")),
                include_ratings=request.POST.get("include_ratings") == "on",
                created_by=request.user,
            )
            return redirect("annotation:lead_exports")
        except ValueError as exc:
            error = str(exc)
    return render(
        request,
        "lead/exports.html",
        {
            "snapshots": list_snapshots().prefetch_related("dataset_folders"),
            "rounds": Round.objects.order_by("-created_at"),
            "error": error,
        },
    )


@lead_required
def export_file(request, snapshot_id: int, kind: str):
    snapshot = get_object_or_404(ExportSnapshot, pk=snapshot_id, status=ExportSnapshot.Status.READY)
    if kind not in snapshot.files:
        raise Http404("no such file in this snapshot")
    name = snapshot.files[kind]["name"]
    handle = default_storage.open(name, "rb")  # FileResponse streams and closes it
    return FileResponse(
        handle, as_attachment=True, filename=f"snapshot{snapshot.pk}-{name.rsplit('/', 1)[-1]}"
    )


@lead_required
@require_http_methods(["GET", "POST"])
def pairwise_report_page(request):
    message = ""
    if request.method == "POST":
        try:
            created = create_pairwise_tasks(
                source_a=request.POST["source_a"].strip(),
                source_b=request.POST["source_b"].strip(),
                judges_needed=int(request.POST.get("judges_needed", "3")),
                batch=request.POST.get("batch", ""),
            )
            message = f"{len(created)} pairwise tasks created."
        except (KeyError, ValueError, PairwiseError) as exc:
            message = f"Could not create tasks: {exc}"
    reports = [win_rate(source_x=x, source_y=y) for x, y in source_pairs()]
    sources = sorted(set(Clip.objects.values_list("source_name", flat=True).distinct()))
    return render(
        request,
        "lead/pairwise_report.html",
        {"reports": reports, "sources": sources, "message": message},
    )
