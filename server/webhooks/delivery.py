"""The webhook delivery: every ticket event POSTed to each endpoint, one event per POST, in
the feed's order (server/webhooks/feed.py), until the receiver answers 2xx.

Each round (every `poll_s`) reads the endpoints that have an event to send, are due (no backoff
running) and that no replica holds, and takes each one's lease (lease_owner, lease_until: a
conditional UPDATE, so of two replicas on one PostgreSQL database only one gets it). The lease
is renewed by every write that follows a POST, and a POST lasts at most its timeout, well
within the lease, so no other replica sends while this one does. A task per endpoint then:

- reads the next events after its cursor; an event of a kind it does not want is passed over;
- POSTs the next one it wants, signed (server/webhooks/signing.py);
- 2xx: moves the cursor to that event, counts it, renews the lease; only if the row still has
  this lease and this cursor (an endpoint removed meanwhile, or a lease lost, stops the task);
- anything else (refused connection, TLS failure, timeout, 3xx, 4xx, 5xx): keeps the cursor,
  records the error and the next attempt, after an exponential backoff with jitter, and gives
  the lease back. No event is ever skipped: the next attempt sends the same event again.

So a receiver gets each event at least once, in order; twice only if its 2xx was not recorded
(this server stopped, or its database write failed, between the answer and the write): the
event id header is the same, for the receiver to drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.credential_secrets import CredentialKey, NotOpened
from sonde.server.storage.db import Database
from sonde.server.storage.tables import ticket_events, webhook_endpoints
from sonde.server.webhooks.endpoints import info_of, opened_secrets
from sonde.server.webhooks.feed import FeedEvent, Position, after_columns, horizon, read_after
from sonde.server.webhooks.posting import Poster
from sonde.server.webhooks.signing import EVENT_ID_HEADER, EVENT_KIND_HEADER, signed_headers

log = logging.getLogger(__name__)

POLL_S = 1.0
LEASE_S = 60.0
BATCH = 100
MAX_ERROR_CHARS = 300
_ENDPOINTS = webhook_endpoints.c


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th failure in a row: base x 2^(n-1), at most cap, of which
    the second half is random (so endpoints that failed together do not retry together)."""

    base_s: float = 2.0
    cap_s: float = 600.0
    rng: Callable[[], float] = field(default=random.random)

    def delay_s(self, failures: int) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** max(0, min(failures, 40) - 1))
        return float(ceiling / 2 + self.rng() * ceiling / 2)


