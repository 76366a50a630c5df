"""A server's side for agentless runs, built whole over one database: the real catalog (the
repository's scripts/linux and test scripts, signed by a key of the test's own), trusted host
keys, the sshd's credential, the machine's first diagnostic, a ticket, and AgentlessRuns."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import CatalogSource, encode_bundle, sign_entries
from sonde.catalog.folder import load_catalog_folder
from sonde.server.domain import run_verification
from sonde.server.domain.agentless import AgentlessDiagnostics, agentless_id
from sonde.server.domain.agentless_runs import AgentlessRuns
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.replicas import Replica
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.run_reach import RunReach
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.trusted_hosts import TrustedHosts
from sonde.server.domain.users import Users
from sonde.server.domain.wakeups import Wakeups
from sonde.server.domain.winrm_hosts import WinRMHosts
from sonde.server.remote.credentials import CredentialSource, FixedCredential
from sonde.server.remote.host_keys import offered_host_keys
from sonde.server.storage.db import Database
from tests.support.catalog_bundles import manifest_text
from tests.support.sshd import Sshd
from tests.unit.domain.builders import SETUP_ADMIN

REPOSITORY_SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"

# Test scripts, signed like the catalog's: each prints or records what it was given.
ECHO_PARAMETERS = """
[[parameters]]
name = "note"
type = "string"
pattern = '[^\\u0000]{0,400}'
description = "any text"

[[parameters]]
name = "log"
type = "string"
pattern = "/[A-Za-z0-9_./-]{1,200}"
description = "a file the run appends a line to"

[[parameters]]
name = "sleep_s"
type = "int"
minimum = 0
maximum = 60
default = 0
description = "seconds to sleep first"
"""
ECHO_SCRIPT = b"""#!/bin/bash
set -euo pipefail
log="${SONDE_PARAM_LOG:-}"
if [ -n "$log" ]; then printf 'ran %s\\n' "$SONDE_RUN_MARK" >> "$log"; fi
sleep "${SONDE_PARAM_SLEEP_S:-0}"
printf '%s' "${SONDE_PARAM_NOTE:-}"
printf 'pwd=%s\\n' "$PWD" >&2
compgen -e >&2
exit 3
"""


CHATTY_SCRIPT = b"""#!/bin/bash
set -euo pipefail
echo "step one"
sleep "${SONDE_PARAM_SLEEP_S:-0}"
echo "step two"
"""


def echo_source(script_id: str, risk: str, script: bytes = ECHO_SCRIPT) -> CatalogSource:
    manifest = manifest_text(
        script_id, risk=risk, parameters=ECHO_PARAMETERS, fixes="[]", verify="[]"
    )
    return CatalogSource(manifest.encode(), script)


@dataclass
class Bench:
    db: Database
    audited: AuditedWrites
    runs: ScriptRuns
    diagnostics: Diagnostics
    hosts: TrustedHosts
    agentless: AgentlessRuns
    replica: Replica
    catalog_key: ed25519.Ed25519PrivateKey
    machine_id: str
    ticket_id: int
    reach: RunReach
    l1: Principal
    l2: Principal
    other_l2: Principal
    sshd: Sshd


def server_side(
    db: Database,
    sshd: Sshd | None,
    catalog_key: ed25519.Ed25519PublicKey,
    credentials: CredentialSource | None = None,
    *,
    replica_id: str = "",
) -> tuple[AgentlessRuns, ScriptRuns, Diagnostics, TrustedHosts, AuditedWrites]:
    """One server's objects over `db` (two calls: two servers sharing a database)."""
    audited = AuditedWrites(db)
    wakeups = Wakeups()
    runs = ScriptRuns(db, audited, wakeups, dispatch_key=ed25519.Ed25519PrivateKey.generate())
    diagnostics = Diagnostics(db, audited, wakeups)
    diagnostics.verify_check = run_verification.record_check(audited)
    hosts = TrustedHosts(
        db, audited, offered=lambda host, port: offered_host_keys(host, port, timeout_s=5)
    )
    agentless = AgentlessRuns(
        db,
        audited,
        wakeups=wakeups,
        script_runs=runs,
        diagnostics=diagnostics,
        hosts=hosts,
        winrm_hosts=WinRMHosts(db, audited),
        credentials=credentials or FixedCredential(_sshd(sshd).credential()),
        catalog_key=catalog_key,
        replica_id=replica_id or uuid.uuid4().hex,
        python=sys.executable,  # a python3 with psutil: the agent's collectors run there
    )
    return agentless, runs, diagnostics, hosts, audited


def _sshd(sshd: Sshd | None) -> Sshd:
    if sshd is None:
        raise ValueError("give the credentials, or the sshd whose key to log in with")
    return sshd


async def bench(db: Database, sshd: Sshd) -> Bench:
    catalog_key = ed25519.Ed25519PrivateKey.generate()
    replica = Replica(db)
    await replica.register()
    agentless, runs, diagnostics, hosts, audited = server_side(
        db, sshd, catalog_key.public_key(), replica_id=replica.id
    )
    users = Users(db, writes=audited)
    people = []
    for name, role in (("ann", Role.L1), ("lena", Role.L2), ("omar", Role.L2)):
        record, _ = await users.add(SETUP_ADMIN, name, role)
        people.append(Principal(record.id, record.name, record.role))
    l1, l2, other_l2 = people
    repository = [
        CatalogSource(entry.manifest_bytes, entry.script_bytes)
        for entry in load_catalog_folder(REPOSITORY_SCRIPTS)
        if entry.manifest.id in ("clear-temp-files-linux", "reboot-with-notice-linux")
    ]
    sources = [
        *repository,
        echo_source("echo-low", "low"),
        echo_source("echo-high", "high"),
        echo_source("chatty-low", "low", CHATTY_SCRIPT),
    ]
    catalog = Catalog(db, catalog_key.public_key(), writes=audited)
    await catalog.publish(SETUP_ADMIN, encode_bundle(sign_entries(catalog_key, sources)))
    await hosts.trust(l2, f"127.0.0.1:{sshd.port}", sshd.host_key.fingerprint)
    target = sshd.target()
    first = AgentlessDiagnostics(db, audited, hosts, FixedCredential(sshd.credential()))
    await first.run(l2, target, shell_only=True)  # the machine's row and its snapshot before
    machine_id = agentless_id(target)
    ticket = await Tickets(db, writes=audited).open(
        l1, title="Disk full", agent=machine_id, assignee="ann"
    )
    return Bench(
        db=db,
        audited=audited,
        runs=runs,
        diagnostics=diagnostics,
        hosts=hosts,
        agentless=agentless,
        replica=replica,
        catalog_key=catalog_key,
        machine_id=machine_id,
        ticket_id=ticket.id,
        reach=RunReach(target),
        l1=l1,
        l2=l2,
        other_l2=other_l2,
        sshd=sshd,
    )
