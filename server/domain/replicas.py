"""Replicas: each server process sharing the database holds a lease and renews it.

A replica marks offline only the sessions it owns. When a replica dies without saying so
(kill -9, a lost machine), its lease lapses and the next sweep on any live replica marks its
sessions offline; its agents reconnect to a live replica meanwhile. On SQLite one process holds
the data folder (its lock), so at start every session in the database is a stale one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.storage.db import Database
from sonde.server.storage.tables import agents, replicas

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=15)
RENEW_INTERVAL_S = 5.0
FORGET_AFTER = dt.timedelta(days=1)

_OFFLINE = {"connected": False, "online_since": None, "session_replica": None, "session_id": None}


@dataclass(frozen=True)
class Sweep:
    sessions_ended: int  # sessions of dead replicas marked offline


class Replica:
    def __init__(self, db: Database, agent_address: str = "", clock: Clock = utc_now) -> None:
        self.id = uuid.uuid4().hex
        self._db = db
        self._agent_address = agent_address
        self._clock = clock

    async def register(self) -> int:
        """Take a lease; end the stale sessions this start makes stale. Returns how many."""
        now = self._clock()
        sole = self._db.dialect == "sqlite"

        def unit(connection: Connection) -> int:
            self._take_lease(connection, now)
            if not sole:
                return 0
            ended = connection.execute(
                update(agents).where(agents.c.connected.is_(True)).values(**_OFFLINE)
            )
            return int(ended.rowcount)

        return await self._db.write(unit)

    async def renew_and_sweep(self) -> Sweep:
        """Renew this lease; mark offline the sessions of replicas whose lease lapsed."""
        now = self._clock()

        def unit(connection: Connection) -> Sweep:
            renewed = connection.execute(
                update(replicas)
                .where(replicas.c.id == self.id)
                .values(lease_expires_at=now + LEASE)
            )
            if renewed.rowcount == 0:  # swept by another replica after a long stall: rejoin
                self._take_lease(connection, now)
            live = select(replicas.c.id).where(replicas.c.lease_expires_at > now)
            ended = connection.execute(
                update(agents)
                .where(agents.c.connected.is_(True))
                .where(agents.c.session_replica.is_(None) | agents.c.session_replica.not_in(live))
                .values(**_OFFLINE)
            )
            connection.execute(
                delete(replicas).where(replicas.c.lease_expires_at < now - FORGET_AFTER)
            )
            return Sweep(int(ended.rowcount))

        return await self._db.write(unit)

    def _take_lease(self, connection: Connection, now: dt.datetime) -> None:
        connection.execute(
            replicas.insert().values(
                id=self.id,
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=now,
                lease_expires_at=now + LEASE,
                agent_address=self._agent_address[:255],
            )
        )

    async def retire(self) -> None:
        """A graceful stop: end this replica's sessions and give its lease up."""

        def unit(connection: Connection) -> None:
            connection.execute(
                update(agents).where(agents.c.session_replica == self.id).values(**_OFFLINE)
            )
            connection.execute(delete(replicas).where(replicas.c.id == self.id))

        await self._db.write(unit)
