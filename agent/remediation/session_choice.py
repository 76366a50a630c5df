"""Which logged-on user's session a `user_session` script runs in (pure: the session list is
its input, read on Windows by user_session.py, recorded in the tests).

The agent runs as SYSTEM in session 0; a script that needs the user (Outlook's profile,
Teams' cache, mapped drives, Explorer) must start in the session of the person at the
machine. The rules, in order:

1. the session at the physical console (WTSGetActiveConsoleSessionId), when someone is
   logged on there and it is active (a locked screen is still active: the user's programs
   run, and the result says it was locked);
2. else the one active remote desktop session, when there is exactly one;
3. several active remote sessions and none at the console: refused, naming them (Sonde does
   not guess whose Outlook to close);
4. only disconnected sessions: refused, naming them (nobody is there to see the script, and
   a disconnected session has no desktop to show a program on);
5. nobody logged on: refused, "nobody is logged on to PC-042; the script needs the user's
   session".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

NO_CONSOLE_SESSION = 0xFFFFFFFF  # WTSGetActiveConsoleSessionId: no session is attached
SERVICES_SESSION = 0  # where services (and the agent) run since Windows Vista


class ConnectState(Enum):
    """WTS_CONNECTSTATE_CLASS, by its number."""

    ACTIVE = 0
    CONNECTED = 1
    CONNECT_QUERY = 2
    SHADOW = 3
    DISCONNECTED = 4
    IDLE = 5
    LISTEN = 6
    RESET = 7
    DOWN = 8
    INIT = 9


class LockState(Enum):
    UNKNOWN = "unknown"
    LOCKED = "locked"
    UNLOCKED = "unlocked"


@dataclass(frozen=True)
class LogonSession:
    """One entry of WTSEnumerateSessionsW, with its user (WTSUserName, WTSDomainName)."""

    session_id: int
    station: str  # "Console", "RDP-Tcp#3", "Services", "" for a disconnected session
    state: ConnectState
    user: str  # "CONTOSO\\alice"; "" when nobody is logged on to it
    lock: LockState = LockState.UNKNOWN


@dataclass(frozen=True)
class ChosenSession:
    session: LogonSession
    connection: str  # "console" or "remote desktop"

    def describe(self) -> str:
        """ "alice's console session 1 (screen locked)", for the result and the log."""
        text = f"{self.session.user}'s {self.connection} session {self.session.session_id}"
        if self.session.lock is LockState.LOCKED:
            text += " (screen locked)"
        return text


class NoUserSession(Exception):
    """No session to run in, or no way to choose one; the message says which and why."""


def _people(sessions: Sequence[LogonSession]) -> list[LogonSession]:
    return [s for s in sessions if s.user and s.session_id != SERVICES_SESSION]


def _named(sessions: Sequence[LogonSession]) -> str:
    return ", ".join(f"{s.user} in session {s.session_id}" for s in sessions)


def choose_session(
    sessions: Sequence[LogonSession],
    console_session_id: int,
    *,
    machine: str,
    script_id: str,
) -> ChosenSession:
    """The session `script_id` runs in on `machine`; NoUserSession saying why there is none."""
    people = _people(sessions)
    active = [s for s in people if s.state is ConnectState.ACTIVE]
    console = next(
        (s for s in active if s.session_id == console_session_id != NO_CONSOLE_SESSION), None
    )
    if console is not None:
        return ChosenSession(console, "console")
    remote = [s for s in active if s.station.upper().startswith("RDP")]
    if len(remote) == 1 and len(active) == 1:
        return ChosenSession(remote[0], "remote desktop")
    needs = f"{script_id} needs the user's session"
    if len(active) > 1:
        raise NoUserSession(
            f"several users are signed in to {machine} and none at its console "
            f"({_named(active)}): Sonde does not choose whose session {script_id} runs in; "
            "ask the others to sign out, or run it when the user is at the console"
        )
    if len(active) == 1:  # active, with a user, neither the console nor remote desktop
        raise NoUserSession(
            f"the only signed-in user of {machine} ({_named(active)}) is in a "
            f"{active[0].station or 'nameless'} session, which is neither the console nor "
            f"remote desktop; {needs}"
        )
    if people:
        states = ", ".join(
            f"{s.user} in session {s.session_id} ({s.state.name.lower()})" for s in people
        )
        raise NoUserSession(
            f"nobody is at {machine}: {states}; {needs}, and a disconnected session has no "
            "desktop to run it on: run it again once the user has signed back in"
        )
    raise NoUserSession(f"nobody is logged on to {machine}; {needs}")
