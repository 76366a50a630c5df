"""The agent registry: who enrolled, who is connected, their last gauges, who is revoked,
which machines were removed (retired: revoked and out of the lists, their history kept)."""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.engine import Connection

from sonde.identity import is_agent_id
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import require_aware
from sonde.server.domain.enrollment_tokens import (
    check_presented,
    check_token,
    is_token_id,
    take_use,
)
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import checked_text, like_prefix, sanitized
from sonde.server.domain.wakeups import Wake, WakeKind, Wakeups, emit
from sonde.server.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SondeError,
)
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents
from sonde.server.storage.types import AnyRow

MAX_HOSTNAME_CHARS = 255
_AMBIGUOUS_SHOWN = 5


@dataclass(frozen=True)
class AgentRecord:
    id: str
    hostname: str
    platform: str
    os_name: str
    os_version: str
    agent_version: str
    enrolled_at: datetime
    last_seen_at: datetime | None
    connected: bool
    online_since: datetime | None
    revoked_at: datetime | None
    revoke_reason: str
    cpu_percent: float
    memory_percent: float
    system_disk_percent: float
    remote_address: str
    cert_fingerprint: str
    session_id: str | None = None  # the stream that holds it, as last written (batched)
    removed_at: datetime | None = None
    removed_by: str = ""
    reached_by: str = ""  # "ssh" or "winrm": a machine without an agent (agentless.py)
    reach_address: str = ""  # the host:port the server logs in to

    @property
    def online(self) -> bool:
        return self.connected and self.revoked_at is None


@dataclass(frozen=True)
class HelloInfo:
    hostname: str
    platform: str
    os_name: str
    os_version: str
    agent_version: str


@dataclass(frozen=True)
class HeartbeatRecord:
    agent_id: str
    at: datetime
    cpu_percent: float
    memory_percent: float
    system_disk_percent: float


def _record(row: AnyRow) -> AgentRecord:
    values = row._mapping
    return AgentRecord(**{name: values[name] for name in AgentRecord.__dataclass_fields__})


def _percent(value: float) -> float:
    """Gauges from an agent, clamped: a broken or hostile agent cannot store 1e308 %."""
    if math.isnan(value):
        return 0.0
    return min(max(float(value), 0.0), 100.0)


# Statements built once, with bind parameters.
_AGENT = select(agents).where(agents.c.id == bindparam("agent_id"))
_AGENT_LOCKED = _AGENT.with_for_update()
# What can start an agent id (sonde/identity.py: 26 lowercase base32 characters).
_ID_CHARACTERS = re.compile(r"[a-z2-7]{1,26}")
_AGENTS_BY_ID_PREFIX = (
    select(agents)
    .where(agents.c.id.like(bindparam("pattern")))
    .order_by(agents.c.id)
    .limit(_AMBIGUOUS_SHOWN + 1)
)
_AGENTS_BY_NAME = (
    select(agents).where(agents.c.hostname_key == bindparam("key")).order_by(agents.c.id)
)
_AGENTS_BY_NAME_PREFIX = (
    select(agents)
    .where(agents.c.hostname_key.like(bindparam("pattern"), escape="\\"))
    .order_by(agents.c.hostname_key, agents.c.id)
    .limit(_AMBIGUOUS_SHOWN + 1)
)
_INSERT_AGENT = agents.insert().returning(*agents.c)
_REENROLL = update(agents).where(agents.c.id == bindparam("enrolled_agent_id")).returning(*agents.c)
_REVOKE = (
    update(agents)
    .where(agents.c.id == bindparam("revoked_agent_id"))
    .values(
        revoked_at=bindparam("revoked_at_"),
        revoke_reason=bindparam("revoke_reason_"),
        connected=False,
        online_since=None,
        session_replica=None,
        session_id=None,
    )
    .returning(*agents.c)
)
_REMOVE = (
    update(agents)
    .where(agents.c.id == bindparam("removed_agent_id"))
    .values(
        removed_at=bindparam("removed_at_"),
        removed_by=bindparam("removed_by_"),
        revoked_at=bindparam("revoked_at_"),
        revoke_reason=bindparam("revoke_reason_"),
        connected=False,
        online_since=None,
        session_replica=None,
        session_id=None,
    )
    .returning(*agents.c)
)


