"""What changed between two diagnostics of one machine: facts and findings.

Facts are compared as flat paths ("memory.used_percent", "disks.volumes[/home].free_bytes"):
a list of messages is keyed by each element's name-like field, so a disk or an interface is
compared with itself, not with whatever sits at the same position. The collection's own
bookkeeping (when, how long, which collectors ran) is left out.

What moves at every collection is left out too unless asked for (`everything`): counters
(disk and network I/O), load and per-core figures, the top processes, the uptime; and a size
or a percentage that moved by less than GAUGE_MOVE of itself. A finding whose severity stayed
the same counts only when it is not OK and its summary changed (disk 91% full -> 97% full).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from sonde.v1 import diagnostics_pb2

# Fields of the collection itself, not of the machine.
_BOOKKEEPING = frozenset({"agent_id", "collected_at", "duration_ms", "collectors"})
# The fields a list element is known by, in order of preference.
_KEYS = ("name", "mount_point", "mountpoint", "device", "id", "pid", "check")
# Facts that move at every collection: left out unless everything is asked for.
_MOVING_PREFIXES = ("processes.", "cpu.load_", "cpu.per_core_percent", "cpu.percent", "disks.io[")
_MOVING_NAMES = frozenset(
    {
        "uptime_s",
        "uptime_seconds",
        "bytes_sent",
        "bytes_received",
        "packets_sent",
        "packets_received",
    }
)
_GAUGE_SUFFIXES = ("_bytes", "_percent")
GAUGE_MOVE = 0.05  # a size or a percentage must move by 5 % of itself to count


@dataclass(frozen=True)
class FactChange:
    path: str
    before: str  # "" when the fact is new
    after: str  # "" when it is gone


@dataclass(frozen=True)
class FindingChange:
    check: str
    change: str  # "new", "cleared", "worse", "better", "changed"
    before: diagnostics_pb2.Finding | None
    after: diagnostics_pb2.Finding | None


def _flat(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if path or key not in _BOOKKEEPING:
                yield from _flat(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            label = next(
                (str(inner[key]) for key in _KEYS if isinstance(inner, dict) and inner.get(key)),
                str(index),
            )
            yield from _flat(inner, f"{path}[{label}]")
    else:
        yield path, str(value)


def facts(snapshot: diagnostics_pb2.Snapshot) -> dict[str, str]:
    data = MessageToDict(snapshot, preserving_proto_field_name=True)
    return dict(_flat(data, ""))


@dataclass(frozen=True)
class FactChanges:
    changes: list[FactChange]
    left_out: int  # changes of facts that move at every collection, not listed


def _moves_anyway(path: str, before: str | None, after: str | None) -> bool:
    """A change that says nothing: a counter, a per-process figure, or a gauge's jitter."""
    name = path.rsplit(".", 1)[-1]
    if path.startswith(_MOVING_PREFIXES) or name in _MOVING_NAMES:
        return True
    if before is None or after is None or not name.endswith(_GAUGE_SUFFIXES):
        return False
    try:
        was, now = float(before), float(after)
    except ValueError:
        return False
    return abs(now - was) < GAUGE_MOVE * max(abs(was), abs(now))


def fact_changes(
    before: diagnostics_pb2.Snapshot,
    after: diagnostics_pb2.Snapshot,
    *,
    everything: bool = False,
) -> FactChanges:
    old, new = facts(before), facts(after)
    changes, left_out = [], 0
    for path in sorted(old.keys() | new.keys()):
        was, now = old.get(path), new.get(path)
        if was == now:
            continue
        if not everything and _moves_anyway(path, was, now):
            left_out += 1
            continue
        changes.append(FactChange(path, was or "", now or ""))
    return FactChanges(changes, left_out)


def finding_changes(
    before: list[diagnostics_pb2.Finding], after: list[diagnostics_pb2.Finding]
) -> list[FindingChange]:
    old = {finding.check: finding for finding in before}
    new = {finding.check: finding for finding in after}
    changes = []
    for check in sorted(old.keys() | new.keys()):
        was, now = old.get(check), new.get(check)
        if was is None:
            changes.append(FindingChange(check, "new", None, now))
        elif now is None:
            changes.append(FindingChange(check, "cleared", was, None))
        elif now.severity != was.severity:
            kind = "worse" if now.severity > was.severity else "better"
            changes.append(FindingChange(check, kind, was, now))
        elif now.summary != was.summary and now.severity > diagnostics_pb2.SEVERITY_OK:
            changes.append(FindingChange(check, "changed", was, now))
    return changes
