"""Every fix a finding can name is a script of the catalog for the snapshot's platform, and
that script's manifest says it fixes that finding. A snapshot of a workstation where every
check is unhappy is evaluated as each platform; what comes back is checked against scripts/."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sonde.agent.checks import CheckContext, evaluate
from sonde.agent.checks.fixes import FIXES
from sonde.catalog.manifest import Platform
from sonde.v1 import diagnostics_pb2
from tests.unit.catalog.test_catalog_scripts import ENTRIES

OK = diagnostics_pb2.Severity.SEVERITY_OK
CHECKS_FOLDER = Path(__file__).resolve().parents[3] / "agent" / "checks"
SERVER_TIME = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def unhappy_workstation(os_family: str) -> diagnostics_pb2.Snapshot:
    """Full disks, no memory left, an overloaded processor, failed services, failing DNS, a
    clock 10 minutes behind and never synchronised, a restart pending, Windows Update
    disabled, Defender's signatures a month old and a print job in error."""
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.FromDatetime(SERVER_TIME - timedelta(minutes=10))
    snapshot.system.os_family = os_family
    snapshot.disks.partitions.add(
        device="/dev/x", mountpoint="/", filesystem="ext4", total_bytes=100 * 2**30,
        used_bytes=99 * 2**30, free_bytes=2**30, used_percent=99.0, is_system=True,
    )  # fmt: skip
    snapshot.memory.CopyFrom(
        diagnostics_pb2.MemoryFacts(
            total_bytes=8 * 2**30, used_bytes=8 * 2**30 - 2**20, used_percent=99.0
        )
    )
    snapshot.cpu.CopyFrom(
        diagnostics_pb2.CpuFacts(
            logical_cores=4, usage_percent=99.0, load_1m=9.0, load_5m=9.0, load_15m=9.0
        )
    )
    for name in ("cups", "spooler", "w32time", "bits", "wuauserv"):
        snapshot.services.failed.add(name=name, state="failed")
    snapshot.network.dns_servers.append("10.0.0.53")
    snapshot.network.resolutions.add(name="sonde.corp", ok=False, error="timed out")
    snapshot.updates.reboot_required = True
    snapshot.updates.reboot_reasons.append("RebootRequired")
    snapshot.windows_update.service_start_type = "disabled"
    snapshot.antivirus.CopyFrom(
        diagnostics_pb2.AntivirusFacts(
            service_enabled=True, antivirus_enabled=True, real_time_protection=True,
            running_mode="Normal", signature_age_days=30,
        )
    )  # fmt: skip
    snapshot.printing.jobs.add(printer="HP", job_id=1, status="Error")
    snapshot.time_sync.source = "Local CMOS Clock"
    return snapshot


def named_fixes(os_family: str) -> dict[str, str]:
    findings = evaluate(unhappy_workstation(os_family), CheckContext(reference_time=SERVER_TIME))
    return {f.check: f.fix_script_id for f in findings if f.severity != OK and f.fix_script_id}


@pytest.mark.parametrize("platform", [Platform.WINDOWS, Platform.LINUX])
def test_every_fix_a_finding_names_is_a_catalog_script_of_its_platform(
    platform: Platform,
) -> None:
    catalog = {e.id: e for e in ENTRIES if e.platform is platform}
    fixes = named_fixes(platform.value)
    expected = {check for check, family in FIXES if family == platform.value}
    assert set(fixes) == expected  # the snapshot made every check that has a fix name it
    for check, script_id in fixes.items():
        assert script_id in catalog, f"{check} names {script_id}, not in scripts/{platform.value}"
        assert check in catalog[script_id].manifest.fixes, f"{script_id} does not fix {check}"


def test_a_snapshot_that_does_not_say_its_platform_names_no_fix() -> None:
    assert named_fixes("") == {}
    assert named_fixes("darwin") == {}  # no macOS scripts yet


def test_every_fix_in_the_table_exists() -> None:
    by_id = {e.id: e for e in ENTRIES}
    for (check, family), script_id in FIXES.items():
        assert script_id in by_id, script_id
        assert by_id[script_id].platform.value == family
        assert check in by_id[script_id].manifest.fixes


def test_no_check_names_a_fix_but_through_the_table() -> None:
    literal = re.compile(r"""["'][a-z]+(?:-[a-z0-9]+)+["']""")
    for source in CHECKS_FOLDER.glob("*.py"):
        if source.name == "fixes.py":
            continue
        assert not literal.findall(source.read_text()), source.name