def payload(endpoint_id: str, event: FeedEvent) -> bytes:
    """The POST's body: the event as it was written, and its ticket as it is now."""
    document = {
        "id": str(event.position.event),
        "position": [event.position.xact, event.position.event],
        "webhook": endpoint_id,
        "kind": event.kind,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "actor": event.actor,
        "ticket_id": event.ticket_id,
        "body": event.body,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "assignee": event.assignee,
        "snapshot_id": event.snapshot_id,
        "command_id": event.command_id,
        "ticket": {
            "id": event.ticket_id,
            "title": event.title,
            "status": event.status,
            "priority": event.priority,
            "level": event.level,
            "assignee": event.ticket_assignee,
            "requester": event.requester,
        },
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _read(connection: Connection, *, at: Position, limit: int) -> list[FeedEvent]:
    return read_after(connection, at, limit)


@dataclass(frozen=True)
class _Claimed:
    id: str
    url: str
    ca_pem: str
    kinds: frozenset[str]
    cursor: Position
    failures: int
    secrets: tuple[bytes, ...]  # (): they do not open (why in `problem`)
    problem: str = ""


class WebhookDelivery:
    def __init__(
        self,
        db: Database,
        key: CredentialKey | None,
        owner: str,
        *,
        clock: Clock = utc_now,
        poster: Poster | None = None,
        backoff: Backoff | None = None,
        poll_s: float = POLL_S,
        lease_s: float = LEASE_S,
        batch: int = BATCH,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._key = key
        self.owner = owner
        self._clock = clock
        self._poster = poster or Poster()
        self._backoff = backoff or Backoff()
        self._poll_s = poll_s
        self._lease = timedelta(seconds=lease_s)
        self._batch = batch
        self._wall_time = wall_time
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.start_round()
                except Exception:  # a round's bug must not end the delivery
                    log.exception("webhooks: a delivery round failed")
                await asyncio.sleep(self._poll_s)
        finally:
            await self.close()

    async def close(self) -> None:
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self._poster.close()

    async def deliver_due(self) -> int:
        """One round, waited for: how many endpoints it took (tests, and a caller that must
        know the round is over)."""
        started = await self.start_round()
        await asyncio.gather(*started)
        return len(started)

    async def start_round(self) -> list[asyncio.Task[None]]:
        """Take the lease of each endpoint with work and start its task."""
        started = []
        for endpoint_id in await self._due():
            if endpoint_id in self._running:
                continue
            claimed = await self._claim(endpoint_id)
            if claimed is None:
                continue
            task = asyncio.create_task(self._deliver(claimed), name=f"webhook-{endpoint_id}")
            self._running[endpoint_id] = task
            task.add_done_callback(self._forget)
            started.append(task)
        return started

    def _forget(self, task: asyncio.Task[None]) -> None:
        for endpoint_id, running in list(self._running.items()):
            if running is task:
                del self._running[endpoint_id]

    async def _due(self) -> list[str]:
        now = self._clock()

        def unit(connection: Connection) -> list[str]:
            has_event = (
                select(ticket_events.c.id)
                .where(
                    after_columns(_ENDPOINTS.cursor_xact, _ENDPOINTS.cursor_event),
                    horizon(connection),
                )
                .correlate(webhook_endpoints)
                .exists()
            )
            query = (
                select(_ENDPOINTS.id)
                .where(
                    or_(_ENDPOINTS.next_attempt_at.is_(None), _ENDPOINTS.next_attempt_at <= now),
                    or_(_ENDPOINTS.lease_owner.is_(None), _ENDPOINTS.lease_until < now),
                    has_event,
                )
                .order_by(_ENDPOINTS.created_at)
            )
            return list(connection.execute(query).scalars())

        return await self._db.read(unit)

    async def _claim(self, endpoint_id: str) -> _Claimed | None:
        now = self._clock()

        def unit(connection: Connection) -> _Claimed | None:
            taken = connection.execute(
                update(webhook_endpoints)
                .where(
                    _ENDPOINTS.id == endpoint_id,
                    or_(_ENDPOINTS.lease_owner.is_(None), _ENDPOINTS.lease_until < now),
                    or_(_ENDPOINTS.next_attempt_at.is_(None), _ENDPOINTS.next_attempt_at <= now),
                )
                .values(lease_owner=self.owner, lease_until=now + self._lease)
            )
            if taken.rowcount != 1:
                return None
            row = connection.execute(
                select(webhook_endpoints).where(_ENDPOINTS.id == endpoint_id)
            ).one()
            info = info_of(row)
            signing: tuple[bytes, ...] = ()
            problem = ""
            if self._key is None:
                problem = "this server has no credentials key to open the secret with"
            else:
                try:
                    signing = opened_secrets(self._key, row, now)
                except NotOpened as error:
                    problem = f"the secret does not open ({error}): remove and add it again"
            return _Claimed(
                info.id,
                info.url,
                info.ca_pem,
                frozenset(info.events),
                info.cursor,
                info.failures,
                signing,
                problem,
            )

        return await self._db.write(unit)

    async def _deliver(self, endpoint: _Claimed) -> None:
        try:
            await self._deliver_all(endpoint)
        except asyncio.CancelledError:  # the server stops: another replica may go on at once
            with contextlib.suppress(Exception):
                await self._release(endpoint.id)
            raise
        except Exception:
            log.exception("webhooks: delivering to %s failed", endpoint.id)
            await self._release(endpoint.id)

    async def _deliver_all(self, endpoint: _Claimed) -> None:
        if not endpoint.secrets:
            await self._failed(endpoint, endpoint.cursor, endpoint.problem)
            return
        cursor = endpoint.cursor
        while True:
            events = await self._db.read(functools.partial(_read, at=cursor, limit=self._batch))
            passed_over = cursor
            for event in events:
                if endpoint.kinds and event.kind not in endpoint.kinds:
                    passed_over = event.position
                    continue
                body = payload(endpoint.id, event)
                headers = {
                    EVENT_ID_HEADER: str(event.position.event),
                    EVENT_KIND_HEADER: event.kind,
                    **signed_headers(endpoint.secrets, int(self._wall_time()), body),
                }
                answer = await self._poster.post(
                    endpoint.url, body, headers, ca_pem=endpoint.ca_pem
                )
                if not answer.delivered:
                    await self._failed(endpoint, cursor, answer.problem, passed_over)
                    return
                if not await self._advance(endpoint.id, cursor, event.position, delivered=1):
                    return  # removed, or its lease lost: another holder goes on from the row
                cursor = passed_over = event.position
            if passed_over != cursor:
                if not await self._advance(endpoint.id, cursor, passed_over, delivered=0):
                    return
                cursor = passed_over
            if len(events) < self._batch:
                await self._release(endpoint.id)
                return

    def _held(self, endpoint_id: str, cursor: Position) -> object:
        return and_(
            _ENDPOINTS.id == endpoint_id,
            _ENDPOINTS.lease_owner == self.owner,
            _ENDPOINTS.cursor_xact == cursor.xact,
            _ENDPOINTS.cursor_event == cursor.event,
        )

    async def _advance(
        self, endpoint_id: str, cursor: Position, to: Position, *, delivered: int
    ) -> bool:
        now = self._clock()
        values: dict[str, object] = {
            "cursor_xact": to.xact,
            "cursor_event": to.event,
            "lease_until": now + self._lease,
        }
        if delivered:
            values.update(
                delivered=_ENDPOINTS.delivered + delivered,
                failures=0,
                next_attempt_at=None,
                last_success_at=now,
            )
        statement = (
            update(webhook_endpoints).where(self._held(endpoint_id, cursor)).values(**values)  # type: ignore[arg-type]
        )
        moved = await self._db.write(lambda connection: connection.execute(statement).rowcount)
        return bool(moved == 1)

    async def _failed(
        self,
        endpoint: _Claimed,
        cursor: Position,
        problem: str,
        passed_over: Position | None = None,
    ) -> None:
        """Keep the cursor (past the unwanted events before the one that failed), say why,
        wait before the next attempt, and give the lease back."""
        now = self._clock()
        count = endpoint.failures + 1
        wait = timedelta(seconds=self._backoff.delay_s(count))
        kept = passed_over if passed_over is not None and passed_over > cursor else cursor
        statement = (
            update(webhook_endpoints)
            .where(self._held(endpoint.id, cursor))  # type: ignore[arg-type]
            .values(
                cursor_xact=kept.xact,
                cursor_event=kept.event,
                failures=_ENDPOINTS.failures + 1,
                next_attempt_at=now + wait,
                last_error=problem[:MAX_ERROR_CHARS],
                last_error_at=now,
                lease_owner=None,
                lease_until=None,
            )
        )
        await self._db.write(lambda connection: connection.execute(statement))
        log.warning(
            "webhook %s: %s; attempt %d failed, next in %.0f s",
            endpoint.id,
            problem[:MAX_ERROR_CHARS],
            count,
            wait.total_seconds(),
        )

    async def _release(self, endpoint_id: str) -> None:
        statement = (
            update(webhook_endpoints)
            .where(_ENDPOINTS.id == endpoint_id, _ENDPOINTS.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None)
        )
        await self._db.write(lambda connection: connection.execute(statement))
