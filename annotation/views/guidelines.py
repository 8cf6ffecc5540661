"""Leads write a round's guidelines (Markdown) and pick example clips per dimension and score."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.models import Round
from annotation.selectors.guidelines import example_candidates, round_guidelines
from annotation.services.guidelines import (
    GuidelineError,
    add_example,
    remove_example,
    render_markdown,
    save_guidelines,
)
from labelhub.dimensions import DIMENSION_KEYS, DIMENSIONS, SCORE_MAX, SCORE_MIN
from labelhub.pages import show_error
from labelhub.roles import LEAD, role_required


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@role_required(LEAD)
def guidelines_page(request, round_id: int):
    """GET shows the editor, the examples and candidate clips; POST saves the text (or previews)."""
    round_ = get_object_or_404(Round, pk=round_id)
    current = round_guidelines(round_.pk)
    text = current["text"]
    preview = None
    status = 200
    if request.method == "POST":
        text = request.POST.get("text", "")
        if request.POST.get("action") == "preview":
            preview = render_markdown(text)
        else:
            try:
                save_guidelines(round_id=round_.pk, text=text, updated_by=request.user)
            except GuidelineError as exc:
                status = show_error(request, exc, doing="Guidelines not saved")
            else:
                messages.success(request, "Guidelines saved.")
                return redirect("annotation:lead_guidelines", round_id=round_.pk)
    dimension = request.GET.get("dimension", DIMENSION_KEYS[0])
    if dimension not in DIMENSION_KEYS:
        dimension = DIMENSION_KEYS[0]
    score = _int_or_none(request.GET.get("score")) or 3
    score = min(max(score, SCORE_MIN), SCORE_MAX)
    return render(
        request,
        "lead/guidelines.html",
        {
            "round": round_,
            "text": text,
            "preview": preview,
            "guidelines": round_guidelines(round_.pk),
            "dimensions": DIMENSIONS,
            "scores": range(SCORE_MIN, SCORE_MAX + 1),
            "dimension": dimension,
            "score": score,
            "candidates": example_candidates(round_id=round_.pk, dimension=dimension, score=score),
        },
        status=status,
    )


@role_required(LEAD)
@require_POST
def example_add(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    dimension = request.POST.get("dimension", "")
    score = _int_or_none(request.POST.get("score"))
    clip_id = _int_or_none(request.POST.get("clip_id"))
    try:
        if clip_id is None:
            raise GuidelineError("the clip id must be a number")
        add_example(
            round_id=round_.pk,
            clip_id=clip_id,
            dimension=dimension,
            score=score if score is not None else -1,
            note=request.POST.get("note", ""),
            created_by=request.user,
        )
    except GuidelineError as exc:
        show_error(request, exc, doing="Example not added")
    else:
        messages.success(request, f"Example added: a {score} for {dimension.replace('_', ' ')}.")
    url = reverse("annotation:lead_guidelines", args=[round_.pk])
    return redirect(f"{url}?dimension={dimension}&score={score or ''}")


@role_required(LEAD)
@require_POST
def example_remove(request, round_id: int, example_id: int):
    try:
        remove_example(round_id=round_id, example_id=example_id)
    except GuidelineError as exc:
        show_error(request, exc)
    else:
        messages.success(request, "Example removed.")
    return redirect("annotation:lead_guidelines", round_id=round_id)
