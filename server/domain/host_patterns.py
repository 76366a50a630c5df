"""Which hosts a remote credential is for: exact names and addresses, or patterns.

A pattern is an exact host (`pc-042.corp.lan`, `10.1.2.3`), a leading wildcard for every name
under a domain (`*.corp.lan`: one label or more before it), a trailing one for every address
in a range (`10.1.2.*`: one label or more after it), or `*` alone (any host). A host matches
case-insensitively, its trailing dot ignored. The most specific match wins: an exact host,
then the wildcard with the most labels written out, then `*`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sonde.server.errors import InvalidArgument

MAX_HOST_CHARS = 253
_LABEL = re.compile(r"[a-z0-9_:-]+|\[[0-9a-f:.]+\]")
_EXPLAIN = (
    "a host is a name or an address (pc-042.corp.lan, 10.1.2.3), or a pattern with * as its "
    "first or last label (*.corp.lan, 10.1.2.*), or * alone for any host"
)


def normalized_host(host: str) -> str:
    """A host as patterns compare it: lower case, no trailing dot; InvalidArgument if empty."""
    text = host.strip().lower().removesuffix(".")
    if not text or len(text) > MAX_HOST_CHARS:
        raise InvalidArgument(f"{host[:60]!r} is not a host name or address")
    return text


@dataclass(frozen=True)
class HostPattern:
    text: str  # as stored and shown, normalized

    @classmethod
    def parse(cls, pattern: str) -> HostPattern:
        text = pattern.strip().lower().removesuffix(".")
        if text == "*":
            return cls(text)
        if not text or len(text) > MAX_HOST_CHARS:
            raise InvalidArgument(f"{pattern[:60]!r} is not a host pattern: {_EXPLAIN}")
        labels = text.split(".")
        if labels[0] == "*":
            labels = labels[1:]
        elif labels[-1] == "*":
            labels = labels[:-1]
        if not labels or not all(_LABEL.fullmatch(label) for label in labels):
            raise InvalidArgument(f"{pattern[:60]!r} is not a host pattern: {_EXPLAIN}")
        return cls(text)

    @property
    def exact(self) -> bool:
        return "*" not in self.text

    def specificity(self, host: str) -> tuple[int, int] | None:
        """How specifically this pattern names `host` (normalized), or None: not at all.
        Exact beats any wildcard; a wildcard with more labels written out beats fewer."""
        if self.exact:
            return (2, self.text.count(".") + 1) if host == self.text else None
        if self.text == "*":
            return (0, 0)
        if self.text.startswith("*."):
            suffix = self.text[1:]  # ".corp.lan"
            matched = host.endswith(suffix) and len(host) > len(suffix)
            return (1, suffix.count(".")) if matched else None
        prefix = self.text[:-1]  # "10.1.2."
        matched = host.startswith(prefix) and len(host) > len(prefix)
        return (1, prefix.count(".")) if matched else None


def parse_hosts(patterns: list[str], *, max_patterns: int) -> tuple[HostPattern, ...]:
    """The patterns given, each checked, duplicates dropped, in the order given."""
    parsed: list[HostPattern] = []
    for pattern in patterns:
        one = HostPattern.parse(pattern)
        if one not in parsed:
            parsed.append(one)
    if not parsed:
        raise InvalidArgument(
            "a credential needs the hosts it is for (--hosts '*.corp.lan,10.1.2.*'): "
            "it is never sent to any other host"
        )
    if len(parsed) > max_patterns:
        raise InvalidArgument(
            f"a credential is for at most {max_patterns} host patterns, got {len(parsed)}"
        )
    return tuple(parsed)


def best_match(patterns: tuple[HostPattern, ...], host: str) -> tuple[int, int] | None:
    """The most specific of `patterns` for `host` (normalized), or None: none matches."""
    found = [s for s in (p.specificity(host) for p in patterns) if s is not None]
    return max(found) if found else None
