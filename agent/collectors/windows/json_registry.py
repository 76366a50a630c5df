"""A RegistryView over the registry keys the collection script dumped, so the same parsers
(installed software, pending reboot flags, the user's proxy, the OS release) read the live
registry on the agent and the JSON from a machine reached over WinRM.

The dump is {"keys": {"HKLM\\...": {"values": {name: value}, "subkeys": [names]}}}; a value
is text, a whole number or a list of text (binary values are not dumped). Paths compare
case-insensitively, as the registry's do.
"""

from __future__ import annotations

from sonde.agent.collectors.windows.json_fields import MAX_TEXT, Fields, Malformed, kind
from sonde.agent.collectors.windows.registry_view import RegistryValue

MAX_KEYS = 20000
MAX_PATH = 1024
MAX_VALUES = 1000
MAX_LIST = 4096


def _value(raw: object, where: str) -> RegistryValue:
    if isinstance(raw, str):
        if len(raw) > MAX_TEXT:
            raise Malformed(f"{where} is {len(raw)} characters long, over {MAX_TEXT}")
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not -(2**63) <= raw < 2**64:
            raise Malformed(f"{where} is {raw}, not a registry number")
        return raw
    if isinstance(raw, list):
        if len(raw) > MAX_LIST:
            raise Malformed(f"{where} has {len(raw)} strings, more than {MAX_LIST}")
        strings: list[str] = []
        for index, item in enumerate(raw):
            if not isinstance(item, str) or len(item) > MAX_TEXT:
                raise Malformed(f"{where}[{index}] is {kind(item)}, not text of a multi-string")
            strings.append(item)
        return strings
    raise Malformed(f"{where} is {kind(raw)}, not text, a number or a list of text")


class JsonRegistry:
    """The dumped keys, answering like the live registry would (RegistryView)."""

    def __init__(self, section: Fields) -> None:
        keys = section.child("keys")
        if keys is None:
            raise Malformed(f"{section.where} has no keys")
        if len(keys.value) > MAX_KEYS:
            raise Malformed(f"{keys.where} has {len(keys.value)} keys, more than {MAX_KEYS}")
        self._values: dict[str, dict[str, RegistryValue]] = {}
        self._subkeys: dict[str, list[str]] = {}
        for path, raw in keys.value.items():
            if len(path) > MAX_PATH or not path.upper().startswith(("HKLM", "HKU")):
                raise Malformed(f"{keys.where} has a key {path[:80]!r} outside HKLM and HKU")
            key = Fields(raw, f"registry key {path[:200]}")
            values = key.child("values")
            found: dict[str, RegistryValue] = {}
            if values is not None:
                if len(values.value) > MAX_VALUES:
                    raise Malformed(f"{values.where} has more than {MAX_VALUES} values")
                for name, value in values.value.items():
                    found[name[:MAX_PATH]] = _value(value, f"{values.where}[{name[:80]!r}]")
            self._values[path.lower()] = found
            self._subkeys[path.lower()] = key.texts("subkeys", limit=MAX_KEYS)

    def values(self, path: str) -> dict[str, RegistryValue] | None:
        return self._values.get(path.lower())

    def subkeys(self, path: str) -> list[str]:
        return list(self._subkeys.get(path.lower(), []))
