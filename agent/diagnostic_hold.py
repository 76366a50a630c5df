"""A test hook, off by default: hold a diagnostic at its start while a test asks.

With SONDE_AGENT_TEST_HOLD naming a folder, a diagnostic that arrives while `<folder>/hold`
exists writes `<folder>/<command id>.started` and waits until `hold` is removed (at most
HOLD_LIMIT_S), then collects. A test then acts at a known point of a diagnostic, say kills the
server while the agent holds it, instead of sleeping and accepting either outcome. Unset (as
on every workstation), it does nothing and costs one environment look-up per diagnostic.
"""

from __future__ import annotations

import asyncio
import os

HOLD_VARIABLE = "SONDE_AGENT_TEST_HOLD"
HOLD_FILE = "hold"
# A hold no test lifts ends by itself: a forgotten one never wedges the agent.
HOLD_LIMIT_S = 120.0
_POLL_S = 0.02


def started_marker(folder: str, command_id: str) -> str:
    """The file a held diagnostic writes; a command id that is not a plain name is never held."""
    return os.path.join(folder, f"{command_id}.started")


def _plain(command_id: str) -> bool:
    return command_id.isascii() and command_id.replace("-", "").replace("_", "").isalnum()


def _held_in(command_id: str) -> str | None:
    """The hold's folder when this diagnostic is to be held (its start marked), else None."""
    folder = os.environ.get(HOLD_VARIABLE)
    if not folder or not _plain(command_id) or not _holding(folder):
        return None
    with open(started_marker(folder, command_id), "w"):
        pass
    return folder


def _holding(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, HOLD_FILE))


async def wait_while_held(command_id: str) -> None:
    folder = _held_in(command_id)
    if folder is None:
        return
    for _ in range(int(HOLD_LIMIT_S / _POLL_S)):
        if not _holding(folder):
            return
        await asyncio.sleep(_POLL_S)
