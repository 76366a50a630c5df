"""The Windows collection (collect.ps1's JSON) on recorded documents: the facts each section
gives, the findings they lead to, and hostile documents (truncated, wrong types, huge, a
section missing) that make only the collectors they feed 'unavailable', with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sonde.agent.checks import evaluate
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.windows import collection
from sonde.agent.collectors.windows.document import (
    FIELD_SECTIONS,
    MAX_DOCUMENT_BYTES,
    WindowsFacts,
    windows_facts,
)
from sonde.v1 import diagnostics_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "windows"
Severity = diagnostics_pb2.Severity
OK, WARNING, CRITICAL = Severity.SEVERITY_OK, Severity.SEVERITY_WARNING, Severity.SEVERITY_CRITICAL
UNAVAILABLE = diagnostics_pb2.CollectorState.COLLECTOR_STATE_UNAVAILABLE


def document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def snapshot_of(facts: WindowsFacts) -> diagnostics_pb2.Snapshot:
    snapshot = diagnostics_pb2.Snapshot()
    if facts.collected_at is not None:
        snapshot.collected_at.FromDatetime(facts.collected_at)
    facts.into(snapshot)
    return snapshot


def findings(name: str) -> dict[str, diagnostics_pb2.Finding]:
    facts = windows_facts((FIXTURES / name).read_bytes())
    assert facts.unavailable == {}
    return {f.check: f for f in evaluate(snapshot_of(facts))}


def not_ok(name: str) -> dict[str, int]:
    return {check: f.severity for check, f in findings(name).items() if f.severity != OK}


def test_a_healthy_windows_11_laptop_gives_every_fact_and_no_problem() -> None:
    facts = windows_facts((FIXTURES / "healthy_windows11.json").read_bytes())
    assert facts.unavailable == {}
    assert set(facts.facts) == set(FIELD_SECTIONS)
    snapshot = snapshot_of(facts)
    assert snapshot.system.os_name == "Windows 11 Pro 23H2"  # ProductName says Windows 10
    assert snapshot.system.os_version == "10.0.22631.4460"
    assert snapshot.system.hostname == "LPT-0417"
    assert snapshot.system.uptime_seconds == 4 * 86400 + 3600 + 24 * 60 + 28  # from boot_time
    assert snapshot.memory.total_bytes == 16469708 * 1024
    assert snapshot.memory.used_percent == pytest.approx(55.8)
    [system_drive] = snapshot.disks.partitions
    assert (system_drive.mountpoint, system_drive.is_system) == ("C:\\", True)
    assert system_drive.used_percent == pytest.approx(55.4)
    names = sorted(p.name for p in snapshot.software.packages)
    # SystemComponent=1 and ParentKeyName entries skipped; 64-bit, WOW6432Node and per user.
    assert names == [
        "7-Zip 24.08 (x64)",
        "Adobe Acrobat (64-bit)",
        "Google Chrome",
        "Microsoft 365 Apps for enterprise - en-us",
        "Microsoft Edge",
        "Zoom Workplace",
    ]
    assert not snapshot.updates.reboot_required
    # gupdate, edgeupdate and sppsvc are automatic and stopped by design.
    assert snapshot.services.total == 12
    assert list(snapshot.services.failed) == []
    assert snapshot.network.default_gateway == "10.40.12.1"
    assert list(snapshot.network.dns_servers) == ["10.40.0.10", "10.40.0.11"]
    assert snapshot.network.machine_proxy_known
    assert not snapshot.network.HasField("machine_proxy")
    assert snapshot.battery.wear_percent == pytest.approx(8.3)
    assert snapshot.battery.cycle_count == 143
    assert list(snapshot.windows_update.recent_hotfixes) == ["KB5046633", "KB5045935", "KB5044620"]
    assert snapshot.antivirus.real_time_protection
    assert snapshot.antivirus.signature_version == "1.421.1420.0"
    assert [v.key_protector_types for v in snapshot.encryption.volumes] == [
        ["Tpm", "RecoveryPassword"]
    ]
    assert snapshot.event_log.error_count == 9
    assert snapshot.event_log.events[0].message.startswith("The application-specific")
    assert "\n" not in snapshot.event_log.events[1].message  # the first line only
    assert snapshot.printing.spooler_state == "running"
    assert len(snapshot.printing.printers) == 2
    assert snapshot.time_sync.synchronized
    # 8:41:17 AM at UTC+1 is 07:41:17 UTC.
    assert snapshot.time_sync.last_sync_at.ToJsonString() == "2026-12-02T07:41:17Z"
    assert snapshot.time_sync.offset_seconds == pytest.approx(0.0007142)
    assert (snapshot.wifi.ssid, snapshot.wifi.signal_percent) == ("CORP-WLAN", 88)
    assert (snapshot.wifi.band, snapshot.wifi.channel) == ("5 GHz", 44)
    assert snapshot.disk_health.disks[0].counters_known
    assert snapshot.disk_health.disks[0].power_on_hours == 4120
    assert not_ok("healthy_windows11.json") == {}
    assert [r.state for r in snapshot.collectors] == [
        diagnostics_pb2.CollectorState.COLLECTOR_STATE_OK
    ] * len(FIELD_SECTIONS)


def test_a_pending_reboot_names_its_flags() -> None:
    facts = windows_facts((FIXTURES / "pending_reboot.json").read_bytes())
    updates = facts.facts["updates"]
    assert isinstance(updates, diagnostics_pb2.UpdateFacts)
    assert list(updates.reboot_reasons) == [
        "Component Based Servicing\\RebootPending",
        "WindowsUpdate\\Auto Update\\RebootRequired",
    ]
    found = findings("pending_reboot.json")["updates.reboot_pending"]
    assert found.severity == WARNING
    assert found.fix_script_id == "reboot-with-notice-windows"
    assert not_ok("pending_reboot.json") == {"updates.reboot_pending": WARNING}


def test_defender_signatures_9_days_old() -> None:
    found = findings("defender_signatures_9_days.json")["windows.defender"]
    assert found.severity == WARNING
    assert "9 days old" in found.summary
    assert found.fix_script_id == "update-defender-and-scan"
    assert not_ok("defender_signatures_9_days.json") == {"windows.defender": WARNING}


def test_bitlocker_off_on_the_system_drive() -> None:
    found = findings("bitlocker_off.json")["windows.bitlocker"]
    assert found.severity == WARNING
    assert found.summary.startswith("C: is not encrypted")
    evidence = {e.key: e.value for e in found.evidence}
    assert evidence["D:"].startswith("FullyDecrypted, protection off")
    assert not_ok("bitlocker_off.json") == {"windows.bitlocker": WARNING}


def test_three_stuck_print_jobs() -> None:
    found = findings("print_jobs_stuck.json")["print.stuck_jobs"]
    assert found.severity == WARNING
    assert found.summary.startswith("3 print jobs are stuck on HP LaserJet MFP M426")
    assert found.fix_script_id == "restart-print-spooler"
    evidence = {e.key: e.value for e in found.evidence}
    # In error; waiting 1 h 14 min; waiting 48 min. The PDF job of 20 s ago is not stuck.
    assert evidence["HP LaserJet MFP M426 (3rd floor) job 12"].startswith("Q4 budget.xlsx (Error")
    assert "waiting 48 min" in evidence["HP LaserJet MFP M426 (3rd floor) job 14"]
    assert "Microsoft Print to PDF job 3" not in evidence
    assert not_ok("print_jobs_stuck.json") == {"print.stuck_jobs": WARNING}


def test_time_not_synchronised() -> None:
    facts = windows_facts((FIXTURES / "time_not_synced.json").read_bytes())
    sync = facts.facts["time_sync"]
    assert isinstance(sync, diagnostics_pb2.TimeSyncFacts)
    assert (sync.source, sync.synchronized, sync.stratum) == ("Local CMOS Clock", False, 0)
    assert not sync.HasField("last_sync_at")
    found = findings("time_not_synced.json")["time.sync"]
    assert found.severity == WARNING
    assert found.fix_script_id == "resync-clock-windows"
    assert not_ok("time_not_synced.json") == {"time.sync": WARNING}


def test_a_disk_predicting_its_failure_and_its_errors_in_the_log() -> None:
    found = findings("disk_predictive_failure.json")
    assert found["disk.health"].severity == CRITICAL
    assert "WDC WD10SPZX-22Z10T1 predicts its own failure" in found["disk.health"].summary
    assert found["disk.health"].fix_script_id == ""  # back up first: no script replaces a disk
    assert found["events.errors"].severity == WARNING
    assert "22 disk errors" in found["events.errors"].summary
    assert not_ok("disk_predictive_failure.json") == {
        "disk.health": CRITICAL,
        "events.errors": WARNING,
    }


def test_a_user_proxy_that_services_do_not_have() -> None:
    facts = windows_facts((FIXTURES / "proxy_set.json").read_bytes())
    network = facts.facts["network"]
    assert isinstance(network, diagnostics_pb2.NetworkFacts)
    assert network.proxy.http_proxy == "proxy.corp.example:3128"
    assert network.proxy.no_proxy == "*.corp.example;10.*;<local>"
    assert network.proxy.source.startswith("registry HKU\\S-1-5-21-")
    found = findings("proxy_set.json")["network.proxy"]
    assert found.severity == WARNING
    assert "Windows services go direct" in found.summary
    assert not_ok("proxy_set.json") == {"network.proxy": WARNING}


def test_weak_wifi() -> None:
    found = findings("wifi_weak.json")["wifi.signal"]
    assert found.severity == WARNING
    assert "weak (27 %)" in found.summary
    evidence = {e.key: e.value for e in found.evidence}
    assert evidence["band"] == "2.4 GHz, channel 11"
    assert not_ok("wifi_weak.json") == {"wifi.signal": WARNING}


# --- hostile and broken documents ---------------------------------------------------------


def reasons(raw: str | bytes) -> dict[str, str]:
    facts = windows_facts(raw)
    assert set(facts.facts) | set(facts.unavailable) == set(FIELD_SECTIONS)
    return facts.unavailable


def test_a_document_with_a_byte_order_mark_is_read() -> None:
    raw = (FIXTURES / "healthy_windows11.json").read_bytes()
    assert windows_facts(b"\xef\xbb\xbf" + raw).unavailable == {}
    assert windows_facts("\ufeff" + raw.decode("utf-8")).unavailable == {}


def test_a_truncated_document_makes_everything_unavailable() -> None:
    raw = (FIXTURES / "healthy_windows11.json").read_bytes()
    for cut in (0, 1, len(raw) // 3, len(raw) - 3):
        unavailable = reasons(raw[:cut])
        assert set(unavailable) == set(FIELD_SECTIONS)
        assert all(r.startswith("the collection is not JSON") for r in unavailable.values())


@pytest.mark.parametrize(
    "raw",
    ["[]", "null", '"text"', "42", '{"schema": 7}', '{"schema": "other/1"}', "[" * 100_000],
)
def test_a_document_of_the_wrong_shape_is_refused_whole(raw: str) -> None:
    unavailable = reasons(raw)
    assert set(unavailable) == set(FIELD_SECTIONS)
    assert len({*unavailable.values()}) == 1


def test_a_document_over_the_size_limit_is_not_parsed() -> None:
    raw = b'{"schema": "sonde.windows.collect/1", "x": "' + b"a" * MAX_DOCUMENT_BYTES + b'"}'
    unavailable = reasons(raw)
    assert "more than the 16 MiB accepted" in unavailable["antivirus"]


def test_a_missing_section_makes_only_its_collectors_unavailable() -> None:
    doc = document("healthy_windows11.json")
    del doc["sections"]["defender"]
    del doc["sections"]["registry"]
    unavailable = reasons(json.dumps(doc))
    assert unavailable == {
        "antivirus": "defender: the collection has no 'defender' section",
        "system": "registry: the collection has no 'registry' section",
        "software": "registry: the collection has no 'registry' section",
        "updates": "registry: the collection has no 'registry' section",
    }
    network = windows_facts(json.dumps(doc)).facts["network"]
    assert isinstance(network, diagnostics_pb2.NetworkFacts)
    assert network.default_gateway == "10.40.12.1"  # still read, without the user's proxy
    assert not network.HasField("proxy")


def test_what_the_machine_could_not_read_is_said_with_its_message() -> None:
    doc = document("healthy_windows11.json")
    del doc["sections"]["bitlocker"]
    doc["errors"] = {"bitlocker": "CimException: Access denied"}
    unavailable = reasons(json.dumps(doc))
    assert unavailable == {
        "encryption": "bitlocker: the machine could not read it: CimException: Access denied"
    }


@pytest.mark.parametrize(
    ("section", "change", "field", "said"),
    [
        ("defender", {"AntivirusSignatureAge": "nine"}, "antivirus", "not a whole number"),
        ("defender", {"RealTimeProtectionEnabled": 1}, "antivirus", "not true/false"),
        ("defender", {"AntivirusSignatureAge": -3}, "antivirus", "outside 0.."),
        ("printing", {"jobs": [{"id": 1, "submitted": "yesterday"}]}, "printing", "ISO 8601"),
        ("printing", {"jobs": {"id": True}}, "printing", "not a whole number"),
        ("printing", {"spooler": ["running"]}, "printing", "not an object"),
        ("event_log", {"groups": [{"count": 1e300}]}, "event_log", "not a whole number"),
        ("event_log", {"groups": [{"id": 2**70}]}, "event_log", "outside 0.."),
        ("wifi", {"netsh": 12.5}, "wifi", None),  # a number is taken as its text: no Wi-Fi
        ("bitlocker", {"volumes": [{"mount_point": "C:" * 5000}]}, "encryption", "characters"),
        ("bitlocker", {"volumes": [{}] * 65}, "encryption", "more than the 64 accepted"),
        ("time_sync", {"w32tm": "Quelle : CMOS local\r\n"}, "time_sync", "another language"),
        ("disk_health", {"disks": [{"counters": {"wear": 250}}]}, "disk_health", "outside"),
        ("services", {"services": "Spooler"}, "services", "not an object"),
        ("memory", {"total_kib": 0}, "memory", "missing or 0"),
        ("volumes", {"volumes": [{"device": "C:", "size": "big"}]}, "disks", "not a whole"),
        ("system", {"boot_time": "last Tuesday"}, "system", "not an ISO 8601 time"),
    ],
)
def test_a_malformed_section_makes_its_collector_unavailable_and_says_where(
    section: str, change: dict[str, object], field: str, said: str | None
) -> None:
    doc = document("healthy_windows11.json")
    doc["sections"][section].update(change)
    unavailable = reasons(json.dumps(doc))
    if said is None:
        assert unavailable == {}
        return
    assert set(unavailable) == {field}
    assert unavailable[field].startswith(f"{section}: ")
    assert said in unavailable[field]
    assert len(unavailable[field]) <= 300


@pytest.mark.parametrize(
    "key",
    [
        {"values": {"DisplayName": {"nested": 1}}},
        {"values": {"DisplayName": True}},
        {"values": {"PendingFileRenameOperations": ["a", 3]}},
        {"values": {"DisplayName": "x" * 9000}},
        {"subkeys": "not a list of names", "values": {"a": 2**80}},
        ["not", "a", "key"],
    ],
)
def test_a_malformed_registry_dump_makes_its_collectors_unavailable(key: object) -> None:
    doc = document("healthy_windows11.json")
    path = r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\Google Chrome"
    doc["sections"]["registry"]["keys"][path] = key
    unavailable = reasons(json.dumps(doc))
    assert set(unavailable) == {"system", "software", "updates"}
    assert all(r.startswith("registry: ") for r in unavailable.values())


def test_a_registry_key_outside_hklm_and_hku_is_refused() -> None:
    doc = document("healthy_windows11.json")
    doc["sections"]["registry"]["keys"][r"HKCU\Software"] = {"values": {}}
    assert "outside HKLM and HKU" in reasons(json.dumps(doc))["software"]


def test_unknown_keys_and_sections_are_ignored_and_copied_nowhere() -> None:
    doc = document("healthy_windows11.json")
    doc["sections"]["defender"]["RecoveryPassword"] = "123456-123456-123456"
    doc["sections"]["surprise"] = {"anything": [1, 2, 3]}
    doc["extra"] = "x"
    facts = windows_facts(json.dumps(doc))
    assert facts.unavailable == {}
    snapshot = snapshot_of(facts)
    assert b"123456-123456" not in snapshot.SerializeToString()


def test_control_characters_in_text_stay_data() -> None:
    doc = document("healthy_windows11.json")
    doc["sections"]["printing"]["jobs"] = [
        {"printer": "P", "id": 1, "document": "\x1b[2J\x00evil", "status": "Error"}
    ]
    facts = windows_facts(json.dumps(doc))
    printing = facts.facts["printing"]
    assert isinstance(printing, diagnostics_pb2.PrintFacts)
    assert printing.jobs[0].document == "\x1b[2J\x00evil"  # printed inert by the CLI


def test_a_single_element_list_written_alone_is_read_as_a_list() -> None:
    # ConvertTo-Json in Windows PowerShell writes @(x) returned through a pipeline as x.
    doc = document("healthy_windows11.json")
    doc["sections"]["bitlocker"]["volumes"] = doc["sections"]["bitlocker"]["volumes"][0]
    doc["sections"]["disk_health"]["disks"][0]["operational_status"] = "OK"
    facts = windows_facts(json.dumps(doc))
    assert facts.unavailable == {}
    encryption = facts.facts["encryption"]
    assert isinstance(encryption, diagnostics_pb2.EncryptionFacts)
    assert [v.mount_point for v in encryption.volumes] == ["C:"]


def test_into_reports_each_unavailable_collector_with_its_reason() -> None:
    doc = document("healthy_windows11.json")
    del doc["sections"]["wifi"]
    snapshot = diagnostics_pb2.Snapshot()
    windows_facts(json.dumps(doc)).into(snapshot)
    assert snapshot.collected_at.ToJsonString() == "2026-12-02T09:20:00Z"
    reports = {r.name: r for r in snapshot.collectors}
    assert reports["wifi"].state == UNAVAILABLE
    assert reports["wifi"].reason == "wifi: the collection has no 'wifi' section"
    assert not snapshot.HasField("wifi")
    assert "wifi.signal" not in {f.check for f in evaluate(snapshot)}


def test_the_agent_s_run_says_why_when_powershell_cannot_start() -> None:
    # On Linux there is no powershell.exe: every Windows-only collector is unavailable, saying
    # so, from one attempt shared by the collectors that ask together.
    reasons = []
    for field in ("antivirus", "printing"):
        with pytest.raises(CollectorUnavailable) as raised:
            collection.collect_field(field)
        reasons.append(raised.value.reason)
    assert reasons[0] == reasons[1]
    assert reasons[0].startswith("powershell.exe could not run the collection: ")
