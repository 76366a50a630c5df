"""Checks on text people and agents send us: lengths and printable characters only."""

from __future__ import annotations

import unicodedata

from sonde.server.errors import InvalidArgument

# Newlines and tabs are fine in bodies; every other control or format character is refused,
# so nothing can rewrite a technician's terminal (ANSI escapes) or hide text (bidi overrides).
_BODY_WHITESPACE = frozenset("\n\t")


def bad_character(text: str, *, multiline: bool) -> str | None:
    """The first control or format character of `text` (newlines and tabs allowed when
    multiline), or None."""
    allowed = _BODY_WHITESPACE if multiline else frozenset()
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return char
    return None


def like_prefix(text: str) -> str:
    """A LIKE pattern (with `escape="\\"`) matching what starts with `text`: its `%`, `_` and
    backslashes taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def checked_text(
    what: str, text: str, *, max_chars: int, required: bool = False, multiline: bool = True
) -> str:
    """`text` stripped of surrounding space, or InvalidArgument saying what is wrong with it."""
    text = text.strip()
    if required and not text:
        raise InvalidArgument(f"{what} is required")
    if len(text) > max_chars:
        raise InvalidArgument(
            f"{what} is {len(text):,} characters long; the limit is {max_chars:,}"
        )
    bad = bad_character(text, multiline=multiline)
    if bad is not None:
        raise InvalidArgument(
            f"{what} contains the control character U+{ord(bad):04X}; "
            "only printable text is accepted"
        )
    return text


def sanitized(text: str, *, max_chars: int) -> str:
    """Agent-reported text made inert: control characters dropped, length capped.

    Used where refusing is wrong (an agent's hello must not fail over an odd host name).
    """
    cleaned = "".join(
        char for char in text if unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return cleaned.strip()[:max_chars]


CUT_MARK = "\n[... cut here: the whole text is attached]"


def fitted(text: str, max_chars: int, *, multiline: bool = True) -> str:
    """Outside text (a mail) made to fit where checked_text would refuse it: control and
    format characters dropped (newlines and tabs kept when multiline), cut at max_chars with
    CUT_MARK saying so."""
    keep = _BODY_WHITESPACE if multiline else frozenset()
    cleaned = "".join(
        char
        for char in text
        if char in keep or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    ).strip()
    if len(cleaned) <= max_chars:
        return cleaned
    mark = CUT_MARK if multiline else " [...]"
    return cleaned[: max_chars - len(mark)].rstrip() + mark
