"""Lead pages: dashboard, clip inspector (with its gold reference), round settings, export
snapshots and the pairwise report. Thin views; the figures come from ``annotation.selectors``,
writes go through ``annotation.services``; plots are inline SVG rendered here."""

from __future__ import annotations

from html import escape

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from annotation.models import Clip, ExportSnapshot, Round
from annotation.selectors import dashboard as dash
from annotation.selectors.clips import media_url
from annotation.selectors.exports import list_snapshots
from annotation.selectors.pairwise import source_pairs, win_rate
from annotation.services.exports import request_snapshot_build
from annotation.services.gold import GoldError, remove_gold_reference, set_gold_reference
from annotation.services.pairwise import PairwiseError, create_pairwise_tasks
from annotation.services.rounds import RoundSettingsError, update_round_settings
from labelhub.dimensions import DIMENSIONS, SCORE_MAX, SCORE_MIN
from labelhub.roles import LEAD, role_required

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096", "#b7791f")


lead_required = role_required(LEAD)


# --- SVG plots --------------------------------------------------------------------------------


def progress_svg(progress: list[dash.RoundProgress]) -> str:
    """One stacked bar per round: complete / in progress / untouched."""
    width, bar_h, gap, label_w = 560, 18, 8, 150
    parts = []
    colours = (("complete", "#38a169"), ("in_progress", "#ecc94b"), ("untouched", "#cbd5e0"))
    for i, row in enumerate(progress):
        y = i * (bar_h + gap)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(row.name)}</text>')
        x = float(label_w)
        for attr, colour in colours:
            value = getattr(row, attr)
            w = (width - label_w - 60) * value / row.total if row.total else 0
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{attr.replace('_', ' ')}: {value}</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{width - 55}" y="{y + 13}" font-size="12">{row.complete}/{row.total}</text>'
        )
    height = max(1, len(progress)) * (bar_h + gap)
    return _svg(width, height, "".join(parts), "Progress per round")


def histogram_svg(by_source: dict[str, list[int]]) -> str:
    """Share of ratings scoring 1..5, one bar per source in each score group."""
    width, height, pad = 260, 120, 20
    sources = list(by_source)
    group_w = (width - pad) / (SCORE_MAX - SCORE_MIN + 1)
    bar_w = max(2.0, (group_w - 6) / max(1, len(sources)))
    parts = []
    for s, source in enumerate(sources):
        counts = by_source[source]
        total = sum(counts) or 1
        for i, n in enumerate(counts):
            h = (height - pad - 4) * n / total
            x = pad + i * group_w + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(source)}: score {i + SCORE_MIN}, '
                f"{n} ratings ({100 * n / total:.0f}%)</title></rect>"
            )
    for i in range(SCORE_MAX - SCORE_MIN + 1):
        parts.append(
            f'<text x="{pad + i * group_w + group_w / 2 - 3:.1f}" y="{height - 5}" font-size="11">{i + SCORE_MIN}</text>'
        )
    return _svg(width, height, "".join(parts), "Score distribution by source")


def alpha_svg(alpha: dict[str, dict[str, float | None]]) -> str:
    """Horizontal bars of alpha per dimension (interval dark, ordinal light), axis 0..1."""
    width, row_h, label_w = 520, 26, 170
    parts = []
    for i, dim in enumerate(DIMENSIONS):
        y = i * row_h
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{escape(dim.name)}</text>')
        for j, (level, colour) in enumerate((("interval", "#2b6cb0"), ("ordinal", "#90cdf4"))):
            value = alpha[level][dim.key]
            w = (width - label_w - 50) * max(0.0, value) if value is not None else 0
            text = "n/a" if value is None else f"{value:.2f}"
            parts.append(
                f'<rect x="{label_w}" y="{y + j * 10 + 2}" width="{w:.1f}" height="9" fill="{colour}">'
                f"<title>{level} alpha: {text}</title></rect>"
            )
        shown = alpha["interval"][dim.key]
        parts.append(
            f'<text x="{width - 45}" y="{y + 14}" font-size="12">{"n/a" if shown is None else f"{shown:.2f}"}</text>'
        )
    return _svg(
        width, len(DIMENSIONS) * row_h, "".join(parts), "Krippendorff's alpha per dimension"
    )


def _svg(width: int, height: int, body: str, title: str) -> str:
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{body}</svg>'
    )


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
        },
    )


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
            "snapshots": list_snapshots(),
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
