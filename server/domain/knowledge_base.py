"""The knowledge base stored: procedures saved from their Markdown, searched, and suggested for
a ticket with how well each has worked (docs/kb.md).

- A procedure is stored as the Markdown a team keeps in git (kb_markdown.py), whole, beside the
  few columns listed on. The server owns the version: saving a procedure that exists needs the
  file to be of the stored version (it then becomes the next one); an older one is refused,
  saying someone changed it since, so that an import from a stale checkout never overwrites a
  newer edit. Saving what is stored already changes nothing. Saving is audited (`kb.save`).
- Suggestions for a ticket: its findings are those of the newest diagnostic of its machine,
  its text the title and description, its category the ticket's.
- Measured success, from the closed loop: a procedure was used on a ticket when one of its
  scripts ran for that ticket; it resolved it, verified, when that ticket was then resolved or
  closed as fixed and one of those runs' verifications cleared its finding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.kb_markdown import from_markdown, to_markdown
from sonde.server.domain.kb_matching import (
    ProcedureOutcomes,
    SearchHit,
    Suggestion,
    search,
    suggest,
)
from sonde.server.domain.kb_procedure import Procedure
from sonde.server.domain.roles import Principal
from sonde.server.domain.ticket_model import TicketOutcome
from sonde.server.domain.ticket_queries import load_ticket
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import (
    commands,
    findings,
    kb_procedures,
    script_runs,
    snapshots,
    tickets,
)
from sonde.v1 import diagnostics_pb2

MAX_MARKDOWN_CHARS = 256 * 1024
MAX_PROCEDURES = 5000


@dataclasses.dataclass(frozen=True)
class Saved:
    procedure: Procedure
    changed: bool  # False: the file was what is stored already


def _stored(connection: Connection, procedure_id: str) -> Procedure | None:
    text = connection.execute(
        select(kb_procedures.c.markdown).where(kb_procedures.c.id == procedure_id)
    ).scalar()
    return None if text is None else from_markdown(str(text), source_name=procedure_id)


def _all(connection: Connection) -> list[Procedure]:
    rows = connection.execute(
        select(kb_procedures.c.id, kb_procedures.c.markdown).order_by(kb_procedures.c.id)
    )
    return [from_markdown(str(row.markdown), source_name=str(row.id)) for row in rows]


def outcomes(
    connection: Connection, procedures: Iterable[Procedure]
) -> dict[str, ProcedureOutcomes]:
    """Per procedure: tickets one of its scripts ran for, and those resolved as fixed with a
    run of it whose verification cleared."""
    wanted = {p.id: set(p.script_ids) for p in procedures if p.script_ids}
    every_script = set().union(*wanted.values()) if wanted else set()
    if not every_script:
        return {}
    rows = connection.execute(
        select(
            script_runs.c.script_id,
            script_runs.c.verification,
            commands.c.ticket_id,
            tickets.c.outcome,
        )
        .join(commands, commands.c.id == script_runs.c.command_id)
        .join(tickets, tickets.c.id == commands.c.ticket_id)
        .where(script_runs.c.script_id.in_(sorted(every_script)))
        .where(script_runs.c.dry_run.is_(False))
    ).all()
    found: dict[str, ProcedureOutcomes] = {}
    for procedure_id, scripts in wanted.items():
        used = {row.ticket_id for row in rows if row.script_id in scripts}
        resolved = {
            row.ticket_id
            for row in rows
            if row.script_id in scripts
            and row.verification == "cleared"
            and row.outcome == TicketOutcome.FIXED.value
        }
        found[procedure_id] = ProcedureOutcomes(used=len(used), resolved_verified=len(resolved))
    return found


def _ticket_findings(connection: Connection, agent_id: str | None) -> list[str]:
    """The finding ids of the newest diagnostic of the ticket's machine that found any."""
    if agent_id is None:
        return []
    newest = connection.execute(
        select(snapshots.c.id)
        .where(snapshots.c.agent_id == agent_id)
        .order_by(snapshots.c.id.desc())
        .limit(1)
    ).scalar()
    if newest is None:
        return []
    return [
        str(check)
        for check in connection.execute(
            select(findings.c.check_id).where(
                findings.c.snapshot_id == newest,
                findings.c.severity.in_(
                    [diagnostics_pb2.SEVERITY_WARNING, diagnostics_pb2.SEVERITY_CRITICAL]
                ),
            )
        ).scalars()
    ]


class KnowledgeBase:
    def __init__(self, db: Database, writes: AuditedWrites, clock: Clock = utc_now) -> None:
        self._db = db
        self._writes = writes
        self._clock = clock

    async def save(self, actor: Principal, markdown: str, *, source_name: str) -> Saved:
        if len(markdown) > MAX_MARKDOWN_CHARS:
            raise InvalidArgument(
                f"{source_name} is {len(markdown):,} characters; a procedure is at most "
                f"{MAX_MARKDOWN_CHARS:,}"
            )
        given = from_markdown(markdown, source_name=source_name)

        def unit(connection: Connection, entry: AuditEntry) -> Saved:
            entry.detail |= {"procedure": given.id}
            stored = _stored(connection, given.id)
            if stored is not None:
                if dataclasses.replace(stored, updated_at=given.updated_at) == given:
                    entry.detail["changed"] = "no"
                    return Saved(stored, changed=False)
                if given.version != stored.version:
                    raise Conflict(
                        f"procedure {given.id} is at version {stored.version} and this file "
                        f"is of version {given.version}: someone changed it since; export it "
                        "again (sonde kb export) and make your change on that"
                    )
            else:
                count = connection.execute(select(func.count()).select_from(kb_procedures))
                if count.scalar_one() >= MAX_PROCEDURES:
                    raise Conflict(f"the knowledge base holds {MAX_PROCEDURES} procedures")
            now = self._clock()
            version = stored.version + 1 if stored is not None else 1
            saved = dataclasses.replace(given, version=version, updated_at=now)
            values = {
                "title": saved.title,
                "category": saved.category,
                "markdown": to_markdown(saved),
                "version": version,
                "updated_at": now,
                "updated_by": actor.name,
            }
            if stored is None:
                connection.execute(kb_procedures.insert(), {"id": saved.id, **values})
            else:
                connection.execute(
                    kb_procedures.update().where(kb_procedures.c.id == saved.id).values(**values)
                )
            entry.detail |= {"version": version, "changed": "yes"}
            return Saved(saved, changed=True)

        return await self._writes.run(actor.name, "kb.save", unit, peer=actor.peer)

    async def get(self, procedure_id: str) -> Procedure:
        found = await self._db.read(lambda c: _stored(c, procedure_id))
        if found is None:
            raise NotFound(f"no procedure {procedure_id[:64]!r} (sonde kb search WORDS)")
        return found

    async def all(self) -> list[Procedure]:
        return await self._db.read(_all)

    async def search(self, query: str) -> list[SearchHit]:
        if not query.strip():
            raise InvalidArgument("say what to search for")
        return search(await self.all(), query)

    async def suggest_for_ticket(self, ticket_id: int, *, limit: int = 5) -> list[Suggestion]:
        def unit(connection: Connection) -> list[Suggestion]:
            ticket = load_ticket(connection, ticket_id)
            procedures = _all(connection)
            return suggest(
                procedures,
                finding_ids=_ticket_findings(connection, ticket.agent_id),
                text=f"{ticket.title}\n{ticket.description}",
                category=ticket.category,
                stats=outcomes(connection, procedures),
                limit=limit,
            )

        return await self._db.read(unit)
