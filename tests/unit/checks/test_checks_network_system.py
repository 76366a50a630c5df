"""network.*, system.*, battery.wear, services.failed, updates.reboot_pending at their limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sonde.agent.checks import CHECKS, CheckContext, Thresholds, evaluate, worst_severity
from sonde.agent.checks.battery import battery_wear
from sonde.agent.checks.network import network_dns, network_gateway, network_server, network_target
from sonde.agent.checks.services import services_failed
from sonde.agent.checks.system import system_clock_skew, system_uptime
from sonde.agent.checks.updates import reboot_pending
from sonde.v1 import diagnostics_pb2
from tests.unit.checks.snapshots import CRITICAL, OK, WARNING

CTX = CheckContext()
DAY = 86400


def _network(**fields: object) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.network.CopyFrom(diagnostics_pb2.NetworkFacts(**fields))  # type: ignore[arg-type]
    return snapshot


def test_gateway() -> None:
    found = network_gateway(_network(default_gateway="10.0.0.1", default_interface="eth0"), CTX)
    assert found is not None
    assert found.severity == OK
    missing = network_gateway(_network(dns_servers=["10.0.0.53"]), CTX)
    assert missing is not None
    assert missing.severity == CRITICAL
    assert network_gateway(_network(gateway_unavailable="no route table"), CTX) is None
    assert network_gateway(diagnostics_pb2.Snapshot(), CTX) is None


def _resolution(ok: bool, ms: float) -> diagnostics_pb2.NameResolution:
    return diagnostics_pb2.NameResolution(
        name="sonde.corp", ok=ok, duration_ms=ms, error="" if ok else "Name or service not known"
    )


@pytest.mark.parametrize(
    ("resolutions", "servers", "expected"),
    [
        ([_resolution(True, 499.9)], ["10.0.0.53"], OK),
        ([_resolution(True, 500.0)], ["10.0.0.53"], WARNING),
        ([_resolution(True, 3.0), _resolution(False, 20.0)], ["10.0.0.53"], CRITICAL),
        ([], [], CRITICAL),  # no DNS server at all
        ([], ["10.0.0.53"], OK),
    ],
)
def test_dns(
    resolutions: list[diagnostics_pb2.NameResolution], servers: list[str], expected: int
) -> None:
    snapshot = _network(resolutions=resolutions, dns_servers=servers)
    snapshot.system.os_family = "windows"
    found = network_dns(snapshot, CTX)
    assert found is not None
    assert found.severity == expected
    assert found.fix_script_id == ("" if expected == OK else "flush-dns-cache-windows")


def test_dns_unavailable_without_resolutions_gives_no_finding() -> None:
    assert network_dns(_network(dns_unavailable="no /etc/resolv.conf"), CTX) is None


def _probe(purpose: str, ok: bool, ms: float) -> diagnostics_pb2.Snapshot:
    probe = diagnostics_pb2.ConnectProbe(
        purpose=purpose, host="sonde.corp", port=8443, ok=ok, duration_ms=ms,
        error="" if ok else "Connection refused",
    )  # fmt: skip
    return _network(probes=[probe])


@pytest.mark.parametrize(
    ("ok", "ms", "expected"), [(True, 299.9, OK), (True, 300.0, WARNING), (False, 1.0, CRITICAL)]
)
def test_server_and_target_probes(ok: bool, ms: float, expected: int) -> None:
    server = network_server(_probe("server", ok, ms), CTX)
    target = network_target(_probe("target", ok, ms), CTX)
    assert server is not None
    assert target is not None
    assert (server.severity, target.severity) == (expected, expected)
    if not ok:
        assert server.summary == (
            "Cannot reach the Sonde server at sonde.corp:8443: Connection refused."
        )
    assert network_server(_probe("target", ok, ms), CTX) is None


@pytest.mark.parametrize(
    ("uptime", "expected"),
    [(14 * DAY - 1, OK), (14 * DAY, WARNING), (30 * DAY - 1, WARNING), (30 * DAY, CRITICAL)],
)
def test_uptime(uptime: int, expected: int) -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.system.uptime_seconds = uptime
    snapshot.system.boot_time.FromSeconds(1_700_000_000)
    found = system_uptime(snapshot, CTX)
    assert found is not None
    assert found.severity == expected


@pytest.mark.parametrize(
    ("skew_s", "expected"),
    [
        (0.0, OK),
        (59.0, OK),
        (-60.0, WARNING),
        (299.0, WARNING),
        (300.0, CRITICAL),
        (-900, CRITICAL),
    ],
)
def test_clock_skew_against_the_server(skew_s: float, expected: int) -> None:
    server_time = datetime(2024, 6, 3, 9, 0, 0, tzinfo=UTC)
    snapshot = diagnostics_pb2.Snapshot(duration_ms=2000)
    # The agent's clock read collected_at, then took 2 s to collect and send.
    snapshot.collected_at.FromDatetime(server_time + timedelta(seconds=skew_s - 2))
    found = system_clock_skew(snapshot, CheckContext(reference_time=server_time))
    assert found is not None
    assert found.severity == expected
    if expected == CRITICAL:
        assert "Kerberos" in found.summary


def test_clock_skew_needs_the_server_clock() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.GetCurrentTime()
    assert system_clock_skew(snapshot, CTX) is None


@pytest.mark.parametrize(
    ("design", "full", "expected"),
    [
        (50000, 30050, OK),
        (50000, 30000, WARNING),
        (50000, 20050, WARNING),
        (50000, 20000, CRITICAL),
    ],
)
def test_battery_wear(design: int, full: int, expected: int) -> None:
    snapshot = diagnostics_pb2.Snapshot()
    wear = round(100 * (1 - full / design), 1)
    snapshot.battery.CopyFrom(
        diagnostics_pb2.BatteryFacts(
            present=True, design_capacity_mwh=design, full_capacity_mwh=full, wear_percent=wear
        )
    )
    found = battery_wear(snapshot, CTX)
    assert found is not None
    assert found.severity == expected


def test_no_battery_or_no_capacities_no_wear_finding() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.battery.present = False
    assert battery_wear(snapshot, CTX) is None
    snapshot.battery.CopyFrom(diagnostics_pb2.BatteryFacts(present=True, wear_unavailable="x"))
    assert battery_wear(snapshot, CTX) is None


@pytest.mark.parametrize(
    ("count", "expected"), [(0, OK), (1, WARNING), (4, WARNING), (5, CRITICAL)]
)
def test_failed_services(count: int, expected: int) -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.services.manager = "windows"
    for i in range(count):
        snapshot.services.failed.add(name=f"svc{i}", display_name=f"Service {i}", state="stopped")
    found = services_failed(snapshot, CTX)
    assert found is not None
    assert found.severity == expected
    if count == 1:
        assert found.summary == "1 service has failed or stopped unexpectedly: Service 0."
    if count == 5:
        assert found.summary.endswith("Service 0, Service 1, Service 2 and 2 more.")
    assert services_failed(diagnostics_pb2.Snapshot(), CTX) is None


def test_reboot_pending_names_the_flag() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.updates.source = "registry"
    found = reboot_pending(snapshot, CTX)
    assert found is not None
    assert found.severity == OK
    snapshot.updates.reboot_required = True
    snapshot.updates.reboot_reasons.extend(
        ["Component Based Servicing\\RebootPending", "Updates\\UpdateExeVolatile"]
    )
    found = reboot_pending(snapshot, CTX)
    assert found is not None
    assert found.severity == WARNING
    assert "Component Based Servicing\\RebootPending and 1 more" in found.summary
    assert reboot_pending(diagnostics_pb2.Snapshot(), CTX) is None


def test_thresholds_can_be_tightened() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.system.uptime_seconds = 2 * DAY
    snapshot.system.boot_time.FromSeconds(1_700_000_000)
    strict = CheckContext(thresholds=Thresholds(uptime_warning_s=DAY))
    found = system_uptime(snapshot, strict)
    assert found is not None
    assert found.severity == WARNING


def test_evaluate_ids_are_stable_and_worst_severity() -> None:
    assert [check_id for check_id, _ in CHECKS] == [
        "disk.space", "disk.inodes", "memory.pressure", "cpu.saturation", "cpu.temperature",
        "battery.wear", "services.failed", "network.gateway", "network.dns", "network.server",
        "network.target", "system.uptime", "system.clock_skew", "updates.reboot_pending",
        "windows.update", "windows.defender", "windows.bitlocker", "events.errors",
        "print.stuck_jobs", "time.sync", "disk.health", "network.proxy", "wifi.signal",
        "macos.updates", "macos.filevault",
    ]  # fmt: skip
    snapshot = _probe("server", False, 1.0)
    snapshot.network.default_gateway = "10.0.0.1"
    findings = evaluate(snapshot)
    assert [f.check for f in findings] == ["network.gateway", "network.dns", "network.server"]
    assert worst_severity(findings) == CRITICAL
    assert worst_severity([]) == OK
