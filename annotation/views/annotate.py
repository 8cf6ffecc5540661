"""Browser pages of the annotation flow. Thin: check the role, call a selector or service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from annotation.models import ImportBatch, Round
from annotation.selectors.clips import open_rounds_for
from annotation.selectors.imports import batch_report
from annotation.services import ingest
from labelhub.dimensions import DIMENSIONS
from labelhub.roles import ANNOTATOR, LEAD, has_role, role_required


@login_required
def home(request):
    rounds = open_rounds_for(request.user) if has_role(request.user, ANNOTATOR) else []
    return render(request, "annotation/home.html", {"rounds": rounds})


@role_required(ANNOTATOR)
def annotate_page(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    dimensions = [
        {"key": d.key, "name": d.name, "question": d.question, "anchors": sorted(d.anchors.items())}
        for d in DIMENSIONS
    ]
    return render(request, "annotation/annotate.html", {"round": round_, "dimensions": dimensions})


@role_required(LEAD)
def import_page(request):
    if request.method == "POST":
        upload = request.FILES.get("manifest")
        round_id = request.POST.get("round_id") or None
        if upload is None:
            messages.error(request, "Choose a manifest file (JSONL or CSV).")
        else:
            try:
                rows = ingest.parse_manifest(upload.read().decode("utf-8"), name=upload.name)
                batch = ingest.import_rows(
                    rows=rows,
                    manifest_name=upload.name,
                    created_by=request.user,
                    round_id=int(round_id) if round_id else None,
                )
            except (ingest.ManifestError, UnicodeDecodeError, ValueError) as exc:
                messages.error(request, f"Cannot read the manifest: {exc}")
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
