"""API pieces every app shares: the token endpoint, documented error responses, the exception
handler that answers a service's refusal, request-field validators, and the JSON 404/500 answers
under /api/.

Every operation's schema lists the errors it can answer with, so a generated client or a fuzzer
(tests/test_api_fuzz.py) sees the truth: ``errors(409)`` documents a view's own codes.
"""

from __future__ import annotations

import functools

from django.http import JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback
from rest_framework.views import exception_handler as drf_exception_handler

from labelhub.errors import ServiceError
from labelhub.pages import status_for
from labelhub.schema_docs import extend_schema
from labelhub.security import issue_token

BIGINT_MAX = 2**63 - 1  # Postgres bigint: ids and seeds past it cannot be stored or looked up


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong, for a person to read")


ERROR_TEXT = {
    400: "invalid input: {field: [messages]} for a field, or {detail} for the request",
    401: "not authenticated",
    403: "not logged in, or lacking the role or the hold on the object this operation needs",
    404: "no such object",
    409: "conflicts with the object's current state",
    413: "request body too large",
    429: "too many requests or failed logins; retry later",
}
FRAMEWORK_ERRORS = (400, 401, 403, 404, 413, 429)


def error_response(code: int) -> OpenApiResponse:
    # A DRF validation error is an object of field -> messages, so 400 is a free-form object.
    schema = OpenApiTypes.OBJECT if code == 400 else DetailSerializer
    return OpenApiResponse(schema, description=ERROR_TEXT[code])


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses for ``codes`` (labelhub.schema adds the framework's own to
    every operation: 400, 401, 403, 404, 413, 429)."""
    return {code: error_response(code) for code in sorted({*codes, *FRAMEWORK_ERRORS})}


def exception_handler(exc, context):
    """DRF's handler, plus a service's refusal: ``{"detail": message, "code": code}`` with the
    status its code maps to (``labelhub.pages.STATUS_BY_CODE``). Views let services raise."""
    if isinstance(exc, ServiceError):
        set_rollback()  # as DRF does for its own errors: nothing the request wrote is kept
        return Response({"detail": str(exc), "code": exc.code}, status=status_for(exc))
    return drf_exception_handler(exc, context)


@functools.cache
def _spectacular_view():
    # drf-spectacular's generator (a second of imports) loads with the first request for the
    # schema, not with every manage.py command and worker start.
    from drf_spectacular.views import SpectacularAPIView

    return SpectacularAPIView.as_view()


@csrf_exempt  # as every DRF view is: DRF checks CSRF itself for session users
def schema_view(request, *args, **kwargs):
    """GET /api/schema/: the OpenAPI schema of the API (logged-in users)."""
    return _spectacular_view()(request, *args, **kwargs)


def not_found(request, exception=None):
    """handler404: JSON under /api/ (what API clients parse), the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/, the standalone page elsewhere; never the debug page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


def _reject_nul(value, path: str = "") -> None:
    if isinstance(value, str) and "\x00" in value:
        raise serializers.ValidationError(f"{path or 'value'}: NUL characters are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key, path)
            _reject_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, f"{path}[{index}]")


class JSONObjectField(serializers.DictField):
    """A JSON object of free-form parameters, with no NUL character anywhere in it.

    Postgres stores neither a NUL in text nor a \\u0000 in jsonb, so such a value must be a 400
    here, not a database error later.
    """

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        _reject_nul(value)
        return value


def id_field(**kwargs) -> serializers.IntegerField:
    """A primary key in a request body: a positive integer that Postgres can hold."""
    return serializers.IntegerField(min_value=1, max_value=BIGINT_MAX, **kwargs)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text='send as the header "Authorization: Token <token>"')


class ObtainTokenView(APIView):
    """POST username + password: a new API token for the user (it replaces the previous one).

    Scripts send ``Authorization: Token <token>`` instead of basic auth, so the server checks the
    password once here rather than hashing it on every request. Failed attempts count towards the
    login lockout (django-axes) like any other login. The database keeps only a digest of the
    token, so it is shown once: keep it, or ask for a new one.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: TokenSerializer, **errors(400)},
        auth=[],
    )
    def post(self, request):
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        credentials.is_valid(raise_exception=True)
        return Response({"token": issue_token(credentials.validated_data["user"])})
