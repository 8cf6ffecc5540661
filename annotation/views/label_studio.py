"""The lead's Label Studio import page: upload a project's JSON export (and a mapping file), get the
per-task report; the same service as ``manage.py import_label_studio``."""

from __future__ import annotations

import json

from django.shortcuts import render

from annotation.services.label_studio import (
    MAPPING_EXAMPLE,
    LabelStudioError,
    import_label_studio,
    read_export,
    read_mapping,
)
from labelhub.roles import LEAD, role_required


@role_required(LEAD)
def label_studio_import_page(request):
    report, error = None, ""
    if request.method == "POST":
        export = request.FILES.get("export")
        mapping = request.FILES.get("mapping")
        round_name = (request.POST.get("round") or "").strip()
        try:
            if export is None or not round_name:
                raise LabelStudioError("choose the export file and name the round")
            rules = (
                read_mapping(mapping.read().decode("utf-8")) if mapping else dict(MAPPING_EXAMPLE)
            )
            report = import_label_studio(
                tasks=read_export(export.read().decode("utf-8")),
                mapping=rules,
                round_name=round_name[:200],
                created_by=request.user,
                export_name=export.name[:300],
            )
        except (LabelStudioError, UnicodeDecodeError, ValueError) as exc:
            error = str(exc)
    return render(
        request,
        "annotation/label_studio_import.html",
        {
            "report": report,
            "error": error,
            "mapping_example": json.dumps(MAPPING_EXAMPLE, indent=2),
        },
    )
