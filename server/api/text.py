"""Text that comes from agents is hostile until cleaned: bounded, printable, one line."""

from __future__ import annotations

import unicodedata


def clean_text(value: str, max_length: int) -> str:
    """Replace control and format characters (ANSI escapes, newlines, bidi marks) with '?'."""
    cleaned = "".join(
        "?" if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch
        for ch in value[:max_length]
    )
    return cleaned.strip()
