"""What a reviewer compares: a proposed manifest beside the newest published version of its
script, field by field (what changed marked, a raised risk called out), and unified diffs of
the manifest and the script. Pure functions: no storage, no clock.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sonde.catalog.manifest import Manifest, Parameter, ParameterType

NEW_SCRIPT = "-"  # the published side of a field when nothing is published yet
_ON_IS_HEAVIER = ("needs_admin", "disruptive", "reboot_required", "self_service", "user_session")


@dataclass(frozen=True)
class FieldChange:
    """One field that matters to a reviewer, as published and as proposed."""

    field: str
    published: str  # NEW_SCRIPT when the script is new
    proposed: str
    changed: bool
    note: str = ""  # "risk raised: low to high", "now on", "added", "removed"


def _flag(on: bool) -> str:
    return "yes" if on else "no"


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(values) or "none"


def _fields(manifest: Manifest) -> dict[str, str]:
    return {
        "risk": manifest.risk.value,
        "needs_admin": _flag(manifest.needs_admin),
        "disruptive": _flag(manifest.disruptive),
        "reboot_required": _flag(manifest.reboot_required),
        "self_service": _flag(manifest.self_service),
        "user_session": _flag(manifest.user_session),
        "timeout": f"{manifest.timeout_s} s",
        "platforms": _listed(tuple(p.value for p in manifest.platforms)),
        "interpreter": manifest.interpreter.value,
        "fixes": _listed(manifest.fixes),
        "verify": _listed(manifest.verify),
    }


def parameter_summary(parameter: Parameter) -> str:
    """A parameter in one line: its type and bounds, required, default (secret: ***)."""
    kind = parameter.type.value
    if parameter.choices:
        kind += " (" + "|".join(parameter.choices) + ")"
    if parameter.pattern:
        kind += f" matching {parameter.pattern}"
    if parameter.minimum is not None or parameter.maximum is not None:
        low = "" if parameter.minimum is None else str(parameter.minimum)
        high = "" if parameter.maximum is None else str(parameter.maximum)
        kind += f" {low}..{high}"
    facts = [kind]
    if parameter.required:
        facts.append("required")
    if parameter.default is not None:
        default = parameter.default
        if parameter.secret:
            shown = "***"
        elif parameter.type is ParameterType.BOOL:
            shown = "true" if default else "false"
        else:
            shown = str(default)
        facts.append(f"default {shown}")
    if parameter.secret:
        facts.append("secret")
    return ", ".join(facts)


def compare(proposed: Manifest, published: Manifest | None) -> list[FieldChange]:
    """The fields that matter, then one row per parameter of either side."""
    after = _fields(proposed)
    before = _fields(published) if published is not None else {}
    changes = []
    for name, value in after.items():
        old = before.get(name, NEW_SCRIPT)
        changed = published is not None and old != value
        changes.append(FieldChange(name, old, value, changed, _note(name, old, value, changed)))
    proposed_parameters = {p.name: parameter_summary(p) for p in proposed.parameters}
    published_parameters = (
        {p.name: parameter_summary(p) for p in published.parameters} if published else {}
    )
    for name in [
        *proposed_parameters,
        *(n for n in published_parameters if n not in proposed_parameters),
    ]:
        old = published_parameters.get(name, NEW_SCRIPT)
        new = proposed_parameters.get(name, NEW_SCRIPT)
        changed = published is not None and old != new
        note = ""
        if changed:
            note = "added" if old == NEW_SCRIPT else "removed" if new == NEW_SCRIPT else "changed"
        changes.append(FieldChange(f"parameter {name}", old, new, changed, note))
    return changes


def _note(name: str, old: str, new: str, changed: bool) -> str:
    if not changed:
        return ""
    if name == "risk":
        ranks = {"low": 1, "medium": 2, "high": 3}
        direction = "raised" if ranks[new] > ranks[old] else "lowered"
        return f"risk {direction}: {old} to {new}"
    if name in _ON_IS_HEAVIER:
        return "now on" if new == "yes" else "now off"
    return "changed"


def risk_raised(proposed: Manifest, published: Manifest | None) -> bool:
    return published is not None and proposed.risk.rank > published.risk.rank


def unified_diff(before: bytes, after: bytes, before_name: str, after_name: str) -> str:
    """A unified diff of two texts (UTF-8, undecodable bytes replaced), "" when equal."""
    old = before.decode("utf-8", "replace").splitlines(keepends=True)
    new = after.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, fromfile=before_name, tofile=after_name, n=3)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
