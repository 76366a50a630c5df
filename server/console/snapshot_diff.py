"""What changed between two diagnostics of one machine: facts and findings.

Facts are compared as flat paths ("memory.used_percent", "disks.volumes[/home].free_bytes"):
a list of messages is keyed by each element's name-like field, so a disk or an interface is
compared with itself, not with whatever sits at the same position. The collection's own
bookkeeping (when, how long, which collectors ran) is left out.
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


def fact_changes(
    before: diagnostics_pb2.Snapshot, after: diagnostics_pb2.Snapshot
) -> list[FactChange]:
    old, new = facts(before), facts(after)
    return [
        FactChange(path, old.get(path, ""), new.get(path, ""))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]


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
        elif now.summary != was.summary:
            changes.append(FindingChange(check, "changed", was, now))
    return changes
