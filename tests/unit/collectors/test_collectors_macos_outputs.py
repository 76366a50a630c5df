"""The macOS collectors on recorded outputs (tests/fixtures/macos/): system_profiler's report,
pmset, softwareupdate, sw_vers and fdesetup into the same Snapshot facts as on Linux and
Windows; and truncated, garbage and oddly typed outputs: each field unavailable with its
reason, never an exception, never a fact made up (an unreadable listing is not "up to
date")."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import filevault, parse, pmset, profiler, software_update
from sonde.agent.collectors.macos.outputs import FIELDS, MacFacts, MacOutputs, macos_facts
from sonde.v1 import diagnostics_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "macos"
GIB = 1024**3
OK = diagnostics_pb2.COLLECTOR_STATE_OK
UNAVAILABLE = diagnostics_pb2.COLLECTOR_STATE_UNAVAILABLE


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def outputs(profile: str, **overrides: str | None) -> MacOutputs:
    chosen: dict[str, str | None] = {
        "system_profiler": fixture(profile),
        "pmset_batt": fixture("pmset_batt_discharging.txt"),
        "softwareupdate_list": fixture("softwareupdate_list_updates.txt"),
        "sw_vers": fixture("sw_vers.txt"),
        "fdesetup_status": fixture("fdesetup_on.txt"),
    }
    chosen.update(overrides)
    return MacOutputs(**chosen)


def test_a_macbook_air_fills_system_disks_battery_network_updates_and_encryption() -> None:
    facts = macos_facts(outputs("system_profiler_macbook_air.json"))
    assert facts.unavailable == {}
    system = facts.facts["system"]
    assert isinstance(system, diagnostics_pb2.SystemFacts)
    assert (system.hostname, system.os_family) == ("PC-042", "darwin")
    assert (system.os_name, system.os_version) == ("macOS 14.5 (23F79)", "23.5.0")
    assert system.architecture == "arm64"
    assert system.uptime_seconds == ((3 * 24 + 4) * 60 + 12) * 60 + 31

    disks = facts.facts["disks"]
    assert isinstance(disks, diagnostics_pb2.DiskFacts)
    data, root = disks.partitions
    assert (data.mountpoint, data.is_system, data.read_only) == (
        "/System/Volumes/Data",
        True,
        False,
    )
    assert (root.mountpoint, root.is_system, root.read_only) == ("/", False, True)
    assert data.free_bytes == 98765432832
    assert data.used_percent == pytest.approx(80.0, abs=0.1)
    assert [(s.device, s.passed) for s in disks.smart] == [("APPLE SSD AP0512Z", True)]

    battery = facts.facts["battery"]
    assert isinstance(battery, diagnostics_pb2.BatteryFacts)
    assert battery.present
    assert (battery.charge_percent, battery.plugged_in) == (82.0, False)
    assert battery.seconds_left == (5 * 60 + 48) * 60
    assert (battery.condition, battery.cycle_count, battery.wear_percent) == ("Good", 212, 4.0)

    network = facts.facts["network"]
    assert isinstance(network, diagnostics_pb2.NetworkFacts)
    assert (network.default_gateway, network.default_interface) == ("192.168.1.1", "en0")
    assert list(network.dns_servers) == ["192.168.1.1", "1.1.1.1"]
    en0 = network.interfaces[0]
    assert en0.is_up
    assert [(a.family, a.address) for a in en0.addresses] == [
        ("ipv4", "192.168.1.23"),
        ("mac", "a4:83:e7:12:34:56"),
    ]
    assert not network.interfaces[1].is_up  # the Thunderbolt bridge has no address

    updates = facts.facts["updates"]
    assert isinstance(updates, diagnostics_pb2.UpdateFacts)
    assert (updates.source, updates.pending_updates, updates.pending_updates_known) == (
        "softwareupdate",
        4,
        True,
    )
    sonoma, safari, _, sequoia = updates.pending
    assert (sonoma.title, sonoma.version, sonoma.label) == (
        "macOS Sonoma 14.6",
        "14.6",
        "macOS Sonoma 14.6-23G80",
    )
    assert (sonoma.recommended, sonoma.restart_required, sonoma.size_kib) == (True, True, 1056768)
    assert (safari.recommended, safari.restart_required) == (True, False)
    assert (sequoia.recommended, sequoia.restart_required) == (False, True)
    assert not updates.reboot_required  # macOS has no such flag apart from its updates

    encryption = facts.facts["encryption"]
    assert isinstance(encryption, diagnostics_pb2.EncryptionFacts)
    assert encryption.method == "filevault"
    assert encryption.volumes[0].protection_status == "On"


def test_a_worn_intel_macbook_with_a_full_disk() -> None:
    facts = macos_facts(
        outputs(
            "system_profiler_worn_battery_full_disk.json",
            pmset_batt=fixture("pmset_batt_charging.txt"),
            softwareupdate_list=fixture("softwareupdate_list_security.txt"),
            fdesetup_status=fixture("fdesetup_off.txt"),
            sw_vers=None,
        )
    )
    system = facts.facts["system"]
    assert isinstance(system, diagnostics_pb2.SystemFacts)
    assert (system.os_name, system.architecture) == ("macOS 13.6.7", "x86_64")
    battery = facts.facts["battery"]
    assert isinstance(battery, diagnostics_pb2.BatteryFacts)
    assert (battery.condition, battery.cycle_count, battery.wear_percent) == (
        "Service Recommended",
        1032,
        29.0,
    )
    assert (battery.plugged_in, battery.charge_percent, battery.seconds_left) == (True, 37.0, -1)
    disks = facts.facts["disks"]
    assert isinstance(disks, diagnostics_pb2.DiskFacts)
    by_mount = {p.mountpoint: p for p in disks.partitions}
    assert by_mount["/System/Volumes/Data"].free_bytes < 6 * GIB
    assert by_mount["/Volumes/BACKUP"].filesystem == "HFS+"
    assert not by_mount["/Volumes/BACKUP"].is_system
    assert [s.device for s in disks.smart] == ["APPLE SSD AP0256M"]  # "Not Supported" left out
    updates = facts.facts["updates"]
    assert isinstance(updates, diagnostics_pb2.UpdateFacts)
    assert (updates.pending_updates, updates.pending_security_updates) == (2, 1)
    encryption = facts.facts["encryption"]
    assert isinstance(encryption, diagnostics_pb2.EncryptionFacts)
    assert encryption.volumes[0].protection_status == "Off"


def test_a_desktop_imac_has_no_battery_and_says_which_sections_it_lacks() -> None:
    facts = macos_facts(
        outputs(
            "system_profiler_imac_desktop.json",
            pmset_batt=fixture("pmset_batt_desktop.txt"),
            softwareupdate_list=fixture("softwareupdate_list_none.txt"),
            fdesetup_status=fixture("fdesetup_encrypting.txt"),
        )
    )
    battery = facts.facts["battery"]
    assert isinstance(battery, diagnostics_pb2.BatteryFacts)
    assert not battery.present
    assert facts.unavailable == {
        "disks": "system_profiler's report has no SPStorageDataType",
        "network": "system_profiler's report has no SPNetworkDataType",
    }
    updates = facts.facts["updates"]
    assert isinstance(updates, diagnostics_pb2.UpdateFacts)
    assert (updates.pending_updates, updates.pending_updates_known) == (0, True)
    encryption = facts.facts["encryption"]
    assert isinstance(encryption, diagnostics_pb2.EncryptionFacts)
    assert encryption.volumes[0].volume_status == "EncryptionInProgress"
    assert encryption.volumes[0].encryption_percent == pytest.approx(42.7)


def test_into_a_snapshot_reports_every_field_ok_or_unavailable_with_its_reason() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    macos_facts(outputs("system_profiler_imac_desktop.json", softwareupdate_list=None)).into(
        snapshot
    )
    reports = {r.name: (r.state, r.reason) for r in snapshot.collectors}
    assert list(reports) == list(FIELDS)
    assert reports["system"] == (OK, "")
    assert reports["disks"] == (UNAVAILABLE, "system_profiler's report has no SPStorageDataType")
    assert reports["updates"] == (UNAVAILABLE, "softwareupdate --list was not run")
    assert snapshot.system.os_name == "macOS 14.5 (23F79)"  # sw_vers wins over the report
    assert not snapshot.HasField("disks")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "system_profiler gave no JSON report"),
        ("<html><body>Bad Gateway</body></html>", "system_profiler gave no JSON report"),
        ("[1, 2, 3]", "system_profiler's report is not a JSON object"),
        ('{"SPSoftwareDataType": "macOS"}', "system_profiler's report has no SP"),  # each its own
    ],
)
def test_a_report_that_is_not_one_makes_its_fields_unavailable(text: str, reason: str) -> None:
    facts = macos_facts(outputs("system_profiler_macbook_air.json", system_profiler=text))
    for name in ("system", "disks", "battery", "network"):
        assert facts.unavailable[name].startswith(reason), facts.unavailable[name]
    assert "updates" in facts.facts  # the other outputs still count


def test_values_of_the_wrong_type_are_skipped_not_trusted() -> None:
    report = json.loads(fixture("system_profiler_macbook_air.json"))
    report["SPStorageDataType"][0]["size_in_bytes"] = "lots"
    report["SPStorageDataType"][1]["free_space_in_bytes"] = -5
    report["SPPowerDataType"][0]["sppower_battery_health_info"] = ["Good"]
    report["SPNetworkDataType"] = [{"IPv4": {"Addresses": [1, None]}, "interface": "en0"}, "x"]
    report["SPSoftwareDataType"][0]["uptime"] = 12
    facts = macos_facts(
        outputs("system_profiler_macbook_air.json", system_profiler=json.dumps(report))
    )
    disks = facts.facts["disks"]
    assert isinstance(disks, diagnostics_pb2.DiskFacts)
    assert [p.mountpoint for p in disks.partitions] == ["/"]  # the volume without a size is out
    assert disks.partitions[0].free_bytes == 0  # a negative free space is not believed
    battery = facts.facts["battery"]
    assert isinstance(battery, diagnostics_pb2.BatteryFacts)
    assert (battery.condition, battery.cycle_count) == ("", 0)
    assert battery.wear_unavailable == "macOS gives no maximum capacity for this battery"
    network = facts.facts["network"]
    assert isinstance(network, diagnostics_pb2.NetworkFacts)
    assert [(i.name, i.is_up, len(i.addresses)) for i in network.interfaces] == [("en0", False, 0)]
    assert not network.default_gateway
    system = facts.facts["system"]
    assert isinstance(system, diagnostics_pb2.SystemFacts)
    assert system.uptime_seconds == 0


def test_every_truncation_of_every_recorded_output_ends_in_facts_or_reasons() -> None:
    names = sorted(p.name for p in FIXTURES.iterdir())
    assert len(names) >= 13
    rng = random.Random(8)
    for name in names:
        text = fixture(name)
        for cut in sorted({0, 1, len(text) // 2, len(text) - 1, *rng.sample(range(len(text)), 12)}):
            piece = text[:cut]
            facts = macos_facts(
                MacOutputs(
                    system_profiler=piece,
                    pmset_batt=piece,
                    softwareupdate_list=piece,
                    sw_vers=piece,
                    fdesetup_status=piece,
                )
            )
            assert isinstance(facts, MacFacts)
            assert set(facts.facts) | set(facts.unavailable) == set(FIELDS), (name, cut)
            for reason in facts.unavailable.values():
                assert reason
                assert len(reason) <= 300


def test_a_truncated_update_listing_is_not_taken_for_up_to_date() -> None:
    listing = fixture("softwareupdate_list_updates.txt")
    cut = listing[: listing.index("* Label")]
    with pytest.raises(CollectorUnavailable, match="found updates but listed none"):
        software_update.update_facts(cut)
    with pytest.raises(CollectorUnavailable, match=r"gave no list of updates: 'Finding available"):
        software_update.update_facts("Software Update Tool\n\nFinding available software\n")
    with pytest.raises(CollectorUnavailable, match=r"no list of updates \(no output\)"):
        software_update.update_facts("")
    network_error = "Software Update Tool\n\nCan't connect to the Apple Software Update server.\n"
    with pytest.raises(CollectorUnavailable, match="Can't connect"):
        software_update.update_facts(network_error)


def test_a_title_with_commas_and_sizes_in_mib() -> None:
    listing = (
        "Software Update found the following new or updated software:\n"
        "* Label: Pro Video Formats-2.3\n"
        "\tTitle: Pro Video Formats, Codecs, and More, Version: 2.3, Size: 12MiB, "
        "Recommended: YES,\n"
    )
    (update,) = software_update.pending_updates(listing)
    assert (update.title, update.version, update.size_kib) == (
        "Pro Video Formats, Codecs, and More",
        "2.3",
        12 * 1024,
    )
    assert not update.restart_required


def test_pmset_sw_vers_and_fdesetup_on_their_own() -> None:
    on_battery = pmset.power_state(fixture("pmset_batt_discharging.txt"))
    assert (on_battery.on_battery_power, on_battery.charge_percent, on_battery.state) == (
        True,
        82.0,
        "discharging",
    )
    charging = pmset.power_state(fixture("pmset_batt_charging.txt"))
    assert (charging.on_battery_power, charging.seconds_left, charging.state) == (
        False,
        -1,
        "charging",
    )
    assert not pmset.power_state(fixture("pmset_batt_desktop.txt")).battery_present
    with pytest.raises(CollectorUnavailable, match="where the power comes from"):
        pmset.power_state("garbage")
    assert parse.sw_vers(fixture("sw_vers.txt")) == ("macOS 14.5", "23F79")
    assert parse.sw_vers("nothing here") == ("", "")
    with pytest.raises(CollectorUnavailable, match="said nothing about FileVault: 'Error"):
        filevault.encryption_facts("Error: this tool needs a Mac\n")
    decrypting = filevault.encryption_facts(
        "FileVault is Off.\nDecryption in progress: Percent completed = 25.0\n"
    )
    assert decrypting.volumes[0].volume_status == "DecryptionInProgress"
    assert decrypting.volumes[0].encryption_percent == 75.0


def test_an_oversized_report_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(CollectorUnavailable, match="over 16,777,216"):
        profiler.report_of(" " * (profiler.MAX_REPORT_BYTES + 1))
    assert profiler.hardware_model(
        profiler.report_of(fixture("system_profiler_macbook_air.json"))
    ) == ("MacBook Air (Mac14,2), Apple M2, 16 GB")


def _hostile_reports() -> dict[str, str]:
    def changed(change: object) -> str:
        report = json.loads(fixture("system_profiler_macbook_air.json"))
        assert callable(change)
        change(report)
        return json.dumps(report)

    def each(data_type: str, key: str, value: object) -> object:
        def change(report: dict[str, list[dict[str, object]]]) -> None:
            for item in report[data_type]:
                item[key] = value

        return change

    def each_ipv4(key: str, value: object) -> object:
        def change(report: dict[str, list[dict[str, dict[str, object]]]]) -> None:
            for service in report["SPNetworkDataType"]:
                service.setdefault("IPv4", {})[key] = value
                service.setdefault("DNS", {})["ServerAddresses"] = value

        return change

    return {
        "nested past Python's recursion limit": "[" * 200_000,
        "a volume larger than any counter": changed(
            each("SPStorageDataType", "size_in_bytes", 10**30)
        ),
        "free space larger than any counter": changed(
            each("SPStorageDataType", "free_space_in_bytes", 10**30)
        ),
        "an uptime of 10^17 days": changed(
            each("SPSoftwareDataType", "uptime", "up 99999999999999999:00:00:00")
        ),
        "addresses that are a number": changed(each_ipv4("Addresses", 5)),
        "masks that are a number": changed(each_ipv4("SubnetMasks", 5)),
        "addresses that are one string": changed(each_ipv4("Addresses", "10.0.0.1")),
    }


@pytest.mark.parametrize("hostile", sorted(_hostile_reports()))
def test_a_hostile_report_ends_in_facts_or_reasons_never_an_exception(hostile: str) -> None:
    text = _hostile_reports()[hostile]
    facts = macos_facts(outputs("system_profiler_macbook_air.json", system_profiler=text))
    assert set(facts.facts) | set(facts.unavailable) == set(FIELDS)
    snapshot = diagnostics_pb2.Snapshot()
    facts.into(snapshot)  # every value fits its field
    network = facts.facts.get("network")
    if isinstance(network, diagnostics_pb2.NetworkFacts):
        for interface in network.interfaces:  # a string is not a list of one-letter addresses
            assert all(len(a.address) > 1 for a in interface.addresses), interface
        assert all(len(server) > 1 for server in network.dns_servers)


def test_an_update_larger_than_any_counter_keeps_its_title_not_its_size() -> None:
    listing = (
        "Software Update found the following new or updated software:\n"
        "* Label: Big-1.0\n"
        "\tTitle: Big, Version: 1.0, Size: 99999999999999999999999999KiB, Recommended: YES,\n"
    )
    facts = software_update.update_facts(listing)
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.updates.CopyFrom(facts)
    (update,) = snapshot.updates.pending
    assert (update.title, update.size_kib) == ("Big", 0)
