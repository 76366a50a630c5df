"""A read-only view of the Windows registry, so parsing can be tested on recorded exports.

Paths are full, hive first: "HKLM\\SOFTWARE\\Microsoft\\...", "HKU\\S-1-5-21-...\\...".
"""

from __future__ import annotations

from typing import Protocol

RegistryValue = str | int | list[str] | bytes


class RegistryView(Protocol):
    def values(self, path: str) -> dict[str, RegistryValue] | None:
        """The key's values by name ("" for the default value); None when the key is absent."""
        ...

    def subkeys(self, path: str) -> list[str]:
        """Names of the key's direct subkeys; [] when the key is absent."""
        ...
