"""Domain errors: raised by domain and storage code, mapped to gRPC status in server/api/errors.py.

Each message is what a technician reads: it says what was refused and why, never a secret
or a stack trace.
"""

from __future__ import annotations


class SondeError(Exception):
    """Base of every error the server turns into a gRPC status."""


class NotFound(SondeError):
    """The named thing (agent, ticket, snapshot, user, token) does not exist."""


class InvalidArgument(SondeError):
    """The request is malformed or a value is out of range."""


class Conflict(SondeError):
    """The request does not fit the current state (closing a closed ticket, a duplicate name)."""


class PermissionDenied(SondeError):
    """The caller is known but not allowed to do this."""


class Unauthenticated(SondeError):
    """No credentials, or credentials that are wrong, expired or used up."""


class Unavailable(SondeError):
    """The target cannot be reached now (an offline agent); trying later may work."""


class DeadlineExceeded(SondeError):
    """The target did not answer in time."""


class ResourceExhausted(SondeError):
    """The caller is over a limit (too many failures from its address); it may retry after
    `retry_after_ms`, which the answer carries as its retry hint (sonde.wire_limits)."""

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
