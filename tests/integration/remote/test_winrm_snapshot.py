"""collect_windows_over_winrm against the WinRS endpoint: the agent's own collect.ps1 crosses
the wire byte for byte, the recorded documents it printed come back, and the agent's checks
give the findings a Windows agent gives on the same documents (pending reboot, stuck print
jobs); a host that prints nothing, or garbage, is said so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sonde.agent.checks import CheckContext, evaluate
from sonde.agent.collectors.windows.document import windows_facts
from sonde.server.remote.credentials import Credential
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteTarget, Transport
from sonde.server.remote.winrm import WinRMAuth, WinRMHost, WinRMShell
from sonde.server.remote.winrm_snapshot import collect_windows_over_winrm
from sonde.v1 import diagnostics_pb2
from tests.integration.remote.test_winrm_shell import _real_host
from tests.support.winrs_endpoint import WinRSEndpoint, WinRSReply
from tests.support.winrs_programs import LaunchedRun, serve_transport, windows_collection

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "helpdesk", "correct horse battery staple"
DOCUMENTS = Path(__file__).parents[2] / "fixtures" / "windows"
RECEIVED = datetime(2026, 12, 2, 9, 21, tzinfo=UTC)
Severity = diagnostics_pb2.Severity


def _host(port: int) -> WinRMHost:
    target = RemoteTarget(Transport.WINRM, USER, "127.0.0.1", port)
    return WinRMHost(
        target, https=False, auth=WinRMAuth.BASIC, allow_basic=True, allow_unencrypted=True
    )


@pytest.fixture
def endpoint() -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as running:
        yield running


async def _collect(endpoint: WinRSEndpoint) -> diagnostics_pb2.Snapshot:
    shell = await WinRMShell.open(_host(endpoint.port), Credential(USER, password=PASSWORD))
    try:
        return await collect_windows_over_winrm(shell, timeout_s=20)
    finally:
        await shell.close()


def _findings(snapshot: diagnostics_pb2.Snapshot) -> dict[str, int]:
    found = evaluate(snapshot, CheckContext(reference_time=RECEIVED))
    return {finding.check: finding.severity for finding in found}


def _as_a_windows_agent(document: bytes) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot(collected_by=diagnostics_pb2.COLLECTED_BY_AGENT)
    windows_facts(document).into(snapshot)
    return snapshot


@pytest.mark.parametrize(
    ("name", "check"),
    [("pending_reboot", "updates.reboot_pending"), ("print_jobs_stuck", "print.stuck_jobs")],
)
async def test_the_recorded_collection_gives_the_agents_findings(
    endpoint: WinRSEndpoint, name: str, check: str
) -> None:
    document = (DOCUMENTS / f"{name}.json").read_bytes()
    serve_transport(endpoint, windows_collection(document), {})
    snapshot = await _collect(endpoint)
    assert snapshot.collected_by == diagnostics_pb2.COLLECTED_BY_WINRM
    assert snapshot.system.os_family == "windows"
    assert snapshot.system.hostname  # as the machine reports it, as the agent fills it
    assert snapshot.system.os_name.startswith("Windows")
    findings = _findings(snapshot)
    assert findings[check] in (Severity.SEVERITY_WARNING, Severity.SEVERITY_CRITICAL)
    assert findings == _findings(_as_a_windows_agent(document))
    states = {report.name: report.state for report in snapshot.collectors}
    assert states["printing"] == diagnostics_pb2.COLLECTOR_STATE_OK
    assert states["cpu"] == diagnostics_pb2.COLLECTOR_STATE_UNAVAILABLE
    assert states["processes"] == diagnostics_pb2.COLLECTOR_STATE_UNAVAILABLE
    assert len(states) == len(snapshot.collectors)  # one report per collector


async def test_a_healthy_machine_has_neither_finding(endpoint: WinRSEndpoint) -> None:
    document = (DOCUMENTS / "healthy_windows11.json").read_bytes()
    serve_transport(endpoint, windows_collection(document), {})
    findings = _findings(await _collect(endpoint))
    assert findings["updates.reboot_pending"] == Severity.SEVERITY_OK
    assert findings["print.stuck_jobs"] == Severity.SEVERITY_OK


async def test_a_host_that_prints_nothing_is_said_so(endpoint: WinRSEndpoint) -> None:
    def silent(run: LaunchedRun) -> WinRSReply:
        return WinRSReply(stderr=b"Access is denied.\r\n", exit_code=5)

    serve_transport(endpoint, silent, {})
    with pytest.raises(
        RemoteError, match=r"printed no document \(exit code 5\): Access is denied"
    ) as e:
        await _collect(endpoint)
    assert e.value.kind is RemoteErrorKind.PROTOCOL


async def test_a_hostile_document_makes_facts_unavailable_not_a_crash(
    endpoint: WinRSEndpoint,
) -> None:
    serve_transport(endpoint, windows_collection(b'{"schema": "evil/9", "sections": {}}'), {})
    snapshot = await _collect(endpoint)
    reasons = {r.name: r.reason for r in snapshot.collectors if r.name == "system"}
    assert "not 'sonde.windows.collect/1'" in reasons["system"]
    assert not snapshot.system.hostname


async def test_a_real_windows_host_gives_a_snapshot_with_its_facts() -> None:
    """What the endpoint cannot show: collect.ps1 itself, run by a real PowerShell."""
    configured = _real_host()
    if configured is None:
        pytest.skip(
            "no real Windows host: set SONDE_WINRM_ENDPOINT (https://HOST:5986), "
            "SONDE_WINRM_USER and SONDE_WINRM_PASSWORD (and SONDE_WINRM_CA_FILE, _AUTH)"
        )
    host, password = configured
    shell = await WinRMShell.open(host, Credential(host.target.user, password=password))
    try:
        snapshot = await collect_windows_over_winrm(shell)
    finally:
        await shell.close()
    assert snapshot.system.os_family == "windows"
    assert snapshot.system.hostname
    states = {report.name: report.state for report in snapshot.collectors}
    assert states["system"] == diagnostics_pb2.COLLECTOR_STATE_OK
    assert states["services"] == diagnostics_pb2.COLLECTOR_STATE_OK
    assert _findings(snapshot)  # the checks conclude on a real machine's facts


@pytest.mark.parametrize(
    ("collected_at", "said"),
    [
        ("0001-01-01T00:00:00Z", ""),  # .NET's DateTime.MinValue: the first moment there is
        ("0001-01-01T00:00:00+01:00", "outside the times UTC holds"),
        ("9999-12-31T23:59:59-01:00", "outside the times UTC holds"),
    ],
)
async def test_a_clock_at_the_edge_of_time_gives_a_snapshot_not_a_crash(
    endpoint: WinRSEndpoint, collected_at: str, said: str
) -> None:
    """The host's clock is the document's word: one that cannot go back by the collection's
    duration, or that no UTC time holds, is reported, never an OverflowError."""
    document = json.loads((DOCUMENTS / "pending_reboot.json").read_bytes())
    document["collected_at"] = collected_at
    serve_transport(endpoint, windows_collection(json.dumps(document).encode()), {})
    snapshot = await _collect(endpoint)
    reasons = {r.name: r.reason for r in snapshot.collectors}
    if said:
        assert said in reasons["system"]
        assert not snapshot.system.hostname
    else:
        assert snapshot.collected_at.ToDatetime().year == 1
        assert snapshot.system.hostname
