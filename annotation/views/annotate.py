"""Browser pages of the annotation flow. Thin: check the role, call a selector or service, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from annotation.models import ImportBatch, Round
from annotation.selectors.clips import open_rounds_for
from annotation.selectors.guidelines import round_guidelines
from annotation.selectors.imports import batch_report
from annotation.selectors.me import calibration
from annotation.services import ingest
from annotation.services.guidelines import should_show_guidelines
from labelhub.dimensions import DIMENSIONS, SCORE_MAX, SCORE_MIN
from labelhub.errors import ServiceError
from labelhub.pages import show_error
from labelhub.roles import ANNOTATOR, LEAD, has_role, role_required


@login_required
def home(request):
    rounds = open_rounds_for(request.user) if has_role(request.user, ANNOTATOR) else []
    return render(request, "annotation/home.html", {"rounds": rounds})


@role_required(ANNOTATOR)
def annotate_page(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    dimensions = [
        {
            "key": d.key,
            "name": d.name,
            "question": d.question,
            # (score, anchor text or "") for 1..5: the 1/3/5 anchors sit inside their buttons.
            "scale": [(n, d.anchors.get(n, "")) for n in range(SCORE_MIN, SCORE_MAX + 1)],
        }
        for d in DIMENSIONS
    ]
    return render(
        request,
        "annotation/annotate.html",
        {
            "round": round_,
            "dimensions": dimensions,
            "guidelines": round_guidelines(round_.pk),
            "show_guidelines": should_show_guidelines(round_id=round_.pk, annotator=request.user),
            "undo_window_seconds": settings.LABELHUB_UNDO_WINDOW_SECONDS,
        },
    )


@role_required(LEAD)
def import_page(request):
    if request.method == "POST":
        upload = request.FILES.get("manifest")
        round_id = request.POST.get("round_id") or None
        if upload is None:
            messages.error(request, "Choose a manifest file (JSONL or CSV).")
        elif round_id is not None and not (round_id.isascii() and round_id.isdigit()):
            messages.error(request, f"Cannot read the manifest: round {round_id[:40]!r} is no id")
        else:
            try:
                batch = ingest.import_rows(
                    rows=ingest.read_manifest(upload.read(), name=upload.name),
                    manifest_name=upload.name,
                    created_by=request.user,
                    round_id=int(round_id) if round_id else None,
                )
            except ServiceError as error:
                show_error(request, error, doing="Cannot read the manifest")
            else:
                return redirect("annotation:import_report", batch_id=batch.pk)
    return render(
        request,
        "annotation/import.html",
        {
            "rounds": Round.objects.filter(status=Round.Status.OPEN),
            "batches": ImportBatch.objects.order_by("-created_at")[:20],
            "fields": ingest.KNOWN_FIELDS,
        },
    )


@role_required(LEAD)
def import_report_page(request, batch_id: int):
    batch = get_object_or_404(ImportBatch, pk=batch_id)
    return render(
        request,
        "annotation/import_report.html",
        {"report": batch_report(batch), "batch": batch},
    )


@role_required(ANNOTATOR)
def me_page(request):
    """The annotator's own calibration: counts, time, agreement with consensus, gold accuracy."""
    return render(
        request, "annotation/me.html", {"calibration": calibration(annotator=request.user)}
    )
