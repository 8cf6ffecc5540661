"""Lead pages for dataset folders: ask for a snapshot's folder (built on the default queue) and
download a ready one as a single tar, streamed from storage with its exact size."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotation.services.dataset_folders import (
    DatasetFolderError,
    dataset_archive,
    request_dataset_folder,
)
from labelhub.roles import LEAD, role_required

lead_required = role_required(LEAD)


@lead_required
@require_POST
def request_folder(request, snapshot_id: int):
    try:
        folder = request_dataset_folder(
            snapshot_id=snapshot_id,
            with_originals=request.POST.get("originals") == "on",
            created_by=request.user,
        )
        messages.info(request, f"Dataset folder of snapshot {snapshot_id}: {folder.status}.")
    except DatasetFolderError as exc:
        messages.error(request, str(exc))
    return redirect("annotation:lead_exports")


@lead_required
def download_folder(request, folder_id: int):
    try:
        name, size, chunks = dataset_archive(folder_id)
    except DatasetFolderError as exc:
        raise Http404(str(exc)) from None
    response = StreamingHttpResponse(chunks, content_type="application/x-tar")
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
