"""Untrusted text made harmless for a terminal: every character a terminal would act on
(control and format characters, line separators) becomes a visible escape, so a host name
cannot recolour, move the cursor or forge extra lines on the technician's terminal."""

from __future__ import annotations

import unicodedata

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control, format (bidi overrides, zero-width), line/paragraph separators, surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def inert(value: str) -> str:
    """The text with every character a terminal would act on replaced by a visible escape."""
    if value.isprintable():
        return value
    parts: list[str] = []
    for char in value:
        if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
            parts.append(char)
        elif char in _NAMED_ESCAPES:
            parts.append(_NAMED_ESCAPES[char])
        elif ord(char) < 0x100:
            parts.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(f"\\U{ord(char):08x}")
    return "".join(parts)
