"""Windows parsers on recorded outputs: registry exports, route print, ipconfig, powercfg."""

from __future__ import annotations

import json

import pytest

from sonde.agent.collectors.windows import parse
from tests.unit.collectors.recorded_outputs import RecordedRegistry, recorded


@pytest.fixture
def workstation() -> RecordedRegistry:
    return RecordedRegistry(recorded("windows/workstation.reg"))


@pytest.fixture
def clean() -> RecordedRegistry:
    return RecordedRegistry(recorded("windows/clean.reg"))


def test_os_release_says_windows_11_when_the_build_is_22000_or_later(
    workstation: RecordedRegistry, clean: RecordedRegistry
) -> None:
    release = parse.os_release(workstation)
    assert release.name == "Windows 11 Pro 23H2"
    assert release.version == "10.0.22631.4037"
    assert parse.os_release(clean).name == "Windows 10 Enterprise 22H2"


def test_cpu_model(workstation: RecordedRegistry) -> None:
    assert parse.cpu_model(workstation) == "11th Gen Intel(R) Core(TM) i5-1145G7 @ 2.60GHz"


def test_route_print_takes_the_lowest_metric_default_route() -> None:
    route = parse.route_print_default(recorded("windows/route_print.txt"))
    assert route is not None
    assert (route.gateway, route.interface) == ("10.20.30.1", "10.20.30.45")


def test_route_print_without_default_route() -> None:
    assert parse.route_print_default(recorded("windows/route_print_no_gateway.txt")) is None


def test_dns_servers_static_before_dhcp_and_deduplicated(workstation: RecordedRegistry) -> None:
    assert parse.dns_servers(workstation) == ["10.20.30.10", "10.20.30.11", "192.168.1.53"]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("windows/ipconfig_all.txt", ["10.20.30.10", "10.20.30.11", "fd00:20::53"]),
        ("windows/ipconfig_all_fr.txt", ["192.168.0.254", "1.1.1.1"]),
    ],
)
def test_ipconfig_dns_servers(fixture: str, expected: list[str]) -> None:
    assert parse.ipconfig_dns_servers(recorded(fixture)) == expected


def test_proxy_of_the_logged_on_user(
    workstation: RecordedRegistry, clean: RecordedRegistry
) -> None:
    proxy = parse.proxy_settings(workstation)
    assert proxy is not None
    assert proxy.http_proxy == "proxy.corp.example.com:8080"
    assert proxy.https_proxy == "proxy.corp.example.com:8443"
    assert proxy.auto_config_url == "http://wpad.corp.example.com/proxy.pac"
    assert proxy.no_proxy == "*.corp.example.com;<local>"
    assert proxy.source.startswith("registry HKU\\S-1-5-21-")
    assert parse.proxy_settings(clean) is None  # ProxyEnable=0: the old server is not in use


def test_software_reads_64_32_bit_and_per_user_keys_and_skips_components(
    workstation: RecordedRegistry,
) -> None:
    packages = {p.name: p for p in parse.installed_software(workstation)}
    assert set(packages) == {
        "7-Zip 23.01 (x64 edition)",
        "Microsoft Edge",  # listed in both views, kept once
        "Adobe Acrobat Reader DC",
        "Microsoft Teams classic",
    }
    assert packages["Adobe Acrobat Reader DC"].publisher == "Adobe"
    assert packages["7-Zip 23.01 (x64 edition)"].install_date == "20240115"


def test_pending_reboot_names_every_flag(
    workstation: RecordedRegistry, clean: RecordedRegistry
) -> None:
    flags = parse.pending_reboot_flags(workstation)
    assert flags == [
        "Component Based Servicing\\RebootPending",
        "WindowsUpdate\\Auto Update\\RebootRequired",
        "WindowsUpdate\\Services\\Pending",
        "Session Manager\\PendingFileRenameOperations",
        "Updates\\UpdateExeVolatile",
        "Netlogon\\JoinDomain (domain join)",
        "ComputerName renamed PC-042 -> PC-042-NEW",
    ]
    assert parse.pending_reboot_flags(clean) == []


def test_failed_services_are_automatic_and_not_running() -> None:
    services = json.loads(recorded("windows/services.json"))
    failed = parse.failed_services(services)
    # gupdate stops by design; wuauserv is manual; BITS is disabled.
    assert [(s.name, s.state) for s in failed] == [("Spooler", "stopped"), ("CcmExec", "stopped")]
    assert failed[0].display_name == "Print Spooler"


def test_powercfg_battery_report() -> None:
    capacity = parse.powercfg_battery(recorded("windows/battery_report.xml"))
    assert capacity is not None
    assert (capacity.design_mwh, capacity.full_mwh, capacity.cycle_count) == (57000, 31350, 612)
