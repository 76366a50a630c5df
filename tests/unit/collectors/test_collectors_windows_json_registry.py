"""The registry as collect.ps1 dumps it answers parse.py as the live registry does: the same
recorded `reg export` files, read directly and through their JSON dump, give the same OS
release, software, pending-reboot flags, proxy and DNS servers; and every key parse.py reads
is one the script dumps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sonde.agent.collectors.windows import parse
from sonde.agent.collectors.windows.json_fields import Fields
from sonde.agent.collectors.windows.json_registry import JsonRegistry
from tests.unit.collectors.recorded_outputs import RecordedRegistry, recorded

SCRIPT = Path(__file__).resolve().parents[3] / "agent" / "collectors" / "windows" / "collect.ps1"


def dumped(registry: RecordedRegistry) -> JsonRegistry:
    """The dump collect.ps1 writes of these keys: text, numbers and multi-strings only."""
    keys = {}
    for path, values in registry.keys.items():
        name = "\\".join([*path.split("\\")[:-1], registry.names[path]])
        keys[name] = {
            "values": {k: v for k, v in values.items() if not isinstance(v, bytes)},
            "subkeys": registry.subkeys(path),
        }
    return JsonRegistry(Fields({"keys": keys}, "section registry"))


@pytest.mark.parametrize("export", ["windows/workstation.reg", "windows/clean.reg"])
def test_the_dump_gives_what_the_registry_gives(export: str) -> None:
    live = RecordedRegistry(recorded(export))
    dump = dumped(live)
    assert parse.os_release(dump) == parse.os_release(live)
    assert parse.cpu_model(dump) == parse.cpu_model(live)
    assert parse.installed_software(dump) == parse.installed_software(live)
    assert parse.pending_reboot_flags(dump) == parse.pending_reboot_flags(live)
    assert parse.proxy_settings(dump) == parse.proxy_settings(live)
    assert parse.dns_servers(dump) == parse.dns_servers(live)
    assert parse.os_release(dump).version  # the exports are not empty


def test_every_key_parse_reads_is_one_the_script_dumps() -> None:
    script = SCRIPT.read_text(encoding="utf-8").lower()
    source = Path(parse.__file__).read_text(encoding="utf-8")
    paths = re.findall(r'r"((?:HKLM|HKU|Software)\\[^"{}]+)"', source)
    assert len(paths) == 12
    for path in paths:
        assert path.lower() in script, path
