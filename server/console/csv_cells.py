"""CSV cells a spreadsheet opens as text: a ticket's title or a requester's words may start with
`=`, `+`, `-`, `@` (a formula in Excel and LibreOffice, which can run a command or leak the
sheet) or a tab or carriage return; such a cell is written with a leading apostrophe, the
spreadsheet convention for "this is text" (OWASP, CSV injection)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import TextIO

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value: object) -> object:
    """A string that a spreadsheet would read as a formula, quoted as text; anything else as is."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_rows(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([inert_cell(cell) for cell in row])
