"""The Windows collection's document (collect.ps1's one JSON output) into Snapshot facts.

Two callers: the agent on Windows, which runs the script itself, and the server, which runs
it over WinRM on a machine without the agent. Neither trusts the document: it is bounded in
size, each section is read on its own, and a section that is missing, that the script could
not read (its `errors`), or that is malformed makes the collectors it feeds 'unavailable'
with the reason, never an exception. Unknown keys are ignored and copied nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources

from google.protobuf.message import Message

from sonde.agent.collectors.snapshot_fields import copy_fields
from sonde.agent.collectors.windows import sections
from sonde.agent.collectors.windows.json_fields import Fields, Malformed
from sonde.agent.collectors.windows.json_registry import JsonRegistry
from sonde.v1 import diagnostics_pb2

SCHEMA = "sonde.windows.collect/1"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_MAX_REASON = 300

# Snapshot field (and collector name) -> the sections of the document it is read from.
FIELD_SECTIONS: dict[str, tuple[str, ...]] = {
    "system": ("registry", "system"),
    "memory": ("memory",),
    "disks": ("volumes",),
    "software": ("registry",),
    "updates": ("registry",),
    "services": ("services",),
    "network": ("network",),
    "battery": ("battery",),
    "windows_update": ("windows_update",),
    "antivirus": ("defender",),
    "encryption": ("bitlocker",),
    "event_log": ("event_log",),
    "printing": ("printing",),
    "time_sync": ("time_sync",),
    "wifi": ("wifi",),
    "disk_health": ("disk_health",),
}
# The fields only this document gives on Windows (the agent reads the others natively).
WINDOWS_ONLY_FIELDS = (
    "windows_update",
    "antivirus",
    "encryption",
    "event_log",
    "printing",
    "time_sync",
    "wifi",
    "disk_health",
)

_Reader = Callable[[dict[str, Fields], JsonRegistry | None], Message]
_READERS: dict[str, _Reader] = {
    # system is read apart: it needs the document's collected_at (uptime).
    "memory": lambda s, r: sections.memory(s["memory"]),
    "disks": lambda s, r: sections.disks(s["volumes"]),
    "software": lambda s, r: sections.software(_need(r)),
    "updates": lambda s, r: sections.updates(_need(r)),
    "services": lambda s, r: sections.services(s["services"]),
    "network": lambda s, r: sections.network(s["network"], r),
    "battery": lambda s, r: sections.battery(s["battery"]),
    "windows_update": lambda s, r: sections.windows_update(s["windows_update"]),
    "antivirus": lambda s, r: sections.antivirus(s["defender"]),
    "encryption": lambda s, r: sections.encryption(s["bitlocker"]),
    "event_log": lambda s, r: sections.event_log(s["event_log"]),
    "printing": lambda s, r: sections.printing(s["printing"]),
    "time_sync": lambda s, r: sections.time_sync(s["time_sync"]),
    "wifi": lambda s, r: sections.wifi(s["wifi"]),
    "disk_health": lambda s, r: sections.disk_health(s["disk_health"]),
}


def _need(registry: JsonRegistry | None) -> JsonRegistry:
    if registry is None:  # _facts checks the registry section first; kept for the type
        raise Malformed("the registry section is missing")
    return registry


@dataclass
class WindowsFacts:
    """What one document gave: facts by Snapshot field, and why the others are missing."""

    facts: dict[str, Message] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    collected_at: datetime | None = None

    def into(self, snapshot: diagnostics_pb2.Snapshot, fields: tuple[str, ...] = ()) -> None:
        """Copy the facts (of `fields`, or all) into the snapshot, one report per field; the
        document's collected_at (the machine's clock) when the snapshot has none."""
        if self.collected_at is not None and not snapshot.HasField("collected_at"):
            snapshot.collected_at.FromDatetime(self.collected_at)
        names = fields or tuple(FIELD_SECTIONS)
        missing = "the collection did not give it"
        copy_fields(snapshot, names, self.facts, self.unavailable, missing=missing)


def collection_script() -> bytes:
    """collect.ps1 as shipped: the same bytes the agent runs and the server sends over WinRM."""
    return resources.files(__package__).joinpath("collect.ps1").read_bytes()


def _short(reason: str) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _everything_unavailable(reason: str) -> WindowsFacts:
    return WindowsFacts(unavailable=dict.fromkeys(FIELD_SECTIONS, _short(reason)))


def _section_errors(envelope: Fields) -> dict[str, str]:
    """What the script says it could not read, by section ("Get-BitLockerVolume: ...")."""
    try:
        errors = envelope.child("errors")
        if errors is None:
            return {}
        return {name[:80]: errors.text(name, limit=4096) for name in errors.value}
    except Malformed as malformed:
        return {"*": malformed.reason}


def windows_facts(document: str | bytes) -> WindowsFacts:
    """Every fact the document gives; each missing or malformed one said with its reason."""
    if len(document) > MAX_DOCUMENT_BYTES:
        return _everything_unavailable(
            f"the collection is {len(document)} bytes, more than the "
            f"{MAX_DOCUMENT_BYTES // 2**20} MiB accepted"
        )
    if isinstance(document, str):
        document = document.removeprefix("\ufeff")  # a UTF-8 console may write a BOM
    try:
        envelope = Fields(json.loads(document), "the collection")
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, huge numbers
        return _everything_unavailable(f"the collection is not JSON: {error}")
    except Malformed as malformed:
        return _everything_unavailable(malformed.reason)
    try:
        schema = envelope.text("schema", limit=100)
        found = envelope.child("sections")
        result = WindowsFacts(collected_at=envelope.when("collected_at"))
    except Malformed as malformed:
        return _everything_unavailable(malformed.reason)
    if schema != SCHEMA:
        return _everything_unavailable(
            f"the collection says schema {schema[:40]!r}, not {SCHEMA!r}: run the script "
            "shipped with this version"
        )
    errors = _section_errors(envelope)
    present: dict[str, Fields] = {}
    broken: dict[str, str] = {}
    for name in {s for group in FIELD_SECTIONS.values() for s in group}:
        if name in errors or "*" in errors:
            said = errors.get(name) or errors["*"]
            broken[name] = f"the machine could not read it: {said}"
        elif found is None or found.value.get(name) is None:
            broken[name] = f"the collection has no {name!r} section"
        else:
            try:
                present[name] = Fields(found.value[name], f"section {name}")
            except Malformed as malformed:
                broken[name] = malformed.reason
    registry = None
    if "registry" in present:
        try:
            registry = JsonRegistry(present["registry"])
        except Malformed as malformed:
            broken["registry"] = malformed.reason
    for name, needs in FIELD_SECTIONS.items():
        missing = [s for s in needs if s in broken]
        if missing:
            result.unavailable[name] = _short(f"{missing[0]}: {broken[missing[0]]}")
            continue
        try:
            facts: Message
            if name == "system":
                facts = sections.system(_need(registry), present["system"], result.collected_at)
            else:
                facts = _READERS[name](present, registry)
            result.facts[name] = facts
        except Malformed as malformed:
            result.unavailable[name] = _short(f"{needs[-1]}: {malformed.reason}")
    return result
