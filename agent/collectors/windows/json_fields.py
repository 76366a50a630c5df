"""Reading the Windows collection's JSON without trusting it: every field's type and size is
checked as it is read, and the first thing wrong is a Malformed that says where and what.

The document comes from a machine (over WinRM, or a PowerShell the agent started), so a
field may be missing, of another type, or huge. ConvertTo-Json writes a one-element list as
its element, so a list field also takes a single object.
"""

from __future__ import annotations

from datetime import UTC, datetime

MAX_TEXT = 8192  # a registry value, an event message's first line, a command's output line
MAX_ITEMS = 5000


class Malformed(Exception):
    """A section of the document cannot be read; the message says where and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _shown(value: float) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:20] + "..."


def items_of(value: object, where: str, limit: int = MAX_ITEMS) -> list[object]:
    """A JSON list (or one element written alone); [] for null."""
    if value is None:
        return []
    found = value if isinstance(value, list) else [value]
    if len(found) > limit:
        raise Malformed(f"{where} has {len(found)} entries, more than the {limit} accepted")
    return found


class Fields:
    """One JSON object of the document, read field by field."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise Malformed(f"{where} is {kind(value)}, not an object")
        self.value: dict[str, object] = value
        self.where = where

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}"

    def text(self, key: str, limit: int = MAX_TEXT) -> str:
        """Text, "" when missing or null; a number is taken as its digits."""
        value = self.value.get(key)
        if value is None:
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise Malformed(f"{self._at(key)} is {kind(value)}, not text")
        if len(value) > limit:
            raise Malformed(f"{self._at(key)} is {len(value)} characters long, over {limit}")
        return value.strip()

    def integer(self, key: str, low: int = 0, high: int = 2**63 - 1) -> int | None:
        """A whole number within [low, high]; None when missing or null."""
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**63:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Malformed(f"{self._at(key)} is {kind(value)}, not a whole number")
        if not low <= value <= high:
            raise Malformed(f"{self._at(key)} is {_shown(value)}, outside {low}..{high}")
        return value

    def number(self, key: str, low: float, high: float) -> float | None:
        value = self.value.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Malformed(f"{self._at(key)} is {kind(value)}, not a number")
        if not low <= value <= high:
            raise Malformed(f"{self._at(key)} is {_shown(value)}, outside {low:g}..{high:g}")
        return float(value)

    def flag(self, key: str) -> bool | None:
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise Malformed(f"{self._at(key)} is {kind(value)}, not true/false")
        return value

    def when(self, key: str) -> datetime | None:
        """An ISO 8601 time (the script writes UTC, "o" format); None when missing or null."""
        raw = self.text(key, limit=64)
        if not raw:
            return None
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as error:
            raise Malformed(f"{self._at(key)} is {raw!r}, not an ISO 8601 time") from error
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        try:  # "0001-01-01T00:00:00+01:00" is before the first time Python holds in UTC
            return moment.astimezone(UTC)
        except OverflowError:
            raise Malformed(f"{self._at(key)} is {raw!r}, outside the times UTC holds") from None

    def items(self, key: str, limit: int = MAX_ITEMS) -> list[object]:
        return items_of(self.value.get(key), self._at(key), limit)

    def objects(self, key: str, limit: int = MAX_ITEMS) -> list[Fields]:
        return [
            Fields(item, f"{self._at(key)}[{index}]")
            for index, item in enumerate(self.items(key, limit))
        ]

    def texts(self, key: str, limit: int = MAX_ITEMS) -> list[str]:
        where = self._at(key)
        found = []
        for index, item in enumerate(self.items(key, limit)):
            one = Fields({"v": item}, f"{where}[{index}]")
            found.append(one.text("v"))
        return [text for text in found if text]

    def child(self, key: str) -> Fields | None:
        value = self.value.get(key)
        return None if value is None else Fields(value, self._at(key))
