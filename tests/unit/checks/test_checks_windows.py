"""windows.update, windows.defender, windows.bitlocker, events.errors, print.stuck_jobs,
time.sync, disk.health, network.proxy and wifi.signal at their limits, on hand-built facts;
and every check is mapped to the collectors a verification runs again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sonde.agent.checks import CHECKS, CheckContext, Thresholds
from sonde.agent.checks.disk_health import disk_health
from sonde.agent.checks.events import events_errors
from sonde.agent.checks.printing import print_stuck_jobs
from sonde.agent.checks.proxy import network_proxy
from sonde.agent.checks.security import windows_bitlocker, windows_defender
from sonde.agent.checks.sources import CHECK_SOURCES
from sonde.agent.checks.time_sync import time_sync
from sonde.agent.checks.updates import windows_update
from sonde.agent.checks.wifi import wifi_signal
from sonde.agent.collectors.runner import collector_names
from sonde.agent.collectors.windows.document import WINDOWS_ONLY_FIELDS
from sonde.v1 import diagnostics_pb2
from tests.unit.checks.snapshots import CRITICAL, OK, WARNING

CTX = CheckContext()
LIMITS = Thresholds()
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def at_now() -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.FromDatetime(NOW)
    snapshot.system.os_family = "windows"
    return snapshot


def test_every_check_names_the_collectors_that_feed_it() -> None:
    assert set(CHECK_SOURCES) == {check_id for check_id, _ in CHECKS}
    known = set(collector_names()) | set(WINDOWS_ONLY_FIELDS)
    for check_id, collectors in CHECK_SOURCES.items():
        assert set(collectors) <= known, check_id
        for name in collectors:
            assert name in diagnostics_pb2.Snapshot.DESCRIPTOR.fields_by_name, name


def test_no_new_check_concludes_without_its_facts() -> None:
    empty = diagnostics_pb2.Snapshot()
    first = (windows_update, windows_defender, windows_bitlocker, events_errors)
    for check in (*first, print_stuck_jobs, time_sync, disk_health, network_proxy, wifi_signal):
        assert check(empty, CTX) is None


@pytest.mark.parametrize(
    ("days", "severity"),
    [(34, OK), (LIMITS.update_install_warning_days, WARNING), (60, CRITICAL)],
)
def test_windows_update_by_days_since_the_last_install(days: int, severity: int) -> None:
    snapshot = at_now()
    snapshot.windows_update.last_install_success_at.FromDatetime(NOW - timedelta(days=days))
    found = windows_update(snapshot, CTX)
    assert found is not None
    assert found.severity == severity
    assert found.fix_script_id == ("" if severity == OK else "repair-windows-update")


def test_windows_update_disabled_is_critical() -> None:
    snapshot = at_now()
    snapshot.windows_update.service_start_type = "disabled"
    found = windows_update(snapshot, CTX)
    assert found is not None
    assert (found.severity, found.summary) == (
        CRITICAL,
        "The Windows Update service is disabled: this computer gets no updates.",
    )


def defender(**fields: object) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    base: dict[str, object] = {
        "product": "Microsoft Defender", "service_enabled": True, "antivirus_enabled": True,
        "real_time_protection": True, "running_mode": "Normal",
    }  # fmt: skip
    snapshot.antivirus.CopyFrom(diagnostics_pb2.AntivirusFacts(**{**base, **fields}))  # type: ignore[arg-type]
    return snapshot


@pytest.mark.parametrize(
    ("age", "severity"), [(2, OK), (3, WARNING), (13, WARNING), (14, CRITICAL)]
)
def test_defender_by_signature_age(age: int, severity: int) -> None:
    found = windows_defender(defender(signature_age_days=age), CTX)
    assert found is not None
    assert found.severity == severity


def test_defender_off_is_critical_but_passive_under_another_antivirus_is_fine() -> None:
    off = windows_defender(defender(real_time_protection=False), CTX)
    assert off is not None
    assert off.severity == CRITICAL
    assert "unprotected" in off.summary
    passive = windows_defender(
        defender(running_mode="Passive Mode", real_time_protection=False, signature_age_days=40),
        CTX,
    )
    assert passive is not None
    assert passive.severity == OK
    assert "another antivirus" in passive.summary


@pytest.mark.parametrize(
    ("status", "protection", "severity", "said"),
    [
        ("FullyEncrypted", "On", OK, "C: is encrypted with BitLocker."),
        ("EncryptionInProgress", "Off", OK, "BitLocker is encrypting C: (40 % done)."),
        ("FullyEncrypted", "Off", WARNING, "BitLocker protection of C: is suspended"),
        ("FullyDecrypted", "Off", WARNING, "C: is not encrypted"),
    ],
)
def test_bitlocker_of_the_system_drive(
    status: str, protection: str, severity: int, said: str
) -> None:
    snapshot = at_now()
    snapshot.encryption.volumes.add(
        mount_point="C:", volume_type="OperatingSystem", volume_status=status,
        protection_status=protection, encryption_percent=40.0,
    )  # fmt: skip
    found = windows_bitlocker(snapshot, CTX)
    assert found is not None
    assert found.severity == severity
    assert found.summary.startswith(said)


def event_log(*groups: tuple[str, int, int], total: int | None = None) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    snapshot.event_log.window_hours = 24
    for provider, event_id, count in groups:
        snapshot.event_log.events.add(
            log="System", provider=provider, event_id=event_id, count=count, level="error"
        )
    snapshot.event_log.error_count = total if total is not None else sum(g[2] for g in groups)
    return snapshot


@pytest.mark.parametrize(
    ("snapshot", "severity"),
    [
        (event_log(total=0), OK),
        (event_log(("Microsoft-Windows-DistributedCOM", 10016, 49)), OK),
        (event_log(("Microsoft-Windows-DistributedCOM", 10016, 50)), WARNING),
        (event_log(("Microsoft-Windows-DistributedCOM", 10016, 500)), CRITICAL),
        (event_log(("Service Control Manager", 7031, 3)), OK),
        (event_log(("Microsoft-Windows-Kernel-Power", 41, 1)), WARNING),
        (event_log(("Microsoft-Windows-Kernel-Power", 41, 1), ("EventLog", 6008, 1)), CRITICAL),
        (event_log(("disk", 7, 1)), WARNING),
        (event_log(("Microsoft-Windows-WHEA-Logger", 17, 2)), WARNING),
    ],
)
def test_event_log_errors(snapshot: diagnostics_pb2.Snapshot, severity: int) -> None:
    found = events_errors(snapshot, CTX)
    assert found is not None
    assert found.severity == severity


def test_event_log_summary_names_the_serious_kinds() -> None:
    found = events_errors(event_log(("Microsoft-Windows-Kernel-Power", 41, 2), total=12), CTX)
    assert found is not None
    assert found.summary == (
        "Windows logged 12 errors in the last 24 h, among them 2 unexpected restarts."
    )


def printing(*jobs: tuple[str, int]) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    snapshot.printing.spooler_state = "running"
    snapshot.printing.printers.add(name="HP")
    for number, (status, minutes_ago) in enumerate(jobs):
        job = snapshot.printing.jobs.add(printer="HP", job_id=number, status=status)
        job.submitted_at.FromDatetime(NOW - timedelta(minutes=minutes_ago))
    return snapshot


def test_a_print_job_is_stuck_in_error_or_after_30_minutes() -> None:
    for jobs, severity in (
        ((), OK),
        ((("Printing", 29),), OK),
        ((("Normal", 30),), WARNING),
        ((("Error, Printing", 1),), WARNING),
        ((("Error", 1),) * LIMITS.print_stuck_jobs_critical_count, CRITICAL),
    ):
        found = print_stuck_jobs(printing(*jobs), CTX)
        assert found is not None
        assert found.severity == severity, jobs


def test_a_stopped_spooler_with_printers_is_critical() -> None:
    snapshot = printing()
    snapshot.printing.spooler_state = "stopped"
    found = print_stuck_jobs(snapshot, CTX)
    assert found is not None
    assert found.severity == CRITICAL
    assert found.fix_script_id == "restart-print-spooler"


def synced(days_ago: float, **fields: object) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    base: dict[str, object] = {"source": "dc01.corp.example", "synchronized": True, "stratum": 3}
    snapshot.time_sync.CopyFrom(diagnostics_pb2.TimeSyncFacts(**{**base, **fields}))  # type: ignore[arg-type]
    snapshot.time_sync.last_sync_at.FromDatetime(NOW - timedelta(days=days_ago))
    return snapshot


@pytest.mark.parametrize(("days", "severity"), [(7.9, OK), (8, WARNING), (30, CRITICAL)])
def test_time_sync_by_age_of_the_last_sync(days: float, severity: int) -> None:
    found = time_sync(synced(days), CTX)
    assert found is not None
    assert found.severity == severity


def test_time_sync_stopped_or_free_running() -> None:
    for snapshot in (synced(0, service_state="stopped"), synced(0, synchronized=False)):
        found = time_sync(snapshot, CTX)
        assert found is not None
        assert (found.severity, found.fix_script_id) == (WARNING, "resync-clock-windows")


def disk(**fields: object) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    base: dict[str, object] = {
        "name": "NVMe SSD",
        "health_status": "Healthy",
        "counters_known": True,
    }
    snapshot.disk_health.disks.append(diagnostics_pb2.PhysicalDiskHealth(**{**base, **fields}))  # type: ignore[arg-type]
    return snapshot


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        ({"wear_percent": 79}, OK),
        ({"wear_percent": 80}, WARNING),
        ({"wear_percent": 95}, CRITICAL),
        ({"read_errors_uncorrected": 1}, WARNING),
        ({"health_status": "Warning"}, WARNING),
        ({"health_status": "Unhealthy"}, CRITICAL),
        ({"operational_status": ["OK", "Predictive Failure"]}, CRITICAL),
    ],
)
def test_disk_health(fields: dict[str, object], severity: int) -> None:
    found = disk_health(disk(**fields), CTX)
    assert found is not None
    assert found.severity == severity


def proxied(user: str, machine: str, *, known: bool = True) -> diagnostics_pb2.Snapshot:
    snapshot = at_now()
    snapshot.network.machine_proxy_known = known
    if user:
        snapshot.network.proxy.CopyFrom(diagnostics_pb2.ProxySettings(http_proxy=user))
    if machine:
        snapshot.network.machine_proxy.CopyFrom(diagnostics_pb2.ProxySettings(http_proxy=machine))
    return snapshot


def test_network_proxy_warns_only_when_the_user_has_one_and_services_do_not() -> None:
    assert network_proxy(proxied("p:3128", "", known=False), CTX) is None  # Linux, macOS
    for user, machine, severity in (
        ("", "", OK),
        ("p:3128", "", WARNING),
        ("p:3128", "p:3128", OK),
        ("", "p:3128", OK),
    ):
        found = network_proxy(proxied(user, machine), CTX)
        assert found is not None
        assert found.severity == severity, (user, machine)


@pytest.mark.parametrize(
    ("signal", "severity"), [(40, OK), (39, WARNING), (20, WARNING), (19, CRITICAL)]
)
def test_wifi_signal(signal: int, severity: int) -> None:
    snapshot = at_now()
    snapshot.wifi.CopyFrom(
        diagnostics_pb2.WifiFacts(connected=True, ssid="X", signal_percent=signal)
    )
    found = wifi_signal(snapshot, CTX)
    assert found is not None
    assert found.severity == severity


def test_wifi_not_connected_says_nothing() -> None:
    snapshot = at_now()
    snapshot.wifi.connected = False
    assert wifi_signal(snapshot, CTX) is None
