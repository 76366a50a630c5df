"""The agent registry: who enrolled, who is connected, their last gauges, who is revoked."""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sonde.identity import is_agent_id
from sonde.server.domain.clock import require_aware
from sonde.server.domain.text import checked_text, sanitized
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
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


class AgentRegistry:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enroll(
        self, agent_id: str, hostname: str, platform: str, cert_fingerprint: str, at: datetime
    ) -> AgentRecord:
        """Record a newly enrolled agent, or a re-enrollment of the same key (new certificate)."""
        if not is_agent_id(agent_id):
            raise InvalidArgument(f"{agent_id[:40]!r} is not an agent id")
        at = require_aware(at, "enrollment time")
        hostname = sanitized(hostname, max_chars=MAX_HOSTNAME_CHARS) or agent_id
        platform = sanitized(platform, max_chars=32)
        async with self._db.transaction() as session:
            existing = await self._row(session, agent_id, lock=True)
            if existing is not None and existing.revoked_at is not None:
                raise PermissionDenied(
                    f"agent {agent_id} was revoked on {existing.revoked_at:%Y-%m-%d %H:%M} UTC; "
                    "enroll with a new key"
                )
            if existing is None:
                await session.execute(
                    agents.insert().values(
                        id=agent_id,
                        hostname=hostname,
                        hostname_key=hostname.lower(),
                        platform=platform,
                        cert_fingerprint=cert_fingerprint,
                        enrolled_at=at,
                    )
                )
            else:
                await session.execute(
                    update(agents)
                    .where(agents.c.id == agent_id)
                    .values(
                        hostname=hostname,
                        hostname_key=hostname.lower(),
                        platform=platform,
                        cert_fingerprint=cert_fingerprint,
                        enrolled_at=at,
                    )
                )
            row = await self._row(session, agent_id)
            assert row is not None
            return _record(row)

    async def get(self, agent_id: str) -> AgentRecord:
        async with self._db.reading() as session:
            row = await self._row(session, agent_id)
        if row is None:
            raise NotFound(f"no agent with id {agent_id[:40]!r}")
        return _record(row)

    async def resolve(self, ref: str) -> AgentRecord:
        """An agent by exact id, exact host name (any case), or an unambiguous prefix of either."""
        ref = checked_text("the agent", ref, max_chars=MAX_HOSTNAME_CHARS, required=True)
        key = ref.lower()
        async with self._db.reading() as session:
            exact = (
                await session.execute(
                    select(agents).where((agents.c.id == key) | (agents.c.hostname_key == key))
                )
            ).all()
            if not exact:
                pattern = _like_prefix(key)
                exact = (
                    await session.execute(
                        select(agents)
                        .where(
                            agents.c.id.like(pattern, escape="\\")
                            | agents.c.hostname_key.like(pattern, escape="\\")
                        )
                        .order_by(agents.c.hostname_key, agents.c.id)
                        .limit(_AMBIGUOUS_SHOWN + 1)
                    )
                ).all()
        matches = [_record(row) for row in exact]
        by_id = [match for match in matches if match.id == key]
        if by_id:
            return by_id[0]
        if len(matches) > 1:
            # A re-installed machine keeps its name under a new key: prefer the live one.
            live = [match for match in matches if match.revoked_at is None]
            if len(live) == 1 and all(m.hostname.lower() == key for m in matches):
                return live[0]
        if not matches:
            raise NotFound(f"no agent matches {ref!r}")
        if len(matches) > 1:
            shown = ", ".join(f"{m.hostname} ({m.id})" for m in matches[:_AMBIGUOUS_SHOWN])
            more = " and more" if len(matches) > _AMBIGUOUS_SHOWN else ""
            raise InvalidArgument(
                f"{ref!r} is ambiguous: {shown}{more}; give more of the name or id"
            )
        return matches[0]

    async def list(
        self, *, online_only: bool = False, include_revoked: bool = False
    ) -> builtins.list[AgentRecord]:
        query = select(agents).order_by(agents.c.hostname_key, agents.c.id)
        if online_only:
            query = query.where(agents.c.connected.is_(True))
        if online_only or not include_revoked:
            query = query.where(agents.c.revoked_at.is_(None))
        async with self._db.reading() as session:
            return [_record(row) for row in (await session.execute(query)).all()]

    async def connected(
        self, agent_id: str, hello: HelloInfo, remote_address: str, at: datetime
    ) -> None:
        """The agent opened its stream and said hello."""
        at = require_aware(at, "connection time")
        hostname = sanitized(hello.hostname, max_chars=MAX_HOSTNAME_CHARS)
        values: dict[str, object] = {
            "platform": sanitized(hello.platform, max_chars=32),
            "os_name": sanitized(hello.os_name, max_chars=255),
            "os_version": sanitized(hello.os_version, max_chars=255),
            "agent_version": sanitized(hello.agent_version, max_chars=64),
            "connected": True,
            "online_since": at,
            "last_seen_at": at,
            "remote_address": sanitized(remote_address, max_chars=255),
        }
        if hostname:
            values |= {"hostname": hostname, "hostname_key": hostname.lower()}
        async with self._db.transaction() as session:
            result = await session.execute(
                update(agents).where(agents.c.id == agent_id).values(**values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no agent with id {agent_id[:40]!r}")

    async def disconnected(self, agent_id: str, at: datetime) -> None:
        at = require_aware(at, "disconnection time")
        async with self._db.transaction() as session:
            await session.execute(
                update(agents)
                .where(agents.c.id == agent_id)
                .values(connected=False, online_since=None, last_seen_at=at)
            )

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
        async with self._db.transaction() as session:
            connection = await session.connection()
            await connection.execute(statement, rows)

    async def mark_all_disconnected(self, at: datetime) -> int:
        """At server start: nobody is connected yet, whatever the last run left behind."""
        at = require_aware(at, "start time")
        async with self._db.transaction() as session:
            result = await session.execute(
                update(agents)
                .where(agents.c.connected.is_(True))
                .values(connected=False, online_since=None)
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def revoke(self, agent_id: str, reason: str, at: datetime) -> AgentRecord:
        reason = checked_text("the revocation reason", reason, max_chars=1000)
        at = require_aware(at, "revocation time")
        async with self._db.transaction() as session:
            row = await self._row(session, agent_id, lock=True)
            if row is None:
                raise NotFound(f"no agent with id {agent_id[:40]!r}")
            if row.revoked_at is not None:
                raise Conflict(
                    f"agent {row.hostname} ({agent_id}) was already revoked on "
                    f"{row.revoked_at:%Y-%m-%d %H:%M} UTC"
                )
            await session.execute(
                update(agents)
                .where(agents.c.id == agent_id)
                .values(revoked_at=at, revoke_reason=reason, connected=False, online_since=None)
            )
            row = await self._row(session, agent_id)
            assert row is not None
            return _record(row)

    async def is_revoked(self, agent_id: str) -> bool:
        """True for a revoked agent and for an id we never enrolled (refuse what we do not know)."""
        async with self._db.reading() as session:
            revoked_at = (
                await session.execute(
                    select(agents.c.revoked_at, agents.c.id).where(agents.c.id == agent_id)
                )
            ).first()
        return revoked_at is None or revoked_at.revoked_at is not None

    @staticmethod
    async def _row(session: AsyncSession, agent_id: str, *, lock: bool = False) -> AnyRow | None:
        query = select(agents).where(agents.c.id == agent_id)
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).first()


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