@dataclass(frozen=True)
class AgentCertificate:
    """What signing an agent's certificate request gave: the id its key stands for, and the
    certificate (its fingerprint is stored; the DER bytes go back to the agent)."""

    agent_id: str
    fingerprint: str
    der: bytes


class CertificateRequest(Protocol):
    """An agent's certificate request as enrollment uses it (server/api/enrollment.py)."""

    def checked_agent_id(self) -> str:
        """The id the request's key stands for, or InvalidArgument when the request is
        unusable; called before the token is looked at."""
        ...

    def sign(self) -> AgentCertificate:
        """Sign it; called once the token and the agent's standing are checked."""
        ...


def resolve_agent(connection: Connection, ref: str) -> AgentRecord:
    """The agent `ref` names: ids first, then host names, which agents report themselves.

    1. A full id names that agent, or none (never an agent that took it as its name).
    2. The start of an id names its agent when no other agent's id starts so and no other
       agent has `ref` as its name: a name equal to another agent's id prefix is ambiguous.
    3. A host name (any case) names its agent; of several agents with that name, the one not
       revoked when only one is (a re-installed machine keeps its name under a new key).
    4. The start of a host name names its agent when it is the only one.
    Whatever else matches more than one agent is refused, naming the candidates and their ids.
    """
    ref = checked_text("the agent", ref, max_chars=MAX_HOSTNAME_CHARS, required=True)
    key = ref.lower()
    if is_agent_id(key):
        row = connection.execute(_AGENT, {"agent_id": key}).first()
        if row is None:
            raise NotFound(f"no agent has the id {key}")
        return _record(row)
    named = _records(connection, _AGENTS_BY_NAME, {"key": key})
    if _ID_CHARACTERS.fullmatch(key):
        by_id = _records(connection, _AGENTS_BY_ID_PREFIX, {"pattern": f"{key}%"})
        if by_id:
            return _only_match(ref, [*by_id, *named])
    if len(named) > 1:
        live = [match for match in named if match.revoked_at is None]
        if len(live) == 1:
            return live[0]
    if not named:
        named = _records(connection, _AGENTS_BY_NAME_PREFIX, {"pattern": like_prefix(key)})
    if not named:
        raise NotFound(f"no agent matches {ref!r}")
    return _only_match(ref, named)


def _records(
    connection: Connection, statement: Select[Any], values: dict[str, str]
) -> list[AgentRecord]:
    return [_record(row) for row in connection.execute(statement, values)]


def _only_match(ref: str, matches: Sequence[AgentRecord]) -> AgentRecord:
    """The one agent among `matches` (one agent may match twice), or InvalidArgument."""
    distinct = list({match.id: match for match in matches}.values())
    if len(distinct) == 1:
        return distinct[0]
    shown = ", ".join(
        f"{m.hostname} ({m.id}{', revoked' if m.revoked_at is not None else ''})"
        for m in distinct[:_AMBIGUOUS_SHOWN]
    )
    more = " and more" if len(distinct) > _AMBIGUOUS_SHOWN else ""
    raise InvalidArgument(
        f"{ref!r} is ambiguous: {shown}{more}; give more of the name or id "
        "(a full id is never ambiguous)"
    )


