"""A user_session script's order, checked by the agent's real RunOrders with real keys and
signed orders: refused where nobody is logged on, where the sessions cannot be read, and on a
system other than Windows; otherwise the session chosen is the one the result names, and the
ticket's line says it with the user name made inert."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sonde.agent.catalog_key import pin_catalog_key
from sonde.agent.dispatch_key import DISPATCH_KEY
from sonde.agent.remediation.orders import RunOrders, script_run
from sonde.agent.remediation.runner import RunOutcome, ScriptCannotRun, run
from sonde.agent.remediation.session_choice import ConnectState, LockState, LogonSession
from sonde.catalog.envelope import OrderRefused, Refusal
from sonde.catalog.manifest import parse_manifest
from sonde.server.domain.commands import CommandState
from sonde.server.domain.run_closing import result_text
from tests.integration.agent.run_orders import OrderMaker, raw, signed_entry
from tests.support.catalog_bundles import manifest_text

AGENT_ID = "a" * 64
SERVICES = LogonSession(0, "Services", ConnectState.DISCONNECTED, "")
ALICE = LogonSession(1, "Console", ConnectState.ACTIVE, "CONTOSO\\alice", LockState.LOCKED)


@pytest.fixture
def maker() -> OrderMaker:
    return OrderMaker(agent_id=AGENT_ID)


@pytest.fixture
def state(tmp_path: Path, maker: OrderMaker) -> Path:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    pin_catalog_key(folder, raw(maker.catalog_key), replace=False)
    DISPATCH_KEY.pin(folder, raw(maker.dispatch_key), replace=False)
    return folder


def user_session_manifest() -> bytes:
    text = manifest_text("clear-app-cache", parameters="user_session = true\n")
    return text.encode()


def orders(state: Path, sessions: Sequence[LogonSession] | OSError | None) -> RunOrders:
    if sessions is None:
        return RunOrders(state, AGENT_ID, completed=lambda _: False)

    def read() -> tuple[Sequence[LogonSession], int]:
        if isinstance(sessions, OSError):
            raise sessions
        return sessions, 1

    return RunOrders(state, AGENT_ID, completed=lambda _: False, sessions=read, machine="PC-042")


def refusal_of(runs: RunOrders, maker: OrderMaker) -> OrderRefused:
    entry = signed_entry(maker.catalog_key, user_session_manifest(), b"#!/bin/bash\ntrue\n")
    order = maker.order(entry)
    with pytest.raises(OrderRefused) as refused:
        runs.check(maker.sign(order))
    assert refused.value.command_id == order.command_id
    return refused.value


def test_a_system_other_than_windows_refuses_a_user_session_script(
    state: Path, maker: OrderMaker
) -> None:
    refused = refusal_of(orders(state, None), maker)
    assert refused.refusal is Refusal.USER_SESSION
    assert refused.message == (
        "clear-app-cache runs in the logged-on user's session, which Sonde starts only on "
        "Windows; this agent runs on linux"
    )


def test_nobody_logged_on_is_refused_before_anything_is_recorded(
    state: Path, maker: OrderMaker
) -> None:
    runs = orders(state, [SERVICES])
    refused = refusal_of(runs, maker)
    assert refused.refusal is Refusal.USER_SESSION
    assert refused.message == (
        "nobody is logged on to PC-042; clear-app-cache needs the user's session"
    )
    assert not (state / "runs").exists() or not any((state / "runs").iterdir())


def test_sessions_that_cannot_be_read_refuse_saying_so(state: Path, maker: OrderMaker) -> None:
    refused = refusal_of(
        orders(state, OSError(5, "WTSEnumerateSessionsW failed: Access denied")), maker
    )
    assert "the sessions of PC-042 could not be listed" in refused.message
    assert "Access denied" in refused.message


def test_the_chosen_session_is_the_one_the_result_and_the_ticket_name(
    state: Path, maker: OrderMaker
) -> None:
    runs = orders(state, [SERVICES, ALICE])
    entry = signed_entry(maker.catalog_key, user_session_manifest(), b"#!/bin/bash\ntrue\n")
    order = maker.order(entry)
    verified = runs.check(maker.sign(order))
    chosen = runs.chosen_session(order.command_id)
    assert chosen is not None
    assert chosen.session == ALICE
    outcome = RunOutcome(0, False, False, b"done\n", b"", False, False, 5, 0, 1.5, 0)
    ran = script_run(verified, outcome, chosen)
    assert (ran.session.session_id, ran.session.user) == (1, "CONTOSO\\alice")
    assert (ran.session.connection, ran.session.screen_locked) == ("console", True)
    line = result_text(order.command_id, CommandState.SUCCEEDED, ran)
    assert line.endswith("; ran in CONTOSO\\alice's console session 1 (screen locked)")
    ran.session.user = "evil\x1b[31m\nroot"  # a hostile agent's user name
    line = result_text(order.command_id, CommandState.SUCCEEDED, ran)
    assert "\x1b" not in line
    assert "\n" not in line
    assert "evil[31mroot" in line


async def test_the_runner_never_runs_a_user_session_script_as_the_agents_user(
    tmp_path: Path,
) -> None:
    manifest = parse_manifest(user_session_manifest())
    sentinel = tmp_path / "ran"
    with pytest.raises(ScriptCannotRun, match="runs in the logged-on user's session"):
        await run(manifest, f'touch "{sentinel}"\n'.encode(), {"dry_run": False})
    assert not sentinel.exists()
