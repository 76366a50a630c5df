"""Reading recorded OS outputs, and a RegistryView over a recorded `reg export` file."""

from __future__ import annotations

import re
from pathlib import Path

from sonde.agent.collectors.windows.registry_view import RegistryValue

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "recorded"
_HIVES = {"HKEY_LOCAL_MACHINE": "HKLM", "HKEY_USERS": "HKU"}


def recorded(relative: str) -> str:
    return (RECORDED / relative).read_text(encoding="utf-8")


def _decode(raw: str) -> RegistryValue:
    if raw.startswith('"'):
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw.startswith("dword:"):
        return int(raw[6:], 16)
    kind, _, data = raw.partition(":")
    octets = bytes(int(b, 16) for b in data.replace("\\", "").replace(" ", "").split(",") if b)
    if kind == "hex(7)":  # REG_MULTI_SZ, UTF-16LE, NUL separated
        return [s for s in octets.decode("utf-16-le").split("\x00") if s]
    if kind == "hex(2)":  # REG_EXPAND_SZ
        return octets.decode("utf-16-le").rstrip("\x00")
    return octets


class RecordedRegistry:
    """The keys and values of a .reg export, answering like the live registry would."""

    def __init__(self, text: str) -> None:
        # Lower-cased full path -> values, and -> the key's own name as exported.
        self.keys: dict[str, dict[str, RegistryValue]] = {}
        self.names: dict[str, str] = {}
        current: dict[str, RegistryValue] | None = None
        for raw_line in text.replace("\\\n", "").splitlines():  # join continued hex lines
            line = raw_line.strip()
            header = re.fullmatch(r"\[(\w+)\\(.*)\]", line)
            if header:
                parts = [_HIVES[header.group(1)], *header.group(2).split("\\")]
                for end in range(1, len(parts) + 1):
                    path = "\\".join(parts[:end]).lower()
                    self.keys.setdefault(path, {})
                    self.names.setdefault(path, parts[end - 1])
                current = self.keys["\\".join(parts).lower()]
                continue
            value = re.fullmatch(r'("(?:[^"\\]|\\.)*"|@)=(.*)', line)
            if value and current is not None:
                name = "" if value.group(1) == "@" else value.group(1)[1:-1]
                current[name] = _decode(value.group(2))

    def values(self, path: str) -> dict[str, RegistryValue] | None:
        found = self.keys.get(path.lower())
        return None if found is None else dict(found)

    def subkeys(self, path: str) -> list[str]:
        prefix = path.lower() + "\\"
        return sorted(
            self.names[k]
            for k in self.keys
            if k.startswith(prefix) and "\\" not in k[len(prefix) :]
        )
