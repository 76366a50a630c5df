"""A report's CSV opens in a spreadsheet as text: no cell becomes a formula."""

from __future__ import annotations

import csv
import io

import pytest

from sonde.server.console.csv_cells import inert_cell, write_rows


@pytest.mark.parametrize(
    "cell",
    ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"],
)
def test_a_cell_a_spreadsheet_would_compute_is_written_as_text(cell: str) -> None:
    assert inert_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["printer jam", "", "a=b", 42, -3, 1.5])
def test_other_cells_are_left_as_they_are(cell: object) -> None:
    assert inert_cell(cell) == cell


def test_write_rows_quotes_the_words_and_keeps_the_numbers() -> None:
    out = io.StringIO()
    write_rows(out, ["ticket", "title", "late_min"], [[7, "=1+1", -5], [8, "ok, fine", 0]])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["ticket", "title", "late_min"],
        ["7", "'=1+1", "-5"],
        ["8", "ok, fine", "0"],
    ]
