"""The live RegistryView over winreg, always in the 64-bit view (32-bit keys: WOW6432Node)."""

from __future__ import annotations

import sys

from sonde.agent.collectors.windows.registry_view import RegistryValue

_NOT_WINDOWS = "the Windows registry exists only on Windows"


class WinregView:
    def values(self, path: str) -> dict[str, RegistryValue] | None:
        if sys.platform != "win32":
            raise RuntimeError(_NOT_WINDOWS)
        import winreg

        hive, _, subkey = path.partition("\\")
        root = winreg.HKEY_USERS if hive == "HKU" else winreg.HKEY_LOCAL_MACHINE
        try:
            key = winreg.OpenKey(root, subkey, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
        except OSError:
            return None  # absent or not ours to read: both mean "no such flag" to a parser
        found: dict[str, RegistryValue] = {}
        with key:
            index = 0
            while True:
                try:
                    name, value, _kind = winreg.EnumValue(key, index)
                except OSError:
                    return found
                if isinstance(value, str | int | bytes | list):
                    found[name] = value
                index += 1

    def subkeys(self, path: str) -> list[str]:
        if sys.platform != "win32":
            raise RuntimeError(_NOT_WINDOWS)
        import winreg

        hive, _, subkey = path.partition("\\")
        root = winreg.HKEY_USERS if hive == "HKU" else winreg.HKEY_LOCAL_MACHINE
        try:
            key = winreg.OpenKey(root, subkey, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)
        except OSError:
            return []
        names = []
        with key:
            index = 0
            while True:
                try:
                    names.append(winreg.EnumKey(key, index))
                except OSError:
                    return names
                index += 1
