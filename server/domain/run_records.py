"""A script run as it is stored: the record every reader gets, and the catalog entry a run is
asked with (its newest version for the machine's platform, its manifest parsed once)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from sonde.catalog.manifest import Manifest, ManifestError, Platform, Risk, parse_manifest
from sonde.server.domain.commands import CommandRecord, load_command
from sonde.server.domain.run_verification import Verification, verification_of
from sonde.server.errors import InvalidArgument, NotFound
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.tables import agentless_runs, catalog_scripts, script_runs
from sonde.server.storage.types import AnyRow

MAX_STORED_OUTPUT = 1024 * 1024  # bytes kept of each stream (the agent's own cap)
MAX_LIVE_OUTPUT = 256 * 1024  # bytes of live chunks kept for --follow; the rest is counted
NO_SECRETS = "{}"  # the secret values of a run that ended: erased


@dataclass(frozen=True)
class RunRecord:
    command: CommandRecord
    script_id: str
    script_version: str
    risk: Risk
    dry_run: bool
    parameters: dict[str, str]  # as people see them: secrets as ***
    approval_due_at: datetime | None
    approved_by: str
    approved_at: datetime | None
    rejected_by: str
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int
    stderr_bytes: int
    duration_ms: int | None
    live_output: bytes
    live_dropped: int
    finding: str = ""  # the check it was asked to fix (sonde fix), or ""
    resolve_if_cleared: bool = False
    verification: Verification | None = None  # None: the run has not ended
    # A machine without an agent, which the server runs it on (agentless_runs.py): its
    # target's label (ssh://USER@HOST:PORT) and the credential's name; "" on an agent.
    reached_by: str = ""
    credential: str = ""
    user_session: str = ""  # where a user_session script ran (run_closing.session_text)


_RUN_COLUMNS = [c for c in script_runs.c if c.name not in ("command_id", "parameters")]
_REACH_COLUMNS = [
    agentless_runs.c[name] for name in ("transport", "login", "host", "port", "credential_name")
]
_WITH_REACH = script_runs.outerjoin(
    agentless_runs, agentless_runs.c.command_id == script_runs.c.command_id
)


def run_record(command: CommandRecord, row: AnyRow) -> RunRecord:
    """A script_runs row (any columns but the secret values) with its command."""
    return run_from(command, row._asdict())


def run_from(command: CommandRecord, row: Mapping[str, Any]) -> RunRecord:
    """run_record() from the row's values (a unit that just wrote them need not read back)."""
    return RunRecord(
        command=command,
        script_id=row["script_id"],
        script_version=row["script_version"],
        risk=Risk(row["risk"]),
        dry_run=bool(row["dry_run"]),
        parameters=dict(json.loads(row["parameters_shown"])),
        approval_due_at=row["approval_due_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        rejected_by=row["rejected_by"],
        exit_code=row["exit_code"],
        timed_out=bool(row["timed_out"]),
        cancelled=bool(row["cancelled"]),
        stdout=bytes(row["stdout"]),
        stderr=bytes(row["stderr"]),
        stdout_truncated=bool(row["stdout_truncated"]),
        stderr_truncated=bool(row["stderr_truncated"]),
        stdout_bytes=int(row["stdout_bytes"]),
        stderr_bytes=int(row["stderr_bytes"]),
        duration_ms=row["duration_ms"],
        live_output=bytes(row["live_output"]),
        live_dropped=int(row["live_dropped"]),
        user_session=str(row.get("user_session") or ""),
        finding=row["finding"],
        resolve_if_cleared=bool(row["resolve_if_cleared"]),
        verification=verification_of(row) if row["verification"] else None,
        reached_by=_reached_by(row),
        credential=row.get("credential_name") or "",
    )


def _reached_by(row: Mapping[str, Any]) -> str:
    transport = row.get("transport")
    if not transport:
        return ""
    return RemoteTarget(Transport(transport), row["login"], row["host"], row["port"]).label


def load_run(connection: Connection, command_id: str) -> RunRecord:
    command = load_command(connection, command_id)
    row = connection.execute(
        select(*_RUN_COLUMNS, *_REACH_COLUMNS)
        .select_from(_WITH_REACH)
        .where(script_runs.c.command_id == command_id)
    ).first()
    if row is None:
        raise NotFound(f"command {command_id} is not a script run (sonde commands shows it)")
    return run_record(command, row)


def lock_run_row(connection: Connection, command_id: str) -> AnyRow:
    row = connection.execute(
        select(script_runs).where(script_runs.c.command_id == command_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"command {command_id} is not a script run (sonde commands shows it)")
    return row


# Built once (PERFORMANCE.md: building statements per call costs 2-3x): a run is asked often.
_VERSIONS = (
    select(catalog_scripts.c.version, catalog_scripts.c.platforms, catalog_scripts.c.manifest)
    .where(catalog_scripts.c.script_id == bindparam("script_id"))
    .order_by(catalog_scripts.c.version_order.desc())
)


@functools.lru_cache(maxsize=512)
def published_manifest(data: bytes) -> Manifest:
    """A published entry's manifest, parsed once: its bytes never change (a new version is a
    new entry), and Manifest is immutable."""
    return parse_manifest(data)


def chosen_entry(connection: Connection, script_id: str, version: str, platform: str) -> AnyRow:
    """The published entry (its version, platforms and manifest): `version`, or the newest
    published for the agent's platform."""
    rows = connection.execute(_VERSIONS, {"script_id": script_id}).all()
    if not rows:
        raise NotFound(f"no script {script_id!r} is published (sonde scripts lists them)")
    if version:
        found = [row for row in rows if row.version == version]
        if not found:
            known = ", ".join(row.version for row in rows)
            raise NotFound(f"{script_id} has no version {version!r} (published: {known})")
        chosen = found[0]
        if platform not in chosen.platforms.split(","):
            raise InvalidArgument(
                f"{script_id} {version} is for {chosen.platforms}; this machine is "
                f"{platform or 'of an unknown platform'}"
            )
        return chosen
    for row in rows:
        if platform in row.platforms.split(","):
            return row
    raise InvalidArgument(
        f"no published version of {script_id} is for {platform or 'an unknown platform'} "
        f"(it is for {rows[0].platforms}); this machine cannot run it"
    )


def checked_parameters(
    manifest: Manifest, given: Mapping[str, str], *, dry_run: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """The parameters as people see them (secrets as ***) and as the order carries them (bool
    as 1/0), checked against the manifest; InvalidArgument with the manifest's sentence."""
    try:
        values = manifest.check_values(given, dry_run=dry_run)
    except ManifestError as error:
        raise InvalidArgument(str(error)) from None
    values.pop("dry_run")
    as_text = {
        name: ("1" if value else "0") if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }
    return manifest.masked(values), as_text


def platform_of(text: str) -> Platform | None:
    try:
        return Platform(text)
    except ValueError:
        return None


def runs_with_entry(*columns: ColumnElement[Any]) -> Select[Any]:
    """Runs joined to the catalog entry each was asked with: `columns` of the run, then its
    parameters, dry_run and the entry as signed (script id, version, manifest, script, key
    id, signature). A where clause picks the runs."""
    return select(
        *columns,
        script_runs.c.parameters,
        script_runs.c.dry_run,
        catalog_scripts.c.script_id,
        catalog_scripts.c.version,
        catalog_scripts.c.manifest,
        catalog_scripts.c.script,
        catalog_scripts.c.key_id,
        catalog_scripts.c.signature,
    ).select_from(
        script_runs.join(
            catalog_scripts,
            (catalog_scripts.c.script_id == script_runs.c.script_id)
            & (catalog_scripts.c.version == script_runs.c.script_version),
        )
    )
