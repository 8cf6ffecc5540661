"""The OpenAPI schema class (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]).

drf-spectacular documents what each view declares. The framework itself can answer any operation
with a few more: 400 for a body or query it cannot parse, 401/403 for a missing login or role,
404 for an id that names nothing, 413 for a body over the size limit, 429 when throttled. This
class adds those to every operation, so the schema is true without repeating them on each view;
views declare the rest (409, ...) with ``labelhub.api.errors``. DRF loads this module only when
it generates the schema (drf-spectacular's generator is slow to import), and so does
SPECTACULAR_SETTINGS["DEFAULT_GENERATOR_CLASS"]: the generator below first applies what the views
declared with ``labelhub.schema_docs.extend_schema``.
"""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator as SpectacularSchemaGenerator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from labelhub.api import FRAMEWORK_ERRORS, error_response
from labelhub.schema_docs import apply_pending


class SchemaGenerator(SpectacularSchemaGenerator):
    def create_view(self, callback, method, request=None):
        apply_pending(callback.cls)
        return super().create_view(callback, method, request)


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
