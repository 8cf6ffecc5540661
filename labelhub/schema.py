"""The OpenAPI schema class (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]).

drf-spectacular documents what each view declares. The framework itself can answer any operation
with a few more: 400 for a body or query it cannot parse, 401/403 for a missing login or role,
404 for an id that names nothing, 413 for a body over the size limit, 429 when throttled. This
class adds those to every operation, so the schema is true without repeating them on each view;
views declare the rest (409, ...) with ``labelhub.api.errors``.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


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


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in FRAMEWORK_ERRORS:
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    error_response(code), str(code), direction=direction
                )
        return responses
