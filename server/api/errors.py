"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

import grpc

from sonde.server import errors
from sonde.wire_limits import RETRY_AFTER_MS_KEY

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.SondeError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_for(error: errors.SondeError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        code = STATUS_BY_ERROR.get(kind)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: errors.SondeError) -> None:
    """End the call with the error's status and message (and its retry hint, if it has one)."""
    if isinstance(error, errors.ResourceExhausted):
        context.set_trailing_metadata(((RETRY_AFTER_MS_KEY, str(error.retry_after_ms)),))
    await context.abort(status_for(error), str(error))


P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Decorate an async servicer method: domain errors abort the call with their status.

    The servicer's last positional argument must be the grpc.aio.ServicerContext.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except errors.SondeError as error:
            # grpc.aio's context class does not subclass grpc.aio.ServicerContext: duck-type it.
            context = cast("grpc.aio.ServicerContext[Any, Any]", args[-1])
            await abort_with(context, error)
            raise AssertionError("unreachable: abort raises") from error

    return wrapper
