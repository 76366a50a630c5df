"""`sonde scripts stats`: which fixes work. Per script: the runs that ran (dry runs left out),
how many exited 0, how many were verified and how many cleared; per script and finding: the
same for each check its verifications looked at, so a team sees that a fix clears
`disk.space` nine times in ten but `network.dns` once in three."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.commands import CommandState
from sonde.server.domain.run_verification import VerificationState
from sonde.server.errors import InvalidArgument
from sonde.server.storage.db import Database
from sonde.server.storage.tables import commands, script_runs
from sonde.server.storage.types import AnyRow
from sonde.v1 import diagnostics_pb2

MAX_DAYS = 3650
_VERIFIED = (VerificationState.CLEARED.value, VerificationState.NOT_CLEARED.value)


@dataclass
class ScriptStat:
    script_id: str
    finding: str  # "": the script's own row
    runs: int = 0
    succeeded: int = 0
    verified: int = 0
    cleared: int = 0
    refused: int = 0


def _checks(row: AnyRow) -> Iterable[tuple[str, bool]]:
    """(check, cleared) for each check the run's verification looked at."""
    if row.verification not in _VERIFIED or not row.verification_detail:
        return ()
    detail = json.loads(row.verification_detail)
    return [
        (str(item["check"]), item.get("after") == diagnostics_pb2.SEVERITY_OK)
        for item in detail.get("checks", [])
    ]


def _tally(rows: Iterable[AnyRow], finding: str) -> list[ScriptStat]:
    scripts: dict[str, ScriptStat] = {}
    per_finding: dict[tuple[str, str], ScriptStat] = {}
    for row in rows:
        own = scripts.setdefault(row.script_id, ScriptStat(row.script_id, ""))
        if row.state == CommandState.REFUSED.value:
            own.refused += 1
            continue
        own.runs += 1
        own.succeeded += row.state == CommandState.SUCCEEDED.value
        own.verified += row.verification in _VERIFIED
        own.cleared += row.verification == VerificationState.CLEARED.value
        seen = dict(_checks(row))
        if row.finding and row.finding not in seen:
            seen[row.finding] = False  # asked to fix it, never verified
        for check, cleared in seen.items():
            stat = per_finding.setdefault((row.script_id, check), ScriptStat(row.script_id, check))
            stat.runs += 1
            stat.succeeded += row.state == CommandState.SUCCEEDED.value
            stat.verified += row.verification in _VERIFIED
            stat.cleared += cleared and row.verification in _VERIFIED
    ordered: list[ScriptStat] = []
    for script_id in sorted(scripts):
        rows_of = sorted(
            (stat for key, stat in per_finding.items() if key[0] == script_id),
            key=lambda stat: stat.finding,
        )
        if finding:
            rows_of = [stat for stat in rows_of if stat.finding == finding]
            if not rows_of:
                continue
        ordered.append(scripts[script_id])
        ordered.extend(rows_of)
    return ordered


class ScriptStats:
    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    async def stats(
        self, *, script_id: str = "", finding: str = "", days: int = 0
    ) -> list[ScriptStat]:
        """By script (its own row first, then one per finding), over the runs that ended in
        the last `days` days (0: every run kept)."""
        if not 0 <= days <= MAX_DAYS:
            raise InvalidArgument(f"--days must be from 1 to {MAX_DAYS} (0: every run)")
        since: datetime | None = self._clock() - timedelta(days=days) if days else None
        final = [state.value for state in CommandState if state.final]
        query = (
            select(
                script_runs.c.script_id,
                script_runs.c.finding,
                script_runs.c.verification,
                script_runs.c.verification_detail,
                commands.c.state,
            )
            .join(commands, commands.c.id == script_runs.c.command_id)
            .where(script_runs.c.dry_run.is_(False))
            .where(commands.c.state.in_(final))
            .where(
                commands.c.state.not_in(
                    [
                        CommandState.REJECTED.value,
                        CommandState.EXPIRED.value,
                        CommandState.CANCELLED.value,
                    ]
                )
                | (script_runs.c.exit_code.is_not(None))
            )
        )
        if script_id:
            query = query.where(script_runs.c.script_id == script_id)
        if since is not None:
            query = query.where(commands.c.finished_at >= since)

        def unit(connection: Connection) -> list[ScriptStat]:
            return _tally(connection.execute(query).all(), finding)

        return await self._db.read(unit)
