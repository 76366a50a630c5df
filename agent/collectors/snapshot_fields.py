"""Facts read from recorded outputs into a Snapshot, one CollectorReport per field: the one
way the macOS outputs and the Windows collection document fill a snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.message import Message

from sonde.v1 import diagnostics_pb2

_State = diagnostics_pb2.CollectorState


def copy_fields(
    snapshot: diagnostics_pb2.Snapshot,
    names: Iterable[str],
    facts: Mapping[str, Message],
    unavailable: Mapping[str, str],
    *,
    missing: str,
) -> None:
    """Each named field's facts into `snapshot` with an OK report, or an unavailable report
    with its reason (`missing` when there is none)."""
    for name in names:
        if name in facts:
            getattr(snapshot, name).CopyFrom(facts[name])
            snapshot.collectors.add(name=name, state=_State.COLLECTOR_STATE_OK)
        else:
            snapshot.collectors.add(
                name=name,
                state=_State.COLLECTOR_STATE_UNAVAILABLE,
                reason=unavailable.get(name, missing),
            )
