"""What a browser page does with a service's refusal (``labelhub.errors.ServiceError``).

The API's counterpart is ``labelhub.api.exception_handler``; both read ``STATUS_BY_CODE``.
"""

from __future__ import annotations

from django.contrib import messages

from labelhub.errors import ServiceError

STATUS_BY_CODE = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409}


def status_for(error: ServiceError) -> int:
    """The HTTP status that answers a refused request."""
    return STATUS_BY_CODE[error.code]


def show_error(request, error: ServiceError, *, doing: str = "") -> int:
    """Show ``error`` on the next page the user sees (``doing``, e.g. "Not saved", leads the
    message) and return the status for a page that renders its form again with it."""
    messages.error(request, f"{doing}: {error}" if doing else str(error))
    return status_for(error)
