"""The one error type services raise for a request they refuse.

A service says *why* it refuses with a ``code`` from ``CODES``, never with an HTTP status: the API
(``labelhub.api.exception_handler``) and the pages (``labelhub.pages.show_error``) turn codes into
statuses and messages in one place each (``labelhub.pages.STATUS_BY_CODE``).
"""

from __future__ import annotations

CODES = ("invalid", "forbidden", "not_found", "conflict")


class ServiceError(Exception):
    """A request a service refuses; ``str(error)`` says why in words a person can act on.

    ``code``: ``invalid`` (the input is wrong), ``forbidden`` (not the caller's to do),
    ``not_found`` (what it names does not exist), ``conflict`` (it cannot be done in the current
    state: a closed round, a pulled clip, work already done). A subclass sets its usual code as a
    class attribute; a raise site may name another.
    """

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if self.code not in CODES:
            raise ValueError(f"unknown error code {self.code!r}; one of {', '.join(CODES)}")
