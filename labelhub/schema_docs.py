"""``extend_schema`` for our API views, handed to drf-spectacular when the schema is generated.

drf-spectacular's own decorator subclasses the schema class as the view module is imported, which
loads its generator (``drf_spectacular.openapi``, and with it ``django.test``) in every process
that imports a view: every command, worker and web process. This one only records its arguments
on the method; ``labelhub.schema.SchemaGenerator`` passes them to drf-spectacular's decorator,
in the same order, the first time it inspects the view. Same arguments, same schema.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from drf_spectacular.utils import extend_schema as spectacular_extend_schema

_PENDING = "_extend_schema_pending"


def extend_schema(**kwargs) -> Callable:
    """Record drf-spectacular's ``extend_schema`` arguments on a view method (see the module)."""

    def record(method):
        method.__dict__.setdefault(_PENDING, []).append(kwargs)
        return method

    return record


def apply_pending(view_class: type) -> None:
    """Apply what ``extend_schema`` recorded on the methods of ``view_class`` and its bases (once:
    the records are consumed)."""
    for klass in view_class.__mro__:
        for method in vars(klass).values():
            if not inspect.isfunction(method):
                continue
            for kwargs in method.__dict__.pop(_PENDING, ()):
                spectacular_extend_schema(**kwargs)(method)
