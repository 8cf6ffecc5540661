"""Media to the browser through an authorised path: HTTP Range for local files, presigned URLs on S3.

Whatever a person submitted is hostile until proven otherwise, so a response never trusts the
submitted file name: the content type comes from what ingest produced (a browser MP4, a JPEG
poster, a raster condition image recognised by its bytes), anything else is an opaque download,
and every response carries ``Content-Security-Policy: sandbox`` and ``nosniff`` so a file that
slipped through cannot run script on the app's origin.
"""

from __future__ import annotations

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
# A byte offset longer than this is beyond any file we store (and int() of thousands of digits
# is refused by Python): treat it as "past the end".
_MAX_OFFSET_DIGITS = 18
_CHUNK = 256 * 1024
OPAQUE = "application/octet-stream"
# Ingest writes these itself (ffmpeg output), whatever the submitted file was.
_PRODUCED_BY_INGEST = {"video": "video/mp4", "poster": "image/jpeg"}
# Images a person supplied (condition, character reference): only rasters the browser shows
# without running anything, recognised by their first bytes.
_RASTER_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_RASTER_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
SECURITY_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def media_content_type(kind: str, name: str, head: bytes | None) -> str:
    """The type to serve a clip's file with; ``head`` is its first bytes (None when not read)."""
    if kind in _PRODUCED_BY_INGEST:
        return _PRODUCED_BY_INGEST[kind]
    if kind in ("condition", "character"):
        if head is None:  # remote storage: the stored name is ingest's own (hash + raster suffix)
            return _RASTER_SUFFIX.get("." + name.rsplit(".", 1)[-1].lower(), OPAQUE)
        for magic, content_type in _RASTER_MAGIC:
            if head.startswith(magic):
                return content_type
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return "image/webp"
    return OPAQUE  # the original upload, or an image that is not a known raster


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """``(start, end)`` of a single ``bytes=`` range, None to serve the whole file (no or
    malformed header, as RFC 9110 says), or "unsatisfiable" for a range past the end."""
    match = _RANGE.match(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        if len(first) > _MAX_OFFSET_DIGITS:
            return "unsatisfiable"
        start = int(first)
        end = size - 1 if not last or len(last) > _MAX_OFFSET_DIGITS else int(last)
        if last and end < start:
            return None  # "bytes=9-3" is invalid: ignored, the whole file is sent
    else:  # suffix range: the last N bytes
        suffix = size if len(last) > _MAX_OFFSET_DIGITS else int(last)
        if suffix == 0:
            return "unsatisfiable"
        start, end = max(size - suffix, 0), size - 1
    end = min(end, size - 1)
    if start >= size:
        return "unsatisfiable"
    return start, end


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


def _secured(response: HttpResponse, content_type: str, kind: str) -> HttpResponse:
    for header, value in SECURITY_HEADERS.items():
        response[header] = value
    if content_type == OPAQUE:
        response["Content-Disposition"] = f'attachment; filename="{kind}"'
    return response


def serve_stored_file(request, name: str, kind: str) -> HttpResponse:
    """A stored file to a browser the caller has already authorised: its type from what ingest
    produced (``media_content_type``), ``Content-Security-Policy: sandbox`` and ``nosniff``,
    opaque types as a download, HTTP Range on local storage, a short-lived presigned URL that
    names the same type (and forces the download) on S3."""
    try:
        path = default_storage.path(name)
    except NotImplementedError:  # S3: a short-lived presigned URL that names the type itself
        content_type = media_content_type(kind, name, None)
        parameters = {"ResponseContentType": content_type}
        if content_type == OPAQUE:
            parameters["ResponseContentDisposition"] = f'attachment; filename="{kind}"'
        return HttpResponseRedirect(default_storage.url(name, parameters=parameters))
    try:
        size = default_storage.size(name)
        handle = open(path, "rb")  # noqa: SIM115 - the response streams and closes it
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    content_type = media_content_type(kind, name, handle.read(16))
    handle.seek(0)
    span = parse_range(request.headers.get("Range", ""), size)
    if span == "unsatisfiable":
        handle.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return _secured(response, content_type, kind)
    if span is not None:
        start, end = span
        length = end - start + 1
        response = FileResponse(
            _file_iter(handle, start, length), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        response = FileResponse(handle, content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return _secured(response, content_type, kind)


@login_required
@require_GET
def clip_media(request, clip_id: int, kind: str):
    if kind not in MEDIA_KINDS:
        raise Http404("unknown media kind")
    clip = get_object_or_404(Clip.objects.select_related("condition"), pk=clip_id)
    if not can_view_clip(request.user, clip.pk):
        return _secured(HttpResponseForbidden("You may not view this clip."), "", kind)
    name = clip_file_name(clip, kind)
    if not name:
        raise Http404("this clip has no such file")
    return serve_stored_file(request, name, kind)
