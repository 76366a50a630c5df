"""Checks and findings on Macs built from recorded outputs (tests/fixtures/macos/): pending
macOS updates (recommended, restart required, a security response), the battery macOS says
needs service, a full Data volume, FileVault off; and the Windows and restart-pending checks
staying silent on a Mac."""

from __future__ import annotations

from pathlib import Path

from sonde.agent.checks import CHECKS, evaluate
from sonde.agent.checks.sources import CHECK_SOURCES
from sonde.agent.collectors.macos.outputs import MacOutputs, macos_facts
from sonde.v1 import diagnostics_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "macos"
OK = diagnostics_pb2.SEVERITY_OK
WARNING = diagnostics_pb2.SEVERITY_WARNING
CRITICAL = diagnostics_pb2.SEVERITY_CRITICAL


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def mac(
    profile: str, pmset: str, updates: str, filevault: str
) -> dict[str, diagnostics_pb2.Finding]:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.collected_at.GetCurrentTime()
    outputs = MacOutputs(
        system_profiler=fixture(profile),
        pmset_batt=fixture(pmset),
        softwareupdate_list=fixture(updates),
        sw_vers=fixture("sw_vers.txt"),
        fdesetup_status=fixture(filevault),
    )
    macos_facts(outputs).into(snapshot)
    return {f.check: f for f in evaluate(snapshot)}


def evidence(found: diagnostics_pb2.Finding) -> dict[str, str]:
    return {e.key: e.value for e in found.evidence}


def test_a_healthy_macbook_air_with_updates_waiting() -> None:
    found = mac(
        "system_profiler_macbook_air.json",
        "pmset_batt_discharging.txt",
        "softwareupdate_list_updates.txt",
        "fdesetup_on.txt",
    )
    updates = found["macos.updates"]
    assert updates.severity == WARNING
    assert updates.summary == (
        "3 recommended macOS updates wait to be installed: macOS Sonoma 14.6, Safari, "
        "Command Line Tools for Xcode; macOS Sonoma 14.6 needs a restart."
    )
    assert evidence(updates)["macOS Sequoia 15.0-24A335"] == (
        "version 15.0, not recommended, needs a restart, 6580 MiB"
    )
    assert not updates.fix_script_id  # the catalog has no macOS scripts
    assert found["battery.wear"].severity == OK
    assert found["battery.wear"].summary == "The battery holds 96 % of its design capacity."
    assert evidence(found["battery.wear"])["condition"] == "Good"
    assert found["disk.space"].severity == OK
    assert "/System/Volumes/Data" in found["disk.space"].summary
    assert found["macos.filevault"].severity == OK
    assert found["network.gateway"].severity == OK
    for silent in ("updates.reboot_pending", "windows.bitlocker", "windows.update"):
        assert silent not in found


def test_a_worn_battery_a_full_disk_a_security_response_and_filevault_off() -> None:
    found = mac(
        "system_profiler_worn_battery_full_disk.json",
        "pmset_batt_charging.txt",
        "softwareupdate_list_security.txt",
        "fdesetup_off.txt",
    )
    battery = found["battery.wear"]
    assert battery.severity == WARNING  # 29 % wear alone is under the 40 % line
    assert battery.summary == (
        "The battery holds 71 % of its design capacity; macOS says its condition is "
        "'Service Recommended' after 1032 charge cycles: it should be serviced or replaced."
    )
    disk = found["disk.space"]
    assert disk.severity == CRITICAL
    assert disk.summary.startswith("The disk mounted at /System/Volumes/Data is 98 % full")
    assert "/" not in evidence(disk)  # the sealed system volume is read-only: left out
    assert "/Volumes/BACKUP" in evidence(disk)
    updates = found["macos.updates"]
    assert updates.severity == CRITICAL
    assert "Rapid Security Response macOS Ventura 13.6.7 (a) fixes security flaws" in (
        updates.summary
    )
    filevault = found["macos.filevault"]
    assert filevault.severity == WARNING
    assert filevault.summary == "FileVault is off: a lost or stolen Mac gives its data away."


def test_a_desktop_up_to_date_and_encrypting() -> None:
    found = mac(
        "system_profiler_imac_desktop.json",
        "pmset_batt_desktop.txt",
        "softwareupdate_list_none.txt",
        "fdesetup_encrypting.txt",
    )
    assert "battery.wear" not in found  # no battery
    assert "disk.space" not in found  # the report had no storage section: no guess
    assert found["macos.updates"].severity == OK
    assert found["macos.updates"].summary == (
        "macOS is up to date (as of its last check for updates)."
    )
    assert found["macos.filevault"].summary == "FileVault is encrypting the disk (43 % done)."


def test_a_battery_macos_says_to_replace_now_is_critical_whatever_its_wear() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.battery.CopyFrom(
        diagnostics_pb2.BatteryFacts(
            present=True, condition="Replace Now", wear_percent=10.0, cycle_count=1500
        )
    )
    (battery,) = [f for f in evaluate(snapshot) if f.check == "battery.wear"]
    assert battery.severity == CRITICAL


def test_the_new_checks_are_registered_with_their_sources() -> None:
    ids = [check_id for check_id, _ in CHECKS]
    assert {"macos.updates", "macos.filevault"} <= set(ids)
    assert CHECK_SOURCES["macos.updates"] == ("updates",)
    assert CHECK_SOURCES["macos.filevault"] == ("encryption",)
