"""`softwareupdate --list` into UpdateFacts: each update macOS offers and has not installed.

    * Label: macOS Sonoma 14.6-23G80   (the next line starts with a tab)
        Title: macOS Sonoma 14.6, Version: 14.6, Size: 1056768KiB, Recommended: YES, Action: restart

"No new software available." (on stderr) is the answer with nothing pending. Anything else
(a network error, a truncated listing, text of another tool) is refused as unavailable, so a
listing that cannot be read is never taken for "up to date".
"""

from __future__ import annotations

import re

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.v1 import diagnostics_pb2

SOURCE = "softwareupdate"
_NOTHING = "No new software available."
_FOUND = "Software Update found the following new or updated software:"
_LABEL = re.compile(r"^\s*\*\s*Label:\s*(?P<label>.+?)\s*$")
# Fields are "Key: value," where a title may itself hold commas: split before known keys.
_FIELD = re.compile(r",\s*(?=(?:Version|Size|Recommended|Action|Title):)")
_SIZE = re.compile(r"^(\d{1,30})\s*(KiB|K|MiB|M)?$")
_MAX_UPDATES = 200
MAX_SIZE_KIB = 2**63 - 1
_MAX_TEXT = 200


def _fields(line: str) -> dict[str, str]:
    fields = {}
    for part in _FIELD.split(line.strip().rstrip(",").strip()):
        key, sep, value = part.partition(":")
        if sep:
            fields[key.strip()] = value.strip().rstrip(",").strip()[:_MAX_TEXT]
    return fields


def _size_kib(text: str) -> int:
    match = _SIZE.match(text.replace(",", ""))
    if match is None:
        return 0
    number = int(match.group(1)) * (1024 if match.group(2) in ("MiB", "M") else 1)
    return number if number <= MAX_SIZE_KIB else 0  # a size no counter holds is not believed


def pending_updates(text: str) -> list[diagnostics_pb2.PendingUpdate]:
    """The updates listed; CollectorUnavailable when the text is not a listing."""
    if _NOTHING in text:
        return []
    if _FOUND not in text:
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        said = f": {last[:_MAX_TEXT]!r}" if last else " (no output)"
        raise CollectorUnavailable(f"softwareupdate gave no list of updates{said}")
    updates: list[diagnostics_pb2.PendingUpdate] = []
    label = ""
    for line in text.split(_FOUND, 1)[1].splitlines():
        match = _LABEL.match(line)
        if match:
            label = match.group("label")[:_MAX_TEXT]
            continue
        fields = _fields(line)
        if not label or "Title" not in fields:
            continue
        updates.append(
            diagnostics_pb2.PendingUpdate(
                title=fields["Title"],
                version=fields.get("Version", ""),
                label=label,
                recommended=fields.get("Recommended", "").upper() == "YES",
                restart_required=fields.get("Action", "").lower() in ("restart", "shut down"),
                size_kib=_size_kib(fields.get("Size", "")),
            )
        )
        label = ""
        if len(updates) >= _MAX_UPDATES:
            break
    if not updates:
        raise CollectorUnavailable(
            "softwareupdate said it found updates but listed none that could be read"
        )
    return updates


def update_facts(text: str) -> diagnostics_pb2.UpdateFacts:
    """UpdateFacts from a listing: every update, how many, the security responses among them.

    macOS keeps no "restart pending" flag apart from its updates: reboot_required stays
    false, and a restart an update needs is on that update (restart_required)."""
    updates = pending_updates(text)
    security = [u for u in updates if "security" in u.title.lower()]
    return diagnostics_pb2.UpdateFacts(
        source=SOURCE,
        pending=updates,
        pending_updates=len(updates),
        pending_security_updates=len(security),
        pending_updates_known=True,
    )