class AgentRegistry:
    def __init__(
        self, db: Database, *, writes: AuditedWrites | None = None, wakeups: Wakeups | None = None
    ) -> None:
        self._db = db
        self._writes = writes if writes is not None else AuditedWrites(db)
        self._wakeups = wakeups if wakeups is not None else Wakeups()

    async def enroll(
        self,
        token_id: str,
        secret: bytes,
        *,
        hostname: str,
        platform: str,
        request: CertificateRequest,
        at: datetime,
        peer: str = "",
    ) -> tuple[AgentRecord, AgentCertificate]:
        """Check the request, then the token, then the agent's standing; sign the agent's
        certificate, take one use of the token (last) and record the agent (new, or the same
        key enrolled again), audited as `enrollment-token:ID`: one unit of work, so a refused
        enrollment spends no use and registers nothing. Every refusal is audited (at the
        refusals' bounded rate).

        A retry (is_unanswered_enrollment: this key, enrolled with this token, never
        connected) is answered with a new certificate for the same agent and spends no use,
        audited with `retry: true`; its token must still be valid but for its uses."""
        try:
            check_presented(token_id, secret)
            at = require_aware(at, "enrollment time")
            agent_id = request.checked_agent_id()
            if not is_agent_id(agent_id):
                raise InvalidArgument(f"{agent_id[:40]!r} is not an agent id")
        except SondeError as error:
            await self.refuse_enrollment(token_id, error, peer=peer)
            raise
        hostname = sanitized(hostname, max_chars=MAX_HOSTNAME_CHARS)
        platform = sanitized(platform, max_chars=32)

        def unit(connection: Connection, entry: AuditEntry) -> tuple[AgentRecord, AgentCertificate]:
            entry.agent_id = agent_id
            existing = connection.execute(_AGENT_LOCKED, {"agent_id": agent_id}).first()
            retry = existing is not None and is_unanswered_enrollment(existing, token_id)
            # The secret, the token's revocation and its expiry are checked for a retry too.
            check_token(connection, token_id, secret, at, spends_a_use=not retry)
            if existing is not None and existing.revoked_at is not None:
                raise PermissionDenied(
                    f"agent {agent_id} was revoked on {existing.revoked_at:%Y-%m-%d %H:%M} UTC; "
                    "enroll with a new key"
                )
            certificate = request.sign()
            if certificate.agent_id != agent_id:
                raise InvalidArgument("the signed certificate is not for the request's key")
            name = hostname or agent_id
            entry.detail["hostname"] = name
            values: dict[str, object] = {
                "hostname": name,
                "hostname_key": name.lower(),
                "platform": platform,
                "cert_fingerprint": certificate.fingerprint,
                "enrolled_with_token": token_id,
            }
            if retry:
                # The same enrollment answered again: it keeps its time and its spent use.
                entry.detail["retry"] = True
            else:
                take_use(connection, token_id)
                values["enrolled_at"] = at
            if existing is None:
                row = connection.execute(_INSERT_AGENT, {"id": agent_id, **values}).one()
            else:
                row = connection.execute(_REENROLL, {"enrolled_agent_id": agent_id, **values}).one()
            return _record(row), certificate

        return await self._writes.run(_enrollment_actor(token_id), "agent.enroll", unit, peer=peer)

    async def refuse_enrollment(self, token_id: str, error: SondeError, *, peer: str = "") -> None:
        """Audit an enrollment refused before its unit of work, at the refusals' bounded rate."""
        await self._writes.refused(_enrollment_actor(token_id), "agent.enroll", error, peer=peer)

    async def get(self, agent_id: str) -> AgentRecord:
        row = await self._db.read(
            lambda connection: connection.execute(_AGENT, {"agent_id": agent_id}).first()
        )
        if row is None:
            raise NotFound(f"no agent with id {agent_id[:40]!r}")
        return _record(row)

    async def resolve(self, ref: str) -> AgentRecord:
        """The agent `ref` names: an id, an id prefix, a host name or its prefix (resolve_agent)."""
        return await self._db.read(lambda connection: resolve_agent(connection, ref))

    async def list(
        self,
        *,
        online_only: bool = False,
        include_revoked: bool = False,
        include_removed: bool = False,
    ) -> builtins.list[AgentRecord]:
        """Agents by name; revoked ones with include_revoked, removed ones only with
        include_removed (which implies include_revoked: a removed agent is revoked too)."""
        query = select(agents).order_by(agents.c.hostname_key, agents.c.id)
        if online_only:
            query = query.where(agents.c.connected.is_(True))
        if online_only or not (include_revoked or include_removed):
            query = query.where(agents.c.revoked_at.is_(None))
        if online_only or not include_removed:
            query = query.where(agents.c.removed_at.is_(None))
        rows = await self._db.read(lambda connection: connection.execute(query).all())
        return [_record(row) for row in rows]

    async def record_heartbeats(self, beats: Sequence[HeartbeatRecord]) -> None:
        """Store a batch of heartbeats in one transaction (the latest per agent wins)."""
        latest: dict[str, HeartbeatRecord] = {}
        for beat in beats:
            held = latest.get(beat.agent_id)
            if held is None or beat.at >= held.at:
                latest[beat.agent_id] = beat
        if not latest:
            return
        statement = (
            update(agents)
            .where(agents.c.id == bindparam("beat_agent_id"))
            .values(
                last_seen_at=bindparam("beat_at"),
                cpu_percent=bindparam("beat_cpu"),
                memory_percent=bindparam("beat_memory"),
                system_disk_percent=bindparam("beat_disk"),
            )
        )
        rows = [
            {
                "beat_agent_id": beat.agent_id,
                "beat_at": require_aware(beat.at, "heartbeat time"),
                "beat_cpu": _percent(beat.cpu_percent),
                "beat_memory": _percent(beat.memory_percent),
                "beat_disk": _percent(beat.system_disk_percent),
            }
            for beat in sorted(latest.values(), key=lambda beat: beat.agent_id)
        ]
        await self._db.write(lambda connection: connection.execute(statement, rows))

    async def revoke(self, actor: Principal, agent: str, reason: str, at: datetime) -> AgentRecord:
        """Revoke an agent (by id, host name or prefix): its later connections are refused."""
        at = require_aware(at, "revocation time")

        def unit(connection: Connection, entry: AuditEntry) -> AgentRecord:
            text = checked_text("the revocation reason", reason, max_chars=1000)
            found = resolve_agent(connection, agent)
            entry.agent_id = found.id
            row = connection.execute(_AGENT_LOCKED, {"agent_id": found.id}).one()
            if row.revoked_at is not None:
                raise Conflict(
                    f"agent {row.hostname} ({found.id}) was already revoked on "
                    f"{row.revoked_at:%Y-%m-%d %H:%M} UTC"
                )
            revoked = connection.execute(
                _REVOKE,
                {"revoked_agent_id": found.id, "revoked_at_": at, "revoke_reason_": text},
            ).one()
            # Every replica closes the agent's stream, wherever it is, once this commits.
            emit(connection, wakes, Wake(WakeKind.REVOKED, found.id))
            return _record(revoked)

        wakes: list[Wake] = []
        revoked = await self._writes.run(actor.name, "agent.revoke", unit, peer=actor.peer)
        self._wakeups.publish(wakes)
        return revoked

    async def remove(self, actor: Principal, agent: str, reason: str, at: datetime) -> AgentRecord:
        """Retire a machine (by id, host name or prefix): revoked if it was not (its stream is
        closed and its certificate refused from the commit on, on every replica), and out of
        the agent lists; its row stays, so its tickets, diagnostics and audit rows still name
        it. Audited as `agent.remove`."""
        at = require_aware(at, "removal time")

        def unit(connection: Connection, entry: AuditEntry) -> AgentRecord:
            text = checked_text("the removal reason", reason, max_chars=1000)
            found = resolve_agent(connection, agent)
            entry.agent_id = found.id
            row = connection.execute(_AGENT_LOCKED, {"agent_id": found.id}).one()
            if row.removed_at is not None:
                raise Conflict(
                    f"agent {row.hostname} ({found.id}) was already removed by {row.removed_by} "
                    f"on {row.removed_at:%Y-%m-%d %H:%M} UTC"
                )
            entry.detail["hostname"] = row.hostname
            entry.detail["was_revoked"] = row.revoked_at is not None
            removed = connection.execute(
                _REMOVE,
                {
                    "removed_agent_id": found.id,
                    "removed_at_": at,
                    "removed_by_": actor.name,
                    # A revocation keeps its own time and reason.
                    "revoked_at_": row.revoked_at or at,
                    "revoke_reason_": row.revoke_reason if row.revoked_at else (text or "removed"),
                },
            ).one()
            emit(connection, wakes, Wake(WakeKind.REVOKED, found.id))
            return _record(removed)

        wakes: list[Wake] = []
        removed = await self._writes.run(
            actor.name, "agent.remove", unit, detail={"reason": reason[:1000]}, peer=actor.peer
        )
        self._wakeups.publish(wakes)
        return removed


def is_unanswered_enrollment(row: AnyRow, token_id: str) -> bool:
    """Whether enrolling the agent of `row` with `token_id` again is a retry of an enrollment
    whose reply never reached it: the same token enrolled this key, and the agent has never
    opened a session (an agent that has connected did get its certificate) and is neither
    revoked nor removed. The caller has matched the key: the agent id is derived from it."""
    return (
        row.enrolled_with_token == token_id
        and row.last_seen_at is None
        and row.session_id is None
        and not row.connected
        and row.revoked_at is None
        and row.removed_at is None
    )


def _enrollment_actor(token_id: str) -> str:
    """Who an enrollment is audited as: its token, or `anonymous` for an id no token has."""
    return f"enrollment-token:{token_id}" if is_token_id(token_id) else "anonymous"
