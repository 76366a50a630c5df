"""A password given for one agentless login (`sonde diag --ask-password`) instead of a stored
credential: used for that login, never stored, never audited, never in the database file.

Against the WinRS endpoint on loopback (it speaks Basic, so the password really is what the
endpoint checks), the real SQLite database and the real audit chain, with no credential in
the store at all.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sonde.server.domain.agentless import MAX_ONE_TIME_PASSWORD_CHARS, AgentlessDiagnostics
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.remote_credentials import RemoteCredentials
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.trusted_hosts import RemoteRefused, TrustedHosts
from sonde.server.domain.winrm_hosts import WinRMChoices, WinRMHosts
from sonde.server.errors import InvalidArgument
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, remote_credentials, snapshots
from sonde.v1 import diagnostics_pb2
from tests.support.winrs_endpoint import WinRSEndpoint
from tests.support.winrs_programs import serve_transport, windows_collection

pytestmark = pytest.mark.timeout(90)

L2 = Principal(2, "lena", Role.L2, peer="ipv4:127.0.0.1:50000")
USER = "helpdesk"
PASSWORD = "one-time-" + secrets.token_hex(12)
DOCUMENT = Path(__file__).parents[2] / "fixtures" / "windows" / "print_jobs_stuck.json"


@pytest.fixture
def endpoint() -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as running:
        serve_transport(running, windows_collection(DOCUMENT.read_bytes()), {})
        yield running


async def _diagnostics(db: Database, port: int) -> AgentlessDiagnostics:
    audited = AuditedWrites(db)
    store = RemoteCredentials(db, audited, CredentialKey(os.urandom(32)))
    hosts = WinRMHosts(db, audited)
    choices = WinRMChoices(https=False, auth="basic", allow_basic=True, allow_unencrypted=True)
    await hosts.set(L2, f"127.0.0.1:{port}", choices)
    return AgentlessDiagnostics(db, audited, TrustedHosts(db, audited), store, winrm_hosts=hosts)


def _target(port: int) -> RemoteTarget:
    return RemoteTarget(Transport.WINRM, USER, "127.0.0.1", port)


async def _audit_rows(db: Database) -> list[dict[str, str]]:
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.result, audit_log.c.detail).order_by(
                audit_log.c.id
            )
        ).all()
    )
    return [{"action": r.action, "result": r.result, "detail": r.detail} for r in rows]


async def test_a_one_time_password_logs_in_and_is_kept_nowhere(
    db: Database, endpoint: WinRSEndpoint, tmp_path: Path
) -> None:
    diagnostics = await _diagnostics(db, endpoint.port)
    done = await diagnostics.run(L2, _target(endpoint.port), one_time_password=PASSWORD)
    assert done.stored.snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_WINRM
    assert endpoint.finished  # the collection really ran behind the login
    count = await db.read(
        lambda c: c.execute(select(func.count()).select_from(snapshots)).scalar_one()
    )
    assert count == 1
    stored = await db.read(lambda c: c.execute(select(remote_credentials)).all())
    assert stored == []
    rows = await _audit_rows(db)
    (diagnostic,) = [row for row in rows if row["action"] == "diagnostics.run"]
    assert diagnostic["result"] == "ok"
    assert json.loads(diagnostic["detail"])["credential"] == "one-time password"
    for row in rows:
        assert PASSWORD not in json.dumps(row)
    # Not in the database file's bytes either (its write-ahead log included).
    for file in tmp_path.glob("sonde.db*"):
        assert PASSWORD.encode() not in file.read_bytes()


async def test_a_wrong_one_time_password_is_refused_audited_without_it(
    db: Database, endpoint: WinRSEndpoint
) -> None:
    diagnostics = await _diagnostics(db, endpoint.port)
    wrong = "not-" + PASSWORD
    with pytest.raises(RemoteRefused, match=r"refused the credentials of helpdesk") as refused:
        await diagnostics.run(L2, _target(endpoint.port), one_time_password=wrong)
    assert wrong not in str(refused.value)
    rows = await _audit_rows(db)
    (diagnostic,) = [row for row in rows if row["action"] == "diagnostics.run"]
    assert diagnostic["result"].startswith("refused: RemoteRefused")
    assert wrong not in json.dumps(rows)
    assert endpoint.finished == []


@pytest.mark.parametrize(
    ("password", "credential", "refusal"),
    [
        (PASSWORD, "win-helpdesk", "a stored credential or a one-time password, not both"),
        ("x" * (MAX_ONE_TIME_PASSWORD_CHARS + 1), "", "at most 1024 characters"),
        ("before\0after", "", "no NUL"),
    ],
    ids=["with-a-stored-credential", "too-long", "nul"],
)
async def test_a_one_time_password_out_of_bounds_is_refused_before_any_login(
    db: Database, endpoint: WinRSEndpoint, password: str, credential: str, refusal: str
) -> None:
    diagnostics = await _diagnostics(db, endpoint.port)
    with pytest.raises(InvalidArgument, match=refusal) as refused:
        await diagnostics.run(
            L2, _target(endpoint.port), one_time_password=password, credential_name=credential
        )
    assert password not in str(refused.value)
    assert endpoint.finished == []
