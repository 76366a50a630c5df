"""macOS parsers on recorded outputs: route, scutil, ioreg, launchctl, system_profiler."""

from __future__ import annotations

import pytest

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import parse
from tests.unit.collectors.recorded_outputs import recorded


def test_route_get_default() -> None:
    route = parse.route_get_default(recorded("macos/route_get_default.txt"))
    assert route is not None
    assert (route.gateway, route.interface) == ("192.168.178.1", "en0")
    assert parse.route_get_default(recorded("macos/route_get_default_none.txt")) is None


def test_scutil_dns_reads_main_resolvers_not_scoped_ones() -> None:
    servers = parse.scutil_dns_servers(recorded("macos/scutil_dns.txt"))
    assert servers == ["192.168.178.1", "fd00::3a10:d5ff:fe6c:1"]


def test_scutil_proxy() -> None:
    proxy = parse.scutil_proxy(recorded("macos/scutil_proxy.txt"))
    assert proxy is not None
    assert proxy.http_proxy == proxy.https_proxy == "proxy.corp.example.com:3128"
    assert proxy.auto_config_url == "http://wpad.corp.example.com/wpad.dat"
    assert proxy.no_proxy == "*.local,169.254/16,*.corp.example.com"
    assert proxy.source == "scutil"
    assert parse.scutil_proxy(recorded("macos/scutil_proxy_none.txt")) is None


def test_ioreg_battery_uses_raw_mah_and_voltage() -> None:
    capacity = parse.ioreg_battery(recorded("macos/ioreg_battery.txt"))
    assert capacity is not None
    # 6075 mAh and 5103 mAh at 12.741 V
    assert capacity.design_mwh == 6075 * 12741 // 1000
    assert capacity.full_mwh == 5103 * 12741 // 1000
    assert capacity.cycle_count == 318


def test_ioreg_without_battery() -> None:
    assert parse.ioreg_battery("") is None


def test_launchctl_failed_jobs() -> None:
    failed, total = parse.launchctl_failed(recorded("macos/launchctl_list.txt"))
    assert total == 7
    assert [(s.name, s.detail) for s in failed] == [
        ("com.corp.vpnhelper", "last exit status 78"),
        ("com.apple.mdworker.shared.0B000000-0000-0000-0000-000000000000", "killed by signal 9"),
        ("com.microsoft.OneDrive.FinderSync", "last exit status 1"),
    ]


def test_system_profiler_apps() -> None:
    packages = parse.system_profiler_apps(recorded("macos/system_profiler_apps.json"))
    assert [(p.name, p.version, p.publisher) for p in packages] == [
        ("Safari", "17.5", "apple"),
        ("Microsoft Teams", "24124.1412.2911.3341", "identified_developer"),
        ("Xcode", "15.3", "mac_app_store"),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 200_000, "system_profiler's report is nested too deeply"),
        ("[1, 2]", "system_profiler's report is not a JSON object"),
        ("Bad Gateway", "system_profiler gave no JSON report"),
    ],
)
def test_an_application_list_that_is_no_report_says_why(text: str, reason: str) -> None:
    with pytest.raises(CollectorUnavailable) as unavailable:
        parse.system_profiler_apps(text)
    assert unavailable.value.reason.startswith(reason)


@pytest.mark.parametrize(
    "text",
    [
        '{"SPApplicationsDataType": [1, "Safari", null, {"_name": {"x": 1}}]}',
        '{"SPApplicationsDataType": "Safari"}',
    ],
)
def test_a_hostile_application_list_gives_no_package(text: str) -> None:
    assert parse.system_profiler_apps(text) == []


def test_an_application_list_keeps_only_text_values() -> None:
    text = '{"SPApplicationsDataType": [{"_name": "Safari", "version": {"a": 1}}, 7]}'
    (safari,) = parse.system_profiler_apps(text)
    assert (safari.name, safari.version) == ("Safari", "")
