"""The admin's webhook endpoints: add (the secret shown once), list with their delivery's
state, rotate the secret (the new one shown once), remove. Each change is audited in its
transaction (`webhook.add`, `webhook.rotate`, `webhook.remove`), never with a secret or the
URL's query.

A rotation keeps the previous secret for an overlap (DEFAULT_OVERLAP, at most MAX_OVERLAP):
until it ends the delivery signs each POST with both, so that a receiver switches to the new
secret when it likes and no event fails its check meanwhile. A second rotation within the
overlap keeps only the secret it replaces.

The shared secret is sealed with pki/credentials.key as remote credentials are
(server/domain/credential_secrets.py), bound to the endpoint's id and URL: a row whose URL was
changed in the database does not open, so its secret is never sent to another receiver.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.credential_secrets import (
    Binding,
    CredentialKey,
    CredentialSecret,
    NotOpened,
    Sealed,
    open_sealed,
    seal,
)
from sonde.server.domain.roles import Principal
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import webhook_endpoints
from sonde.server.storage.types import AnyRow
from sonde.server.webhooks.addresses import checked_ca, checked_kinds, checked_secret, checked_url
from sonde.server.webhooks.feed import Position, feed_end, pending_count

MAX_ENDPOINTS = 50
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
_BINDING_KIND = "webhook"  # never a credential's kind: a webhook's ciphertext opens as nothing else
_COLUMNS = webhook_endpoints.c
_ALL = select(webhook_endpoints).order_by(_COLUMNS.created_at, _COLUMNS.id)
_BY_ID = select(webhook_endpoints).where(_COLUMNS.id == bindparam("wanted"))
_REMOVE = delete(webhook_endpoints).where(_COLUMNS.id == bindparam("removed_id"))
_SEALED_WITH = select(_COLUMNS.sealed_with, func.count()).group_by(_COLUMNS.sealed_with)


@dataclass(frozen=True)
class WebhookInfo:
    """An endpoint as listings show it: never its secret."""

    id: str
    url: str
    events: tuple[str, ...]  # () for every kind
    ca_pem: str
    created_by: str
    created_at: datetime
    cursor: Position
    delivered: int
    failures: int
    next_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    pending: int = 0  # filled in by list()
    previous_until: datetime | None = None  # the previous secret signs too until then


@dataclass(frozen=True)
class AddedWebhook:
    webhook: WebhookInfo
    secret: str  # shown to the admin this once


def info_of(row: AnyRow) -> WebhookInfo:
    return WebhookInfo(
        id=row.id,
        url=row.url,
        events=tuple(json.loads(row.events or "[]")),
        ca_pem=row.ca_pem,
        created_by=row.created_by,
        created_at=row.created_at,
        cursor=Position(int(row.cursor_xact), int(row.cursor_event)),
        delivered=int(row.delivered),
        failures=int(row.failures),
        next_attempt_at=row.next_attempt_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        previous_until=row.previous_until,
    )


def binding(endpoint_id: str, url: str) -> Binding:
    return Binding(endpoint_id, "", _BINDING_KIND, "", (url,))


def _opened(key: CredentialKey, sealed: Sealed, row: AnyRow) -> bytes:
    if sealed.key_id != key.key_id:
        raise NotOpened(
            f"sealed with credentials key {sealed.key_id}, this server's is {key.key_id}"
        )
    return open_sealed(key, sealed, binding(row.id, row.url)).text().encode()


def opened_secrets(key: CredentialKey, row: AnyRow, now: datetime) -> tuple[bytes, ...]:
    """The secrets each POST is signed with: the endpoint's, then its previous one while the
    rotation's overlap lasts. NotOpened when another key sealed one or the row was changed."""
    current = _opened(key, Sealed(bytes(row.nonce), bytes(row.ciphertext), row.sealed_with), row)
    if row.previous_until is None or row.previous_until <= now:
        return (current,)
    previous = Sealed(
        bytes(row.previous_nonce), bytes(row.previous_ciphertext), row.previous_sealed_with
    )
    return current, _opened(key, previous, row)


def shown_url(url: str) -> str:
    """The URL without its query (which may carry a receiver's token): for the audit log."""
    where = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((where.scheme, where.netloc, where.path, "", ""))[:300]


async def sealed_with(db: Database) -> dict[str, int]:
    """How many webhook secrets each credentials key id sealed (the start's key check)."""
    rows = await db.read(lambda connection: connection.execute(_SEALED_WITH).all())
    return {row[0]: row[1] for row in rows}


