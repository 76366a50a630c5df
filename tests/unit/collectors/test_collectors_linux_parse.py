"""Linux and smartctl parsers on recorded outputs."""

from __future__ import annotations

import json

import pytest

from sonde.agent.collectors import smart
from sonde.agent.collectors.linux import parse
from tests.unit.collectors.recorded_outputs import recorded


def test_default_route_lowest_metric_little_endian() -> None:
    route = parse.default_route(recorded("linux/proc_net_route.txt"))
    assert route is not None
    assert (route.gateway, route.interface) == ("10.20.30.1", "enp0s31f6")
    assert parse.default_route(recorded("linux/proc_net_route_no_default.txt")) is None


def test_resolv_conf() -> None:
    assert parse.resolv_conf_servers(recorded("linux/resolv_conf_stub.txt")) == ["127.0.0.53"]
    assert parse.resolv_conf_servers(recorded("linux/resolv_conf_upstream.txt")) == [
        "10.20.30.10",
        "10.20.30.11",
        "fd00:20::53",
    ]


def test_os_release_and_cpu_model() -> None:
    assert parse.os_release_name(recorded("linux/os_release_ubuntu.txt")) == "Ubuntu 24.04.1 LTS"
    assert parse.os_release_name('NAME="Alpine"\nVERSION="3.20"\n') == "Alpine 3.20"
    assert parse.cpu_model(recorded("linux/cpuinfo_arm.txt")) == "Raspberry Pi 4 Model B Rev 1.1"


def test_systemctl_failed_units_with_and_without_bullet() -> None:
    failed = parse.systemctl_failed(recorded("linux/systemctl_failed.txt"))
    assert [(s.name, s.state) for s in failed] == [
        ("cups-browsed.service", "failed"),
        ("snap-firefox-4451.mount", "failed"),
        ("NetworkManager-wait-online.service", "failed"),
    ]
    assert failed[0].display_name == "Make remote CUPS printers available locally"
    assert parse.systemctl_failed("") == []


def test_dpkg_keeps_only_installed_packages() -> None:
    packages = parse.dpkg_packages(recorded("linux/dpkg_query.txt"))
    assert [(p.name, p.version) for p in packages] == [
        ("adduser", "3.134"),
        ("firefox-esr", "115.12.0esr-1~deb12u1"),
        ("libreoffice-writer", "4:7.4.7-1+deb12u3"),
    ]


def test_rpm_skips_gpg_keys() -> None:
    packages = parse.rpm_packages(recorded("linux/rpm_qa.txt"))
    assert [p.name for p in packages] == ["bash", "google-chrome-stable", "kernel-core"]
    assert packages[1].publisher == "Google Inc."
    assert packages[1].install_date.startswith("Wed 05 Jun 2024")


def test_updates_available() -> None:
    assert parse.updates_available(recorded("linux/updates_available.txt")) == (17, 6)
    assert parse.updates_available("") == (0, 0)


@pytest.mark.parametrize(
    ("fixture", "design", "full", "cycles"),
    [
        ("linux/power_supply_energy.uevent", 57000, 41040, 412),
        # charge (uAh) times design voltage (uV): 5 Ah * 7.6 V = 38 Wh
        ("linux/power_supply_charge.uevent", 38000, 34200, 0),
    ],
)
def test_power_supply_capacity(fixture: str, design: int, full: int, cycles: int) -> None:
    capacity = parse.power_supply_capacity(recorded(fixture))
    assert capacity is not None
    assert (capacity.design_mwh, capacity.full_mwh, capacity.cycle_count) == (design, full, cycles)


def test_power_supply_without_capacities() -> None:
    assert parse.power_supply_capacity("POWER_SUPPLY_CAPACITY=50\n") is None


def test_smartctl_ata_and_nvme() -> None:
    assert smart.parse_scan(json.loads(recorded("smartctl/scan.json"))) == [
        "/dev/sda",
        "/dev/nvme0",
    ]
    ata = smart.parse_device(json.loads(recorded("smartctl/ata.json")))
    assert (ata.device, ata.passed, ata.raw_status) == ("/dev/sda", False, "FAILED")
    assert (ata.reallocated_sectors, ata.power_on_hours, ata.temperature_celsius) == (
        212,
        31544,
        37,
    )
    nvme = smart.parse_device(json.loads(recorded("smartctl/nvme.json")))
    assert (nvme.passed, nvme.percentage_used, nvme.model) == (
        True,
        7,
        "SAMSUNG MZVL2512HCJQ-00BL7",
    )


def test_smartctl_refusal_from_exit_status() -> None:
    reason = smart.refusal(json.loads(recorded("smartctl/no_permission.json")))
    assert reason == "smartctl cannot open the drives: it needs administrator rights"
    assert smart.refusal(json.loads(recorded("smartctl/nvme.json"))) is None
