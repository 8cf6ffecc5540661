"""Request-level defences shared by every API: login lockout, write throttling, body size limits,
API tokens stored as digests.

Settings name the limits (labelhub/settings.py); this module only applies them.
"""

from __future__ import annotations

import codecs
import hashlib
import secrets

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import UserRateThrottle
from rest_framework.utils import json  # strict_constant: no NaN or Infinity


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes lockout for every login over HTTP: the login form, basic auth and token requests.

    DRF hands authentication backends its own ``Request`` wrapper; axes flags the Django request it
    wraps, so the lockout middleware sees the flag. Code that authenticates with no request at all
    (a shell, a management command) is not an attempt from the network and is not counted.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        django_request = getattr(request, "_request", request)
        try:
            return super().authenticate(django_request, username, password, **kwargs)
        except AxesBackendPermissionDenied:
            django_request.axes_locked_out = True  # the middleware answers 429
            raise


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: a 429 that says why, as JSON under /api/ (what API clients parse)."""
    minutes = settings.LABELHUB_LOGIN_COOLOFF_MINUTES
    detail = f"Too many failed logins: locked for {minutes} minutes. Try again later."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=429)
    return HttpResponse(detail, status=429, content_type="text/plain; charset=utf-8")


class WriteRateThrottle(UserRateThrottle):
    """Throttle unsafe methods (POST, PUT, PATCH, DELETE) per user, or per IP when anonymous.

    Reads stay unthrottled: the annotation UI polls them, and they change nothing.
    """

    scope = "write"

    def get_rate(self):
        return settings.LABELHUB_WRITE_RATE

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)


def _body_too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


class RequestBodyTooLarge(APIException):
    status_code = 413
    default_detail = "request body too large"
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with Django's DATA_UPLOAD_MAX_MEMORY_SIZE applied to the body.

    DRF reads the request stream itself, so Django's limit (enforced only by ``request.body``
    and form parsing) does not reach it; this reads at most one byte past the limit.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise RequestBodyTooLarge(_body_too_large(limit))
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body is over its limit with a 413, before anything reads it.

    Multipart bodies (file uploads) may reach LABELHUB_MAX_REQUEST_BYTES; every other body
    (JSON, forms) DATA_UPLOAD_MAX_MEMORY_SIZE, which Django would otherwise enforce only when the
    body is read, as a bare 400. Django reads at most Content-Length bytes, so a body with no or
    a smaller Content-Length cannot exceed it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/")
        limit = settings.LABELHUB_MAX_REQUEST_BYTES
        if not multipart and settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
            limit = min(limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not (declared.isascii() and declared.isdigit()):
            return JsonResponse({"detail": "invalid Content-Length header"}, status=400)
        # Length first: int() of a header with thousands of digits is slow and pointless.
        if len(declared) > len(str(limit)) or int(declared) > limit:
            return JsonResponse({"detail": _body_too_large(limit)}, status=413)
        return self.get_response(request)


# --- API tokens: only a digest is stored ----------------------------------------------------------


def token_digest(secret: str) -> str:
    """What the database keeps of an API token: 40 hex characters of BLAKE2b (DRF's key width).
    A copy of the table gives no usable token."""
    return hashlib.blake2b(secret.encode(), digest_size=20).hexdigest()


def issue_token(user) -> str:
    """A new API token for ``user``, replacing any previous one; the secret is returned once and
    never stored."""
    from rest_framework.authtoken.models import Token

    secret = secrets.token_hex(20)
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        Token.objects.create(user=user, key=token_digest(secret))
    return secret


class HashedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <secret>``, looked up by the secret's digest (one indexed query)."""

    def authenticate_credentials(self, key):
        return super().authenticate_credentials(token_digest(key))
