"""Media to the browser through an authorised path: HTTP Range for local files, presigned URLs on S3."""

from __future__ import annotations

import mimetypes
import re

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from annotation.models import Clip
from annotation.selectors.clips import MEDIA_KINDS, can_view_clip, clip_file_name

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024


def _file_iter(handle, start: int, length: int):
    handle.seek(start)
    remaining = length
    try:
        while remaining > 0:
            block = handle.read(min(_CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        handle.close()


@login_required
@require_GET
def clip_media(request, clip_id: int, kind: str):
    if kind not in MEDIA_KINDS:
        raise Http404("unknown media kind")
    clip = get_object_or_404(Clip.objects.select_related("condition"), pk=clip_id)
    if not can_view_clip(request.user, clip.pk):
        return HttpResponseForbidden("You may not view this clip.")
    name = clip_file_name(clip, kind)
    if not name:
        raise Http404("this clip has no such file")
    if not hasattr(default_storage, "path"):
        return HttpResponseRedirect(default_storage.url(name))  # S3: short-lived presigned URL
    try:
        path = default_storage.path(name)
        size = default_storage.size(name)
    except (FileNotFoundError, NotImplementedError):
        raise Http404("file missing from storage") from None
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    range_header = request.headers.get("Range", "")
    match = _RANGE.match(range_header.strip())
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
        else:  # suffix range: the last N bytes
            start = max(size - int(match.group(2)), 0)
            end = size - 1
        end = min(end, size - 1)
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        length = end - start + 1
        response = FileResponse(
            _file_iter(open(path, "rb"), start, length), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response