class WebhookEndpoints:
    """The endpoint store. `key` None (no pki/credentials.key): adding is refused, saying so."""

    def __init__(
        self,
        db: Database,
        writes: AuditedWrites,
        key: CredentialKey | None,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._writes = writes
        self._key = key
        self._clock = clock

    @property
    def credential_key(self) -> CredentialKey | None:
        """The key the secrets are sealed with: the delivery opens them with the same."""
        return self._key

    async def add(
        self,
        actor: Principal,
        url: str,
        *,
        events: builtins.list[str] | None = None,
        ca_pem: str = "",
        secret: str = "",
    ) -> AddedWebhook:
        """A new endpoint, sent every event written from now on; audited as `webhook.add`.
        `secret` "" has the server make one (256 bits); either way it is returned this once."""

        def unit(connection: Connection, entry: AuditEntry) -> AddedWebhook:
            if self._key is None:
                raise Conflict(
                    "this server has no credentials key (pki/credentials.key) to seal the "
                    "webhook's secret with: start it once with its data folder"
                )
            checked = checked_url(url)
            kinds = checked_kinds(events or [])
            ca = checked_ca(ca_pem)
            shared = secret or secrets.token_urlsafe(32)
            checked_secret(shared)
            count = connection.execute(select(func.count()).select_from(webhook_endpoints))
            if count.scalar_one() >= MAX_ENDPOINTS:
                raise Conflict(
                    f"{MAX_ENDPOINTS} webhooks are set up already: remove one first "
                    "(sonde webhook list, sonde webhook remove ID)"
                )
            endpoint_id = hashed_secrets.new_id()
            sealed = seal(self._key, CredentialSecret(shared), binding(endpoint_id, checked))
            start = feed_end(connection)
            now = self._clock()
            connection.execute(
                webhook_endpoints.insert(),
                {
                    "id": endpoint_id,
                    "url": checked,
                    "events": json.dumps(list(kinds)),
                    "ca_pem": ca,
                    "sealed_with": sealed.key_id,
                    "nonce": sealed.nonce,
                    "ciphertext": sealed.ciphertext,
                    "created_by": actor.name,
                    "created_at": now,
                    "cursor_xact": start.xact,
                    "cursor_event": start.event,
                },
            )
            entry.detail.update(
                {
                    "webhook": endpoint_id,
                    "events": ",".join(kinds) or "all",
                    "custom_ca": "yes" if ca else "no",
                    "secret": "given" if secret else "made",
                }
            )
            row = connection.execute(_BY_ID, {"wanted": endpoint_id}).one()
            return AddedWebhook(info_of(row), shared)

        return await self._writes.run(
            actor.name, "webhook.add", unit, detail={"url": shown_url(url)}, peer=actor.peer
        )

    async def list(self) -> builtins.list[WebhookInfo]:
        """Every endpoint, oldest first, with how many of its events wait to be sent."""

        def unit(connection: Connection) -> builtins.list[WebhookInfo]:
            found = []
            for row in connection.execute(_ALL).all():
                info = info_of(row)
                pending = pending_count(connection, info.cursor, info.events)
                found.append(dataclasses.replace(info, pending=pending))
            return found

        return await self._db.read(unit)

    async def rotate(
        self,
        actor: Principal,
        endpoint_id: str,
        *,
        overlap: timedelta = DEFAULT_OVERLAP,
        secret: str = "",
    ) -> AddedWebhook:
        """A new secret for the endpoint, returned this once (`secret` "": the server makes
        one); the one it replaces still signs beside it for `overlap`. Audited as
        `webhook.rotate`. The endpoint's cursor and state are untouched: nothing is resent or
        skipped."""
        wanted = endpoint_id.strip()
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            raise InvalidArgument(
                f"the overlap is 0 s to {MAX_OVERLAP.days} days: how long the old secret still "
                "signs beside the new one"
            )

        def unit(connection: Connection, entry: AuditEntry) -> AddedWebhook:
            if self._key is None:
                raise Conflict(
                    "this server has no credentials key (pki/credentials.key) to seal the "
                    "webhook's secret with: start it once with its data folder"
                )
            row = connection.execute(_BY_ID, {"wanted": wanted}).first()
            if row is None:
                raise NotFound(f"no webhook has the id {wanted[:40]!r} (sonde webhook list)")
            shared = secret or secrets.token_urlsafe(32)
            checked_secret(shared)
            sealed = seal(self._key, CredentialSecret(shared), binding(row.id, row.url))
            now = self._clock()
            kept = overlap > timedelta(0)
            connection.execute(
                update(webhook_endpoints)
                .where(_COLUMNS.id == row.id)
                .values(
                    sealed_with=sealed.key_id,
                    nonce=sealed.nonce,
                    ciphertext=sealed.ciphertext,
                    previous_sealed_with=row.sealed_with if kept else None,
                    previous_nonce=row.nonce if kept else None,
                    previous_ciphertext=row.ciphertext if kept else None,
                    previous_until=now + overlap if kept else None,
                )
            )
            entry.detail.update(
                {
                    "url": shown_url(row.url),
                    "overlap_s": int(overlap.total_seconds()),
                    "secret": "given" if secret else "made",
                }
            )
            rotated = connection.execute(_BY_ID, {"wanted": row.id}).one()
            info = info_of(rotated)
            info = dataclasses.replace(
                info, pending=pending_count(connection, info.cursor, info.events)
            )
            return AddedWebhook(info, shared)

        return await self._writes.run(
            actor.name, "webhook.rotate", unit, detail={"webhook": wanted[:40]}, peer=actor.peer
        )

    async def remove(self, actor: Principal, endpoint_id: str) -> WebhookInfo:
        """Delete an endpoint and its secret; audited as `webhook.remove`. Nothing more is sent
        to it (a POST already under way may still arrive)."""
        wanted = endpoint_id.strip()

        def unit(connection: Connection, entry: AuditEntry) -> WebhookInfo:
            row = connection.execute(_BY_ID, {"wanted": wanted}).first()
            if row is None:
                raise NotFound(f"no webhook has the id {wanted[:40]!r} (sonde webhook list)")
            info = info_of(row)
            info = dataclasses.replace(
                info, pending=pending_count(connection, info.cursor, info.events)
            )
            entry.detail.update({"url": shown_url(info.url), "delivered": info.delivered})
            connection.execute(_REMOVE, {"removed_id": info.id})
            return info

        return await self._writes.run(
            actor.name, "webhook.remove", unit, detail={"webhook": wanted[:40]}, peer=actor.peer
        )
