"""The server's and the console's entry points, which first check that the `server` extra is in.

A workstation installs `sonde-helpdesk` without extras; typing `sonde-server` or `sonde` there
should say what to install, not print an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from sonde.pipes import quiet_when_piped

SERVER_EXTRA = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "rich", "grpc_health")


def missing_server_packages() -> list[str]:
    return [name for name in SERVER_EXTRA if importlib.util.find_spec(name) is None]


def _refuse(program: str, missing: Sequence[str]) -> int:
    sys.stderr.write(
        f"{program}: this installation has the agent only (missing {', '.join(missing)}); "
        "install the server and the technician CLI with: pip install 'sonde-helpdesk[server]'\n"
    )
    return 2


def server_main() -> int:
    missing = missing_server_packages()
    if missing:
        return _refuse("sonde-server", missing)
    # gRPC core's own lines ("Failed to add port to server ...") come before the server's one
    # line saying what went wrong and what to do. GRPC_VERBOSITY=debug still shows them.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from sonde.server.cli import main

    return quiet_when_piped(main)


def console_main() -> int:
    missing = missing_server_packages()
    if missing:
        return _refuse("sonde", missing)
    # gRPC core's own log lines ("Handshake failed with error ...") are not for a technician's
    # terminal: the CLI says what went wrong in one line. GRPC_VERBOSITY=debug still shows them.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from sonde.server.console.cli import main

    return quiet_when_piped(main)
