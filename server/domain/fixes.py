"""`sonde fix AGENT FINDING`: the catalog fix a finding names, run under the same rules as any
run (tiers, approvals, parameters checked against the manifest), with its parameters taken
from the finding's snapshot and the run verified against that finding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.agent.checks.sources import CHECK_SOURCES
from sonde.catalog.manifest import Manifest
from sonde.server.domain.agents import AgentRecord, resolve_agent
from sonde.server.domain.command_queue import DEFAULT_EXPIRY
from sonde.server.domain.fix_parameters import fix_parameters
from sonde.server.domain.roles import Principal
from sonde.server.domain.run_records import RunRecord, chosen_entry, published_manifest
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.storage.db import Database
from sonde.server.storage.tables import findings, snapshots
from sonde.v1 import diagnostics_pb2


@dataclass(frozen=True)
class FixPlan:
    agent: AgentRecord
    snapshot_id: int
    collected_at: datetime
    finding: diagnostics_pb2.Finding
    manifest: Manifest
    parameters: dict[str, str]  # as they will be sent
    shown: dict[str, str]  # secrets as ***
    sources: dict[str, str]  # name -> where its value came from


def _newest_finding(
    connection: Connection, agent: AgentRecord, check: str
) -> tuple[int, datetime, diagnostics_pb2.Finding, diagnostics_pb2.Snapshot]:
    row = connection.execute(
        select(snapshots.c.id, snapshots.c.collected_at, snapshots.c.payload, findings.c.payload)
        .join(findings, findings.c.snapshot_id == snapshots.c.id)
        .where(snapshots.c.agent_id == agent.id)
        .where(findings.c.check_id == check)
        .order_by(snapshots.c.received_at.desc(), snapshots.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(
            f"no diagnostic of {agent.hostname} has a {check} finding: run "
            f"sonde diag {agent.hostname} first"
        )
    snapshot = diagnostics_pb2.Snapshot.FromString(row[2])
    return int(row[0]), row[1], diagnostics_pb2.Finding.FromString(row[3]), snapshot


class Fixes:
    def __init__(self, db: Database, script_runs: ScriptRuns) -> None:
        self._db = db
        self._script_runs = script_runs

    async def plan(
        self, agent_ref: str, check: str, given: Mapping[str, str] | None = None
    ) -> FixPlan:
        """What `sonde fix` would run: refused, saying why, when the finding is OK, names no
        catalog fix, or a required parameter is found nowhere."""
        check = check.strip()
        if check not in CHECK_SOURCES:
            known = ", ".join(sorted(CHECK_SOURCES))
            raise InvalidArgument(f"{check[:64]!r} is not a finding's check (one of {known})")

        def unit(connection: Connection) -> FixPlan:
            agent = resolve_agent(connection, agent_ref)
            snapshot_id, collected_at, finding, snapshot = _newest_finding(connection, agent, check)
            when = f"{collected_at:%Y-%m-%d %H:%M} UTC"
            if finding.severity == diagnostics_pb2.SEVERITY_OK:
                raise Conflict(
                    f"{check} was OK on {agent.hostname} at {when} (snapshot {snapshot_id}): "
                    f"nothing to fix; sonde diag {agent.hostname} checks again"
                )
            if not finding.fix_script_id:
                raise NotFound(
                    f"no catalog script fixes {check} on {agent.platform or 'this platform'}: "
                    "escalate the ticket, or propose one (sonde scripts propose)"
                )
            entry = chosen_entry(connection, finding.fix_script_id, "", agent.platform)
            manifest = published_manifest(bytes(entry.manifest))
            found = fix_parameters(manifest, finding, snapshot, dict(given or {}))
            secret = {p.name for p in manifest.parameters if p.secret}
            shown = {
                name: "***" if name in secret else value for name, value in found.values.items()
            }
            return FixPlan(
                agent,
                snapshot_id,
                collected_at,
                finding,
                manifest,
                found.values,
                shown,
                found.sources,
            )

        return await self._db.read(unit)

    async def run(
        self,
        principal: Principal,
        plan: FixPlan,
        *,
        ticket_id: int | None = None,
        expires_in: timedelta = DEFAULT_EXPIRY,
        dry_run: bool = False,
        resolve_if_cleared: bool = False,
    ) -> RunRecord:
        """Ask for the planned run: the same checks and audit as `sonde run`."""
        return await self._script_runs.request(
            principal,
            plan.agent.id,
            plan.manifest.id,
            version=plan.manifest.version,
            parameters=plan.parameters,
            ticket_id=ticket_id,
            expires_in=expires_in,
            dry_run=dry_run,
            finding=plan.finding.check,
            resolve_if_cleared=resolve_if_cleared,
        )
