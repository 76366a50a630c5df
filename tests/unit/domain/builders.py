"""Small builders shared by the domain tests: agents, technicians, a settable clock."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sonde.server.domain.agents import AgentRecord, AgentRegistry
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def new_agent_id() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = field(default=T0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


async def enrolled_agent(db: Database, hostname: str = "pc-042") -> AgentRecord:
    return await AgentRegistry(db).enroll(new_agent_id(), hostname, "linux", "ab" * 32, T0)


async def technician(db: Database, name: str, role: Role = Role.L1) -> Principal:
    record, _ = await Users(db).add(name, role, created_by="test")
    return Principal(user_id=record.id, name=record.name, role=record.role)
