"""State changes written with their audit row in one transaction, and refusals audited at a
bounded rate.

Every state-changing domain operation goes through AuditedWrites.run: its unit of work makes
the change and fills in an AuditEntry (the agent it resolved, what it created), and the audit
row is appended in the same transaction, so a crash between the two leaves neither. An
operation refused with a SondeError (authentication, permission, validation, not found) changes
nothing and is recorded as a refusal in a transaction of its own, at most `burst` rows per key
(actor, peer's address: not its port, kind of refusal) and window, so a flood of refused calls
cannot fill the disk; the next row written for that key says how many were left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from sonde.server.domain.audit_chain import append_row
from sonde.server.domain.audit_rows import AuditKey, DetailValue, audit_values
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.errors import SondeError
from sonde.server.peer_addresses import peer_address
from sonde.server.storage.db import Database
from sonde.server.storage.driver import DriverStatement

T = TypeVar("T")

REFUSALS_PER_KEY = 10
REFUSALS_IN_ALL = 200
REFUSAL_WINDOW_S = 60.0
MAX_REFUSAL_KEYS = 10_000


@dataclass
class AuditEntry:
    """What the audit row will say; the unit of work fills in what it learns."""

    agent_id: str | None = None
    ticket_id: int | None = None
    detail: dict[str, DetailValue] = field(default_factory=dict)

    def row_values(
        self,
        at: datetime,
        actor: str,
        action: str,
        result: str = "ok",
        *,
        key: AuditKey | None = None,
    ) -> dict[str, Any]:
        """What append_row or an audit_row_cte binds for this entry."""
        return audit_values(
            at,
            actor,
            action,
            agent_id=self.agent_id,
            ticket_id=self.ticket_id,
            detail=self.detail,
            result=result,
            key=key,
        )


AuditedUnit = Callable[[Connection, AuditEntry], T]
# A test hook: called between the change and its audit row, inside the transaction.
FaultHook = Callable[[str], None]


@dataclass
class _Window:
    started: float
    recorded: int = 0
    suppressed: int = 0


class RefusalLimiter:
    """How many refusals to record: `per_key` per key (an actor, its address, the kind of
    refusal) and `in_all` per window."""

    def __init__(
        self,
        *,
        per_key: int = REFUSALS_PER_KEY,
        in_all: int = REFUSALS_IN_ALL,
        window_s: float = REFUSAL_WINDOW_S,
        max_keys: int = MAX_REFUSAL_KEYS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_key, self._in_all, self._window_s = per_key, in_all, window_s
        self._max_keys = max_keys
        self._monotonic = monotonic
        self._keys: dict[tuple[str, str, str], _Window] = {}
        self._all = _Window(monotonic())

    def admit(self, actor: str, peer: str, kind: str = "") -> int | None:
        """None: leave this refusal out. Else the number left out before it, to say so."""
        now = self._monotonic()
        if now - self._all.started >= self._window_s:
            self._all = _Window(now)
        key = (actor, peer, kind)
        window = self._keys.get(key)
        if window is None or now - window.started >= self._window_s:
            carried = window.suppressed if window is not None else 0
            self._keys.pop(key, None)
            if len(self._keys) >= self._max_keys:
                del self._keys[next(iter(self._keys))]  # the oldest window goes first
            window = self._keys[key] = _Window(now, suppressed=carried)
        if window.recorded >= self._per_key or self._all.recorded >= self._in_all:
            window.suppressed += 1
            return None
        window.recorded += 1
        self._all.recorded += 1
        left_out, window.suppressed = window.suppressed, 0
        return left_out


def refusal_text(error: SondeError) -> str:
    return f"refused: {type(error).__name__}: {error}"


class AuditedWrites:
    def __init__(
        self,
        db: Database,
        clock: Clock = utc_now,
        refusals: RefusalLimiter | None = None,
        *,
        key: AuditKey | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._key = key
        self._refusals = refusals or RefusalLimiter()
        self.fault_before_audit: FaultHook | None = None

    async def run(
        self,
        actor: str,
        action: str,
        unit: AuditedUnit[T],
        *,
        agent_id: str | None = None,
        ticket_id: int | None = None,
        detail: Mapping[str, DetailValue] | None = None,
        peer: str = "",
    ) -> T:
        """Run `unit` and append its audit row in the same transaction; audit a refusal."""
        entry = AuditEntry(agent_id, ticket_id, dict(detail or {}))

        def audited(connection: Connection) -> T:
            outcome = unit(connection, entry)
            if self.fault_before_audit is not None:
                self.fault_before_audit(action)
            append_row(connection, entry.row_values(self._clock(), actor, action, key=self._key))
            return outcome

        try:
            return await self._db.write(audited)
        except SondeError as error:
            await self.refused(actor, action, error, entry=entry, peer=peer)
            raise

    def append_in(self, connection: Connection, actor: str, action: str, entry: AuditEntry) -> None:
        """An audit row inside a unit of work that run() does not run (a session's claim),
        in the same transaction as the change it records."""
        append_row(connection, entry.row_values(self._clock(), actor, action, key=self._key))

    @property
    def keyed(self) -> bool:
        """Whether rows are linked with the audit key (a one-statement change picks its SQL)."""
        return self._key is not None

    async def run_alone(
        self,
        actor: str,
        action: str,
        statement: DriverStatement,
        values: Mapping[str, object],
        *,
        agent_id: str | None = None,
        ticket_id: int | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> list[tuple[Any, ...]]:
        """PostgreSQL: a change written as one statement with its audit row inside it
        (audit_row_cte), sent alone: one round trip. Returns the statement's rows; none means it
        matched nothing and wrote nothing, audit row included: the caller then runs its unit of
        work, which says why and audits the refusal."""
        if self._db.dialect != "postgresql":
            raise ValueError("one-statement changes are for PostgreSQL; run a unit of work")
        if self.fault_before_audit is not None:
            # One statement has no point between the change and its row: a crash can only
            # come before it is sent, or after it committed whole.
            self.fault_before_audit(action)
        entry = AuditEntry(agent_id, ticket_id, dict(detail or {}))
        audit = entry.row_values(self._clock(), actor, action, key=self._key)
        return await self._db.write_alone(statement, {**values, **audit})

    async def refused(
        self,
        actor: str,
        action: str,
        error: SondeError,
        *,
        entry: AuditEntry | None = None,
        peer: str = "",
    ) -> None:
        """Record a refusal in its own transaction, unless this key is over its rate."""
        # Per address, not per port (a client opens connections at will); per kind, so that
        # a lockout (ResourceExhausted) is recorded beside the failures that caused it.
        left_out = self._refusals.admit(actor, peer_address(peer), type(error).__name__)
        if left_out is None:
            return
        entry = entry or AuditEntry()
        refusal = AuditEntry(entry.agent_id, entry.ticket_id, dict(entry.detail))
        if peer:
            refusal.detail["peer"] = peer[:100]
        if left_out:
            refusal.detail["refusals_left_out"] = left_out
        values = refusal.row_values(
            self._clock(), actor, action, refusal_text(error), key=self._key
        )
        await self._db.write(lambda connection: append_row(connection, values))
