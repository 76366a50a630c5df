"""The published script catalog: signed bundles in, every version kept, nothing re-signed.

The server holds only the catalog's public key (pki/catalog.pub). A bundle is published whole
or not at all: every entry must verify against that key (sonde.catalog.bundle.verify_entry),
and an entry whose id and version are published already must have the very same bytes (a
version is immutable; the same bytes again change nothing). The change and its audit row
(`catalog.publish`) share one transaction, and so does what it does to the script's live
proposal of that version (sonde.server.domain.proposal_states.settle_published): published
when its bytes are the signed ones, superseded when they are not.

Who may run what is decided by a script's risk: scripts.run.low, .medium, .high
(server/domain/roles.py); the listing marks each script with it.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from sonde.catalog.bundle import (
    BundleError,
    SignedEntry,
    decode_bundle,
    key_id,
    verify_entry,
)
from sonde.catalog.manifest import Manifest, Platform, Risk, parse_manifest
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.proposal_states import settle_published
from sonde.server.domain.roles import Permission, Principal
from sonde.server.errors import Conflict, InvalidArgument, NotFound, Unavailable
from sonde.server.storage.db import Database
from sonde.server.storage.tables import catalog_scripts
from sonde.server.storage.types import AnyRow

RUN_PERMISSION: dict[Risk, Permission] = {
    Risk.LOW: Permission.SCRIPTS_RUN_LOW,
    Risk.MEDIUM: Permission.SCRIPTS_RUN_MEDIUM,
    Risk.HIGH: Permission.SCRIPTS_RUN_HIGH,
}
_AUDITED_ENTRIES = 50  # the audit row names this many added scripts, then counts the rest

_COLUMNS = (
    catalog_scripts.c.script_id,
    catalog_scripts.c.version,
    catalog_scripts.c.manifest,
    catalog_scripts.c.script,
    catalog_scripts.c.signature,
    catalog_scripts.c.key_id,
    catalog_scripts.c.published_at,
    catalog_scripts.c.published_by,
)
_PUBLISHED = select(*_COLUMNS).where(
    catalog_scripts.c.script_id == bindparam("sid"), catalog_scripts.c.version == bindparam("v")
)
_VERSIONS = (
    select(*_COLUMNS)
    .where(catalog_scripts.c.script_id == bindparam("sid"))
    .order_by(catalog_scripts.c.version_order.desc())
)
_NEWEST_ORDER = (
    select(
        catalog_scripts.c.script_id,
        func.max(catalog_scripts.c.version_order).label("newest"),
        func.count().label("versions"),
    )
    .group_by(catalog_scripts.c.script_id)
    .subquery()
)
_NEWEST = (
    select(*_COLUMNS, _NEWEST_ORDER.c.versions)
    .join(
        _NEWEST_ORDER,
        (catalog_scripts.c.script_id == _NEWEST_ORDER.c.script_id)
        & (catalog_scripts.c.version_order == _NEWEST_ORDER.c.newest),
    )
    .order_by(catalog_scripts.c.script_id)
)
_INSERT = catalog_scripts.insert()


def may_run(principal: Principal, risk: Risk) -> bool:
    return principal.may(RUN_PERMISSION[risk])


def version_order(manifest: Manifest) -> int:
    major, minor, patch = manifest.version_key
    return major * 10**12 + minor * 10**6 + patch


@dataclass(frozen=True)
class CatalogScript:
    """One published version of a script, as signed, with who published it when."""

    manifest: Manifest
    manifest_bytes: bytes
    script: bytes
    signature: bytes
    key_id: str
    published_at: datetime
    published_by: str

    @property
    def entry(self) -> SignedEntry:
        """The signed entry, as an agent verifies it."""
        return SignedEntry(
            self.manifest.id,
            self.manifest.version,
            self.manifest_bytes,
            self.script,
            self.key_id,
            self.signature,
        )


@dataclass(frozen=True)
class ListedScript:
    script: CatalogScript  # the newest version
    versions: int
    may_run: bool


@dataclass(frozen=True)
class ScriptVersions:
    script: CatalogScript  # the version asked for (the newest unless named)
    versions: tuple[CatalogScript, ...]  # newest first
    may_run: bool


@dataclass(frozen=True)
class PublishedScript:
    script_id: str
    version: str
    added: bool  # False: published before with the same bytes


@dataclass(frozen=True)
class Publication:
    key_id: str
    scripts: tuple[PublishedScript, ...]


def _script(row: AnyRow) -> CatalogScript:
    return CatalogScript(
        manifest=parse_manifest(row.manifest),
        manifest_bytes=row.manifest,
        script=row.script,
        signature=row.signature,
        key_id=row.key_id,
        published_at=row.published_at,
        published_by=row.published_by,
    )


class Catalog:
    """The published catalog over `db`; `public_key` is the pinned catalog key (None: this
    server has no pki/catalog.pub, and refuses to publish until it has)."""

    def __init__(
        self,
        db: Database,
        public_key: ed25519.Ed25519PublicKey | None,
        clock: Clock = utc_now,
        *,
        writes: AuditedWrites | None = None,
    ) -> None:
        self._db = db
        self._public_key = public_key
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)

    @property
    def key_id(self) -> str:
        return key_id(self._public_key) if self._public_key is not None else ""

    async def publish(self, actor: Principal, bundle: bytes) -> Publication:
        """Publish every entry of a signed bundle, or none; audited as `catalog.publish`."""

        def unit(connection: Connection, entry: AuditEntry) -> Publication:
            public_key = self._public_key
            if public_key is None:
                raise Unavailable(
                    "this server has no catalog public key (pki/catalog.pub): write it with "
                    "`sonde-catalog public-key --key catalog.key > pki/catalog.pub` and restart"
                )
            entry.detail["key_id"] = key_id(public_key)
            try:
                signed = decode_bundle(bundle)
                checked = [(e, verify_entry(public_key, e)) for e in signed.entries]
            except BundleError as error:
                raise InvalidArgument(
                    f"the bundle is refused, nothing published: {error}"
                ) from None
            if not checked:
                raise InvalidArgument("the bundle holds no scripts: nothing published")
            now = self._clock()
            published = tuple(
                self._publish_one(connection, e, m, actor.name, now) for e, m in checked
            )
            added = [f"{p.script_id} {p.version}" for p in published if p.added]
            entry.detail["added"] = ", ".join(added[:_AUDITED_ENTRIES]) + (
                f" and {len(added) - _AUDITED_ENTRIES} more"
                if len(added) > _AUDITED_ENTRIES
                else ""
            )
            entry.detail["unchanged"] = len(published) - len(added)
            settled = [
                settle_published(
                    connection, e.id, e.version, manifest=e.manifest, script=e.script, at=now
                )
                for e, _ in checked
            ]
            proposals = [str(n) for s in settled for n in s.published]
            if proposals:
                entry.detail["proposals_published"] = ", ".join(proposals)[:1000]
            superseded = [str(n) for s in settled for n in s.superseded]
            if superseded:
                entry.detail["proposals_superseded"] = ", ".join(superseded)[:1000]
            return Publication(key_id(public_key), published)

        return await self._writes.run(
            actor.name, "catalog.publish", unit, detail={"bytes": len(bundle)}, peer=actor.peer
        )

    def _publish_one(
        self,
        connection: Connection,
        signed: SignedEntry,
        manifest: Manifest,
        actor: str,
        at: datetime,
    ) -> PublishedScript:
        row = connection.execute(_PUBLISHED, {"sid": manifest.id, "v": manifest.version}).first()
        if row is not None:
            if (row.manifest, row.script) != (signed.manifest, signed.script):
                raise Conflict(
                    f"{manifest.id} {manifest.version} is published already with other bytes: "
                    "a published version never changes; give the new one a higher version. "
                    "Nothing published"
                )
            return PublishedScript(manifest.id, manifest.version, added=False)
        connection.execute(
            _INSERT,
            {
                "script_id": manifest.id,
                "version": manifest.version,
                "version_order": version_order(manifest),
                "title": manifest.title,
                "risk": manifest.risk.value,
                "platforms": ",".join(p.value for p in manifest.platforms),
                "manifest": signed.manifest,
                "script": signed.script,
                "signature": signed.signature,
                "key_id": signed.key_id,
                "published_at": at,
                "published_by": actor,
            },
        )
        return PublishedScript(manifest.id, manifest.version, added=True)

    async def list(
        self, caller: Principal, *, platform: str = "", all_risks: bool = False
    ) -> builtins.list[ListedScript]:
        """The newest version of each script, sorted by id: those the caller may run, or
        every one (marked) with all_risks; only those for `platform` when given."""
        wanted = _platform(platform)
        rows = await self._db.read(lambda connection: connection.execute(_NEWEST).all())
        listed = []
        for row in rows:
            script = _script(row)
            allowed = may_run(caller, script.manifest.risk)
            if wanted is not None and wanted not in script.manifest.platforms:
                continue
            if allowed or all_risks:
                listed.append(ListedScript(script, row.versions, allowed))
        return listed

    async def get(self, caller: Principal, script_id: str, version: str = "") -> ScriptVersions:
        """A script's versions (newest first) and the one asked for; NotFound saying so."""
        if not script_id or len(script_id) > 64:
            raise InvalidArgument("name a script by its id, like flush-dns")
        rows = await self._db.read(
            lambda connection: connection.execute(_VERSIONS, {"sid": script_id}).all()
        )
        if not rows:
            raise NotFound(f"no script {script_id!r} is published (sonde scripts lists them)")
        versions = tuple(_script(row) for row in rows)
        chosen = versions[0]
        if version:
            found = [v for v in versions if v.manifest.version == version]
            if not found:
                known = ", ".join(v.manifest.version for v in versions)
                raise NotFound(f"{script_id} has no version {version!r} (published: {known})")
            chosen = found[0]
        return ScriptVersions(chosen, versions, may_run(caller, chosen.manifest.risk))


def _platform(text: str) -> Platform | None:
    if not text:
        return None
    try:
        return Platform(text.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise InvalidArgument(f"unknown platform {text!r}: expected {known}") from None
