"""The agent's own policy for remediation, written by the admin on the workstation: the highest
risk it accepts and the script ids it allows or denies. The server cannot change it; a run the
policy refuses is reported back with the reason and never starts.

The file (TOML, in the agent's state folder, optional):

    max_risk = "medium"          # low, medium or high (default: high, the catalog decides)
    allow = ["flush-dns-windows"] # if given, only these ids
    deny = ["reboot-with-notice-windows"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from sonde.catalog.manifest import SCRIPT_ID, Manifest, Risk

MAX_POLICY_BYTES = 64 * 1024


class PolicyError(ValueError):
    """The policy file is refused: says why."""


@dataclass(frozen=True)
class AgentPolicy:
    max_risk: Risk = Risk.HIGH
    allow: frozenset[str] | None = None  # None: every id the catalog signed
    deny: frozenset[str] = frozenset()

    def refusal(self, manifest: Manifest) -> str | None:
        """Why this workstation's policy refuses the script, or None."""
        if manifest.id in self.deny:
            return f"this workstation's policy denies {manifest.id}"
        if self.allow is not None and manifest.id not in self.allow:
            return f"this workstation's policy allows only {', '.join(sorted(self.allow))}"
        if manifest.risk.rank > self.max_risk.rank:
            return (
                f"{manifest.id} is {manifest.risk.value} risk; this workstation's policy accepts "
                f"{self.max_risk.value} risk at most"
            )
        return None


def parse_policy(data: bytes) -> AgentPolicy:
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"a policy is at most {MAX_POLICY_BYTES} bytes")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"not a TOML policy: {error}") from None
    unknown = sorted(set(table) - {"max_risk", "allow", "deny"})
    if unknown:
        raise PolicyError(f"unknown key {', '.join(unknown)} (known: max_risk, allow, deny)")
    try:
        max_risk = Risk(table.get("max_risk", Risk.HIGH.value))
    except ValueError:
        raise PolicyError(
            f"max_risk {table.get('max_risk')!r} is not one of low, medium, high"
        ) from None
    allow = table.get("allow")
    return AgentPolicy(
        max_risk=max_risk,
        allow=None if allow is None else _ids(allow, "allow"),
        deny=_ids(table.get("deny", []), "deny"),
    )


def _ids(value: object, key: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and SCRIPT_ID.fullmatch(item) for item in value
    ):
        raise PolicyError(f"{key} must be a list of script ids like flush-dns-windows")
    return frozenset(value)
