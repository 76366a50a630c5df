"""Why the server's database cannot be used, in one line that names it and says what to do.

The drivers' errors arrive wrapped (SQLAlchemy around asyncpg, Alembic around both); this
looks through the chain for the reason a person can act on: nothing listening, a role or a
database that does not exist, a password refused, a SQLite file that cannot be opened.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from sonde.server.errors import SondeError


class DatabaseUnavailable(SondeError):
    """The database named by --db or server.json refused us or cannot be reached."""


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "orig", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def database_refusal(url: str, error: BaseException) -> DatabaseUnavailable | None:
    """The refusal to report for `error`, or None when it is not about reaching the database."""
    parsed = make_url(url)
    # As the admin writes it (postgresql://, not the driver's name), without the password.
    shown = parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        for cause in _causes(error):
            if isinstance(cause, sqlite3.OperationalError | PermissionError):
                return DatabaseUnavailable(
                    f"cannot open the SQLite database {parsed.database}: {_first_line(cause)}; "
                    "check that its folder exists and that this user may write there"
                )
        return None
    where = f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}"
    user = parsed.username or "(the current user)"
    for cause in _causes(error):
        if isinstance(cause, asyncpg.InvalidPasswordError):
            return DatabaseUnavailable(
                f"{where} refused the password of {user} ({_first_line(cause)}); "
                f"check the password in the database URL {shown}"
            )
        if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
            return DatabaseUnavailable(
                f"{where} refused the connection: {_first_line(cause)}; create the role "
                f"(createuser {user}) or name one that exists in the database URL {shown}"
            )
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return DatabaseUnavailable(
                f"{where}: {_first_line(cause)}; create it (createdb -O {user} "
                f"{parsed.database}) or name one that exists in the database URL {shown}"
            )
        if isinstance(cause, asyncpg.PostgresError):
            return None  # a query's error, not the connection's: let it be seen whole
        if isinstance(cause, socket.gaierror):
            return DatabaseUnavailable(
                f"cannot reach {where}: the host name does not resolve ({cause.strerror}); "
                f"check the host in the database URL {shown}"
            )
        if isinstance(cause, ConnectionRefusedError):
            return DatabaseUnavailable(
                f"cannot reach {where}: connection refused (nothing listens there); check that "
                f"PostgreSQL is running and that the database URL {shown} names its host and port"
            )
        if isinstance(cause, OSError | TimeoutError):
            return DatabaseUnavailable(
                f"cannot reach {where}: {cause.strerror or _first_line(cause)}; check the "
                f"network and the database URL {shown}"
            )
    return None
