"""Which user's session a user_session script runs in, from session lists as Windows gives
them (WTSEnumerateSessionsW and WTSGetActiveConsoleSessionId), and each refusal's words."""

from __future__ import annotations

import pytest

from sonde.agent.remediation.session_choice import (
    NO_CONSOLE_SESSION,
    ConnectState,
    LockState,
    LogonSession,
    NoUserSession,
    choose_session,
)

SERVICES = LogonSession(0, "Services", ConnectState.DISCONNECTED, "")
LISTENER = LogonSession(65536, "RDP-Tcp", ConnectState.LISTEN, "")
LOGON_SCREEN = LogonSession(1, "Console", ConnectState.CONNECTED, "")


def alice(session_id: int = 1, station: str = "Console", **changes: object) -> LogonSession:
    state = changes.pop("state", ConnectState.ACTIVE)
    lock = changes.pop("lock", LockState.UNLOCKED)
    assert isinstance(state, ConnectState)
    assert isinstance(lock, LockState)
    return LogonSession(session_id, station, state, "CONTOSO\\alice", lock)


def bob(session_id: int, station: str, state: ConnectState = ConnectState.ACTIVE) -> LogonSession:
    return LogonSession(session_id, station, state, "CONTOSO\\bob")


def choose(sessions: list[LogonSession], console: int) -> str:
    chosen = choose_session(sessions, console, machine="PC-042", script_id="clear-teams-cache")
    return chosen.describe()


def refusal(sessions: list[LogonSession], console: int) -> str:
    with pytest.raises(NoUserSession) as refused:
        choose_session(sessions, console, machine="PC-042", script_id="clear-teams-cache")
    return str(refused.value)


def test_the_console_user_is_chosen_even_with_remote_users_signed_in() -> None:
    sessions = [SERVICES, alice(1), bob(3, "RDP-Tcp#2"), LISTENER]
    assert choose(sessions, 1) == "CONTOSO\\alice's console session 1"


def test_a_locked_console_is_still_the_users_and_the_result_says_locked() -> None:
    sessions = [SERVICES, alice(2, lock=LockState.LOCKED)]
    assert choose(sessions, 2) == "CONTOSO\\alice's console session 2 (screen locked)"


def test_the_single_remote_desktop_session_when_nobody_is_at_the_console() -> None:
    sessions = [SERVICES, LOGON_SCREEN, alice(4, "RDP-Tcp#7"), LISTENER]
    assert choose(sessions, 1) == "CONTOSO\\alice's remote desktop session 4"
    assert choose([SERVICES, alice(4, "RDP-Tcp#7")], NO_CONSOLE_SESSION).endswith("session 4")


def test_several_remote_users_and_none_at_the_console_is_refused_naming_them() -> None:
    said = refusal([SERVICES, LOGON_SCREEN, alice(3, "RDP-Tcp#1"), bob(5, "RDP-Tcp#2")], 1)
    assert "several users are signed in to PC-042 and none at its console" in said
    assert "CONTOSO\\alice in session 3, CONTOSO\\bob in session 5" in said
    assert "Sonde does not choose whose session clear-teams-cache runs in" in said


def test_nobody_logged_on_is_refused_in_the_helpdesks_words() -> None:
    said = refusal([SERVICES, LOGON_SCREEN, LISTENER], 1)
    assert said == "nobody is logged on to PC-042; clear-teams-cache needs the user's session"
    assert refusal([], NO_CONSOLE_SESSION) == said


def test_only_disconnected_sessions_are_refused_saying_whose_they_are() -> None:
    said = refusal([SERVICES, LOGON_SCREEN, alice(2, "", state=ConnectState.DISCONNECTED)], 1)
    assert said.startswith("nobody is at PC-042: CONTOSO\\alice in session 2 (disconnected)")
    assert "run it again once the user has signed back in" in said


def test_the_console_id_pointing_at_a_disconnected_session_is_not_a_user_at_the_console() -> None:
    disconnected = alice(1, state=ConnectState.DISCONNECTED)
    assert "disconnected" in refusal([SERVICES, disconnected], 1)
    # Fast user switching: alice disconnected, bob at the console in a new session.
    assert choose([SERVICES, disconnected, bob(3, "Console")], 3) == (
        "CONTOSO\\bob's console session 3"
    )


def test_session_0_never_counts_even_with_a_user_name() -> None:
    # A service session that reports a name (it should not) is not someone's desktop.
    impostor = LogonSession(0, "Services", ConnectState.ACTIVE, "NT AUTHORITY\\SYSTEM")
    assert refusal([impostor], 0).startswith("nobody is logged on to PC-042")


def test_an_active_session_that_is_neither_console_nor_remote_desktop_is_refused() -> None:
    said = refusal([SERVICES, bob(6, "ICA-tcp#3")], NO_CONSOLE_SESSION)
    assert "ICA-tcp#3 session, which is neither the console nor remote desktop" in said


def test_a_remote_user_beside_a_logged_on_but_disconnected_console_user_is_chosen() -> None:
    sessions = [SERVICES, alice(1, state=ConnectState.DISCONNECTED), bob(4, "RDP-Tcp#1")]
    assert choose(sessions, 1) == "CONTOSO\\bob's remote desktop session 4"
