"""The one auth layer: who is calling, and may they call this method.

The interceptor (below) authenticates the bearer token, checks the method's minimum role from
METHOD_ROLES (deny by default: a method absent from the table is refused), and runs the handler
with the caller's Principal in a context variable that servicers read with current_principal().
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from server.domain.roles import Principal
from server.errors import Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("sonde_principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the current RPC."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call carries no authenticated technician")
    return principal


@contextlib.contextmanager
def principal_scope(principal: Principal) -> Iterator[None]:
    """Run the enclosed code as `principal` (used by the interceptor)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)
