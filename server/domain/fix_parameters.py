"""A fix's parameters, taken from the finding it fixes and the snapshot it came from: the failed
service `services.failed` names, the busiest process under `memory.pressure` or
`cpu.saturation`. One table, keyed by the check and the manifest's parameter name, so a fix
whose parameter cannot be found there says which one to give instead of guessing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sonde.catalog.manifest import Manifest
from sonde.server.errors import InvalidArgument
from sonde.v1 import diagnostics_pb2

Derive = Callable[[diagnostics_pb2.Finding, diagnostics_pb2.Snapshot], tuple[str, str] | None]


@dataclass(frozen=True)
class FixParameters:
    values: dict[str, str]  # as text, checked against the manifest by the run itself
    sources: dict[str, str]  # name -> where its value came from, for the technician


def _failed_service(
    finding: diagnostics_pb2.Finding, snapshot: diagnostics_pb2.Snapshot
) -> tuple[str, str] | None:
    failed = [service.name for service in snapshot.services.failed if service.name]
    if len(failed) == 1:
        return failed[0], "the failed service the finding names"
    if len(failed) > 1:
        raise InvalidArgument(
            f"{finding.check} names {len(failed)} services ({', '.join(failed[:5])}): say which "
            "one to restart with --param"
        )
    return None


def _top(snapshot: diagnostics_pb2.Snapshot, by: str) -> diagnostics_pb2.ProcessInfo | None:
    facts = snapshot.processes
    ranked = facts.top_by_memory if by == "memory" else facts.top_by_cpu
    return ranked[0] if ranked else None


def _busiest(by: str, field: str) -> Derive:
    """The id or name of the snapshot's busiest process by memory or CPU."""

    def derive(
        finding: diagnostics_pb2.Finding, snapshot: diagnostics_pb2.Snapshot
    ) -> tuple[str, str] | None:
        top = _top(snapshot, by)
        if top is None or not top.name:
            return None
        value = str(top.pid) if field == "id" else top.name
        return value, f"the busiest process by {by} ({top.name}, pid {top.pid})"

    return derive


# (check, parameter) -> how to find its value.
_FROM_EVIDENCE: Mapping[tuple[str, str], Derive] = {
    ("services.failed", "unit"): _failed_service,
    ("services.failed", "service_name"): _failed_service,
    ("memory.pressure", "process_id"): _busiest("memory", "id"),
    ("memory.pressure", "process_name"): _busiest("memory", "name"),
    ("cpu.saturation", "process_id"): _busiest("cpu", "id"),
    ("cpu.saturation", "process_name"): _busiest("cpu", "name"),
}


def fix_parameters(
    manifest: Manifest,
    finding: diagnostics_pb2.Finding,
    snapshot: diagnostics_pb2.Snapshot,
    given: Mapping[str, str],
) -> FixParameters:
    """The values to run `manifest` with for `finding`: what the technician gave, else what
    the finding's snapshot shows, else the manifest's default. A required parameter found
    nowhere is refused, naming it."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for parameter in manifest.parameters:
        name = parameter.name
        if name in given:
            values[name], sources[name] = given[name], "given"
            continue
        derive = _FROM_EVIDENCE.get((finding.check, name))
        found = derive(finding, snapshot) if derive is not None else None
        if found is not None:
            values[name], sources[name] = found
        elif parameter.default is not None:
            sources[name] = "the script's default"
        elif parameter.required:
            raise InvalidArgument(
                f"{manifest.id} needs {name} ({parameter.description}), which the "
                f"{finding.check} finding does not show: give --param {name}=VALUE"
            )
    unknown = sorted(set(given) - {parameter.name for parameter in manifest.parameters})
    for name in unknown:  # the run refuses them, saying which parameters there are
        values[name], sources[name] = given[name], "given"
    return FixParameters(values, sources)
