"""Script proposals: a new script, or a new version of one, written by a technician and
reviewed by another person before anyone signs it.

A proposal keeps the manifest's and the script's bytes exactly as proposed, who proposed it,
when, and a note; it moves through the states of sonde.server.domain.proposal_states. It
lives only in `script_proposals`: nothing that reaches an agent (the run's catalog entry,
the signed order) reads that table, and the server cannot sign it, so a proposal never runs.
An approved one is exported for signing with the offline catalog key; `catalog publish`
of that signed version marks it published.

Who may do what: scripts.propose (l2, admin) proposes, lists, reviews the diff and withdraws
its own; catalog.review (admin) approves or rejects another's, never its own. Each change and
its audit row share a transaction: script.propose (superseding the script's older live
proposal in the same one), script.review (approve or reject, with the reason),
script.withdraw; a refusal is audited as AuditedWrites does.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.catalog.bundle import MAX_BUNDLE_BYTES
from sonde.catalog.manifest import VERSION, Platform, Risk, parse_manifest
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.catalog import version_order
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.proposal_intake import (
    MAX_NOTE_CHARS,
    CheckedScript,
    ProposedFile,
    checked_scripts,
)
from sonde.server.domain.proposal_review import FieldChange, compare, risk_raised, unified_diff
from sonde.server.domain.proposal_states import ProposalEvent, ProposalState, next_state
from sonde.server.domain.roles import Permission, Principal, roles_with
from sonde.server.domain.text import checked_text
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import catalog_scripts, script_proposals
from sonde.server.storage.types import AnyRow

MAX_LISTED = 500
# What one export holds: the scripts' bytes fit one signed bundle (base64 and signatures).
MAX_EXPORT_BYTES = MAX_BUNDLE_BYTES // 2
MAX_REASON_CHARS = 2000
_P = script_proposals.c
_RECORD_COLUMNS = [c for c in script_proposals.c if c.name not in ("manifest", "script")]


@dataclass(frozen=True)
class ProposalRecord:
    id: int
    script_id: str
    version: str
    platform: Platform
    title: str
    risk: Risk
    state: ProposalState
    note: str
    proposed_by: str
    proposed_at: datetime
    reviewed_by: str
    reviewed_at: datetime | None
    reason: str
    superseded_by: int | None
    ended_at: datetime | None

    @property
    def name(self) -> str:
        return f"proposal {self.id} ({self.script_id} {self.version})"


@dataclass(frozen=True)
class ProposalFiles:
    """A proposal with its bytes, as export-approved writes them."""

    proposal: ProposalRecord
    manifest: bytes
    script: bytes


@dataclass(frozen=True)
class Proposed:
    proposals: tuple[ProposalRecord, ...]
    superseded: tuple[int, ...]  # the older live proposals these replaced


@dataclass(frozen=True)
class ProposalReview:
    """A proposal beside the newest version published before it (none: a new script)."""

    proposal: ProposalRecord
    manifest: bytes
    script: bytes
    published_version: str  # "": nothing older is published
    published_manifest: bytes
    published_script: bytes
    changes: tuple[FieldChange, ...]
    risk_raised: bool
    manifest_diff: str
    script_diff: str
    may_review: bool  # the caller holds catalog.review, is not its author, and it is pending


def _record(row: AnyRow) -> ProposalRecord:
    return ProposalRecord(
        id=int(row.id),
        script_id=row.script_id,
        version=row.version,
        platform=Platform(row.platform),
        title=row.title,
        risk=Risk(row.risk),
        state=ProposalState(row.state),
        note=row.note,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        reason=row.reason,
        superseded_by=None if row.superseded_by is None else int(row.superseded_by),
        ended_at=row.ended_at,
    )


def _newest_published(
    connection: Connection, script_id: str, below: int | None = None
) -> AnyRow | None:
    query = select(catalog_scripts).where(catalog_scripts.c.script_id == script_id)
    if below is not None:
        query = query.where(catalog_scripts.c.version_order < below)
    return connection.execute(query.order_by(catalog_scripts.c.version_order.desc())).first()


def resolve_proposal(connection: Connection, reference: str, *, lock: bool = False) -> AnyRow:
    """A proposal by its number, by `script-id@version` (the newest such), or by a script id
    (its live proposal, else its newest); NotFound saying how to find it."""
    reference = reference.strip()
    query = select(script_proposals)
    if reference.isascii() and reference.isdigit() and len(reference) < 19:
        query = query.where(_P.id == int(reference))
    elif "@" in reference:
        script_id, _, version = reference.partition("@")
        if not VERSION.fullmatch(version):
            raise InvalidArgument(f"{reference[:80]!r}: the version goes as X.Y.Z, like 1.2.0")
        query = query.where(_P.script_id == script_id, _P.version == version)
    elif reference:
        query = query.where(_P.script_id == reference).order_by(_P.live_script_id.is_(None))
    else:
        raise InvalidArgument("name a proposal: its number, or script-id@version")
    query = query.order_by(_P.id.desc()).limit(1)
    row = connection.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no proposal {reference[:80]!r} (sonde scripts proposals lists them)")
    return row


def _roles(permission: Permission) -> str:
    return ", ".join(role.label for role in roles_with(permission))


class Proposals:
    def __init__(
        self, db: Database, writes: AuditedWrites | None = None, clock: Clock = utc_now
    ) -> None:
        self._db = db
        self._clock = clock
        self._writes = writes if writes is not None else AuditedWrites(db, clock)

    async def propose(
        self, actor: Principal, files: builtins.list[ProposedFile], note: str = ""
    ) -> Proposed:
        """Keep each script as a pending proposal, all or none (audited `script.propose`)."""

        def unit(connection: Connection, entry: AuditEntry) -> Proposed:
            entry.detail["scripts"] = len(files)
            checked_note = checked_text("the note", note, max_chars=MAX_NOTE_CHARS)
            now = self._clock()
            made, superseded = [], []
            for script in checked_scripts(files):
                record, replaced = self._propose_one(connection, actor, script, checked_note, now)
                made.append(record)
                superseded += replaced
            entry.detail["proposals"] = ", ".join(
                f"{p.id} {p.script_id} {p.version}" for p in made
            )[:1000]
            if superseded:
                entry.detail["superseded"] = ", ".join(str(s) for s in superseded)
            return Proposed(tuple(made), tuple(superseded))

        return await self._writes.run(actor.name, "script.propose", unit, peer=actor.peer)

    def _propose_one(
        self,
        connection: Connection,
        actor: Principal,
        script: CheckedScript,
        note: str,
        now: datetime,
    ) -> tuple[ProposalRecord, builtins.list[int]]:
        manifest = script.manifest
        order = version_order(manifest)
        published = _newest_published(connection, manifest.id)
        if published is not None and published.version_order >= order:
            raise Conflict(
                f"{manifest.id} {manifest.version} is not newer than {published.version}, its "
                "newest published version: give the proposal a higher version"
            )
        live = connection.execute(
            select(script_proposals).where(_P.live_script_id == manifest.id).with_for_update()
        ).first()
        replaced = []
        if live is not None:
            if live.version_order >= order:
                raise Conflict(
                    f"{manifest.id} {manifest.version} is not newer than {live.version}, "
                    f"{live.state} as proposal {live.id} by {live.proposed_by}: give it a "
                    "higher version, or withdraw that one first"
                )
            after = next_state(live.id, ProposalState(live.state), ProposalEvent.SUPERSEDE)
            connection.execute(
                update(script_proposals)
                .where(_P.id == live.id)
                .values(
                    state=after.value,
                    live_script_id=None,
                    ended_at=now,
                    reason=f"replaced by {manifest.version}",
                )
            )
            replaced.append(int(live.id))
        values = {
            "script_id": manifest.id,
            "version": manifest.version,
            "version_order": order,
            "platform": script.platform.value,
            "title": manifest.title,
            "risk": manifest.risk.value,
            "manifest": script.manifest_bytes,
            "script": script.script_bytes,
            "note": note,
            "state": ProposalState.PENDING.value,
            "live_script_id": manifest.id,
            "proposed_by": actor.name,
            "proposed_at": now,
            "reviewed_by": "",
            "reason": "",
        }
        try:
            new_id = connection.execute(
                script_proposals.insert().values(values).returning(_P.id)
            ).scalar_one()
        except IntegrityError:  # the unique live_script_id; the transaction is rolled back
            raise Conflict(
                f"another proposal of {manifest.id} was made at the same moment: look at "
                "sonde scripts proposals, then propose again"
            ) from None
        if replaced:
            connection.execute(
                update(script_proposals).where(_P.id.in_(replaced)).values(superseded_by=new_id)
            )
        row = connection.execute(select(script_proposals).where(_P.id == new_id)).one()
        return _record(row), replaced

    async def list(
        self, caller: Principal, *, state: ProposalState | None = None, script_id: str = ""
    ) -> builtins.list[ProposalRecord]:
        """Proposals newest first (at most MAX_LISTED), of one state or script when given."""
        query = select(*_RECORD_COLUMNS).order_by(_P.id.desc()).limit(MAX_LISTED)
        if state is not None:
            query = query.where(_P.state == state.value)
        if script_id:
            query = query.where(_P.script_id == script_id[:64])
        rows = await self._db.read(lambda connection: connection.execute(query).all())
        return [_record(row) for row in rows]

    async def review(self, caller: Principal, reference: str) -> ProposalReview:
        """The proposal beside the newest version published below it, with its diffs."""

        def read(connection: Connection) -> tuple[AnyRow, AnyRow | None]:
            row = resolve_proposal(connection, reference)
            return row, _newest_published(connection, row.script_id, below=row.version_order)

        row, published = await self._db.read(read)
        proposal = _record(row)
        proposed = parse_manifest(row.manifest)
        current = parse_manifest(published.manifest) if published is not None else None
        old_manifest = bytes(published.manifest) if published is not None else b""
        old_script = bytes(published.script) if published is not None else b""
        old_version = published.version if published is not None else ""
        suffix = proposed.interpreter.suffix
        before = f"published {old_version}" if published is not None else "nothing published"
        after = f"proposed {proposal.version}"
        return ProposalReview(
            proposal=proposal,
            manifest=bytes(row.manifest),
            script=bytes(row.script),
            published_version=old_version,
            published_manifest=old_manifest,
            published_script=old_script,
            changes=tuple(compare(proposed, current)),
            risk_raised=risk_raised(proposed, current),
            manifest_diff=unified_diff(
                old_manifest,
                bytes(row.manifest),
                f"{proposal.script_id}.toml ({before})",
                f"{proposal.script_id}.toml ({after})",
            ),
            script_diff=unified_diff(
                old_script,
                bytes(row.script),
                f"{proposal.script_id}{suffix} ({before})",
                f"{proposal.script_id}{suffix} ({after})",
            ),
            may_review=caller.may(Permission.CATALOG_REVIEW)
            and caller.name != proposal.proposed_by
            and proposal.state is ProposalState.PENDING,
        )

    async def approve(self, actor: Principal, reference: str) -> ProposalRecord:
        """Approve another's pending proposal for signing (audited `script.review`)."""
        return await self._decide(actor, reference, ProposalEvent.APPROVE, "")

    async def reject(self, actor: Principal, reference: str, reason: str) -> ProposalRecord:
        """Reject another's pending proposal, saying why (audited `script.review`)."""
        return await self._decide(actor, reference, ProposalEvent.REJECT, reason)

    async def _decide(
        self, actor: Principal, reference: str, event: ProposalEvent, reason: str
    ) -> ProposalRecord:
        def unit(connection: Connection, entry: AuditEntry) -> ProposalRecord:
            entry.detail["decision"] = event.value
            entry.detail["proposal"] = reference[:80]
            why = checked_text(
                "the reason",
                reason,
                max_chars=MAX_REASON_CHARS,
                required=event is ProposalEvent.REJECT,
            )
            if why:
                entry.detail["reason"] = why[:500]
            if not actor.may(Permission.CATALOG_REVIEW):
                raise PermissionDenied(
                    "reviewing a proposal needs catalog.review "
                    f"({_roles(Permission.CATALOG_REVIEW)}); {actor.name} is {actor.role.label}"
                )
            row = resolve_proposal(connection, reference, lock=True)
            self._describe(entry, row)
            if row.proposed_by == actor.name:
                raise PermissionDenied(
                    f"proposal {row.id} is your own ({actor.name}): nobody reviews what they "
                    "proposed; ask another person with catalog.review "
                    f"({_roles(Permission.CATALOG_REVIEW)}) to review it"
                )
            after = next_state(row.id, ProposalState(row.state), event)
            changed = connection.execute(
                update(script_proposals)
                .where(_P.id == row.id, _P.state == row.state)
                .values(
                    state=after.value,
                    reviewed_by=actor.name,
                    reviewed_at=self._clock(),
                    reason=why,
                    live_script_id=row.script_id if after.live else None,
                )
            ).rowcount
            if changed != 1:
                raise Conflict(f"proposal {row.id} changed meanwhile: look at it again")
            return _record(
                connection.execute(select(script_proposals).where(_P.id == row.id)).one()
            )

        return await self._writes.run(actor.name, "script.review", unit, peer=actor.peer)

    async def withdraw(self, actor: Principal, reference: str, reason: str = "") -> ProposalRecord:
        """Withdraw your own pending or approved proposal (audited `script.withdraw`)."""

        def unit(connection: Connection, entry: AuditEntry) -> ProposalRecord:
            entry.detail["proposal"] = reference[:80]
            why = checked_text("the reason", reason, max_chars=MAX_REASON_CHARS)
            row = resolve_proposal(connection, reference, lock=True)
            self._describe(entry, row)
            if row.proposed_by != actor.name:
                raise PermissionDenied(
                    f"proposal {row.id} is {row.proposed_by}'s: only its author withdraws it "
                    "(a reviewer rejects it with --reject --reason)"
                )
            after = next_state(row.id, ProposalState(row.state), ProposalEvent.WITHDRAW)
            connection.execute(
                update(script_proposals)
                .where(_P.id == row.id)
                .values(state=after.value, live_script_id=None, ended_at=self._clock(), reason=why)
            )
            return _record(
                connection.execute(select(script_proposals).where(_P.id == row.id)).one()
            )

        return await self._writes.run(actor.name, "script.withdraw", unit, peer=actor.peer)

    @staticmethod
    def _describe(entry: AuditEntry, row: AnyRow) -> None:
        entry.detail["proposal"] = int(row.id)
        entry.detail["script"] = f"{row.script_id} {row.version}"
        entry.detail["risk"] = row.risk
        entry.detail["proposed_by"] = row.proposed_by

    async def approved(self, caller: Principal) -> tuple[builtins.list[ProposalFiles], int]:
        """The approved proposals not yet published, by platform then script id, as many as
        one signed bundle holds (MAX_EXPORT_BYTES), and how many were left out past that."""
        query = (
            select(script_proposals)
            .where(_P.state == ProposalState.APPROVED.value)
            .order_by(_P.platform, _P.script_id)
        )
        rows = await self._db.read(lambda connection: connection.execute(query).all())
        exported, size = [], 0
        for row in rows:
            size += len(row.manifest) + len(row.script)
            if size > MAX_EXPORT_BYTES:
                break
            exported.append(ProposalFiles(_record(row), bytes(row.manifest), bytes(row.script)))
        return exported, len(rows) - len(exported)
