"""A Mac's command outputs into Snapshot facts, field by field, as the agent's macOS
collectors read them: system_profiler's report, `pmset -g batt`, `softwareupdate --list`,
`sw_vers` and `fdesetup status`.

Each output is optional and untrusted: one that is missing, truncated or garbage makes the
fields it feeds unavailable with the reason (a CollectorReport), never an exception, and
never a fact made up to fill the gap (a listing that cannot be read is not "up to date").
The agent reads these on the Mac itself (parts.py); tests read recorded outputs
(tests/fixtures/macos/); anything that reaches a Mac by a shell can read them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message

from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.macos import filevault, parse, pmset, profiler, software_update
from sonde.agent.collectors.snapshot_fields import copy_fields
from sonde.v1 import diagnostics_pb2

_MAX_REASON = 300
# The Snapshot fields these outputs fill, in the order they are reported.
FIELDS = ("system", "disks", "battery", "network", "updates", "encryption")


@dataclass(frozen=True)
class MacOutputs:
    """What each command printed (None: not run, or not captured)."""

    system_profiler: str | bytes | None = None
    pmset_batt: str | None = None
    softwareupdate_list: str | None = None
    sw_vers: str | None = None
    fdesetup_status: str | None = None


@dataclass
class MacFacts:
    facts: dict[str, Message] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def into(self, snapshot: diagnostics_pb2.Snapshot) -> None:
        """Copy the facts into the snapshot, one CollectorReport per field."""
        copy_fields(snapshot, FIELDS, self.facts, self.unavailable, missing="not collected")


def _short(reason: str) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _system(report: profiler.Report, sw_vers_text: str | None) -> diagnostics_pb2.SystemFacts:
    facts = profiler.system_facts(report)
    if sw_vers_text is not None:
        name, build = parse.sw_vers(sw_vers_text)
        if name and build:
            facts.os_name = f"{name} ({build})"
    return facts


def _battery(report: profiler.Report, pmset_text: str | None) -> diagnostics_pb2.BatteryFacts:
    facts = profiler.battery_facts(report)
    if pmset_text is None or not facts.present:
        return facts
    try:
        power = pmset.power_state(pmset_text)
    except CollectorUnavailable:
        return facts  # system_profiler's own charge and charger stand
    if power.battery_present:
        facts.charge_percent = power.charge_percent
        facts.plugged_in = not power.on_battery_power
        facts.seconds_left = power.seconds_left
    return facts


def macos_facts(outputs: MacOutputs) -> MacFacts:
    """Every field these outputs give, or why not."""
    result = MacFacts()

    def read(name: str, reader: Callable[[], Message]) -> None:
        try:
            result.facts[name] = reader()
        except CollectorUnavailable as unavailable:
            result.unavailable[name] = _short(unavailable.reason)

    report: profiler.Report | None = None
    if outputs.system_profiler is None:
        for name in ("system", "disks", "battery", "network"):
            result.unavailable[name] = "system_profiler was not run"
    else:
        try:
            report = profiler.report_of(outputs.system_profiler)
        except CollectorUnavailable as unavailable:
            for name in ("system", "disks", "battery", "network"):
                result.unavailable[name] = _short(unavailable.reason)
    if report is not None:
        profiled = report
        read("system", lambda: _system(profiled, outputs.sw_vers))
        read("disks", lambda: profiler.disk_facts(profiled))
        read("battery", lambda: _battery(profiled, outputs.pmset_batt))
        read("network", lambda: profiler.network_facts(profiled))
    listing, status = outputs.softwareupdate_list, outputs.fdesetup_status
    if listing is None:
        result.unavailable["updates"] = "softwareupdate --list was not run"
    else:
        read("updates", lambda: software_update.update_facts(listing))
    if status is None:
        result.unavailable["encryption"] = "fdesetup status was not run"
    else:
        read("encryption", lambda: filevault.encryption_facts(status))
    return result
