"""The layout helpers: unique id prefixes, wrapped free text, one size unit, times with zones,
and list tables fitted to the width."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from rich.text import Text

from sonde.server.console.layout import (
    Column,
    Give,
    ListTable,
    Paragraph,
    terminal_width,
    unique_prefix_chars,
    wrap_paragraphs,
)
from sonde.server.console.output import Output
from sonde.server.console.render import format_bytes, format_time


def printed(renderable: object, width: int = 80) -> list[str]:
    buffer = io.StringIO()
    Output(json_mode=False, stdout=buffer, force_terminal=False, width=width).show(renderable)  # type: ignore[arg-type]
    return buffer.getvalue().splitlines()


def test_a_prefix_is_eight_characters_or_as_many_as_tell_the_ids_apart() -> None:
    assert unique_prefix_chars([]) == 8
    assert unique_prefix_chars(["abcdefghijkl", "zzzzzzzzzzzz"]) == 8
    assert unique_prefix_chars(["abcdefghij01", "abcdefghij02", "q" * 12]) == 12
    # The same id twice is one id; a shorter minimum is honoured.
    assert unique_prefix_chars(["abc", "abc", "abd"], minimum=1) == 3
    ids = ["kry2" + "a" * 22, "kry2" + "a" * 9 + "b" * 13, "zz" + "c" * 24]
    chars = unique_prefix_chars(ids)
    assert len({one[:chars] for one in ids}) == len(ids)
    assert len({one[: chars - 1] for one in ids}) < len(ids)


def test_free_text_keeps_its_newlines_and_is_wrapped_not_cut() -> None:
    comment = (
        "Called the user back; the printer on the third floor prints blank pages.\n"
        "\n"
        "- toner replaced\n"
        "- driver " + "x" * 50
    )
    lines = wrap_paragraphs(comment, 30)
    assert all(len(line) <= 30 for line in lines)
    assert "" in lines  # the blank line between paragraphs survives
    assert lines[lines.index("") + 1] == "- toner replaced"
    # Nothing is lost: every character, in order (a word wider than the line is broken).
    assert "".join("".join(lines).split()) == "".join(comment.split())
    assert max(len(line) for line in lines) == 30
    # Control characters other than the newline stay inert.
    assert wrap_paragraphs("a\x1b[31mb\tc", 80) == ["a\\x1b[31mb\\tc"]


def test_a_paragraph_wraps_to_the_width_it_is_printed_at() -> None:
    body = "first line that is long enough to need wrapping at forty columns\nsecond"
    lines = printed(Paragraph(body, indent=4), width=40)
    assert all(len(line) <= 40 for line in lines)
    assert lines[-1] == "    second"
    assert all(line.startswith("    ") for line in lines)


def test_sizes_are_binary_and_say_so() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(512 * 1024**2) == "512 MiB"
    assert format_bytes(int(3.1 * 1024**3)) == "3.1 GiB"
    assert format_bytes(237 * 1024**3) == "237 GiB"
    assert format_bytes(2 * 1024**4) == "2.0 TiB"


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "winter", "summer"),
    [
        ("Europe/Paris", "2026-01-15 13:00 CET", "2026-07-15 14:00 CEST"),
        ("UTC", "2026-01-15 12:00 UTC", "2026-07-15 12:00 UTC"),
        ("Asia/Kolkata", "2026-01-15 17:30 IST", "2026-07-15 17:30 IST"),
        ("Asia/Dubai", "2026-01-15 16:00 UTC+04:00", "2026-07-15 16:00 UTC+04:00"),
    ],
    indirect=["zone"],
)
def test_a_time_is_local_and_says_its_zone(zone: str, winter: str, summer: str) -> None:
    # 2026-01-15 and 2026-07-15, 12:00 UTC.
    assert format_time(Timestamp(seconds=1_768_478_400)) == winter
    assert format_time(Timestamp(seconds=1_784_116_800)) == summer
    assert format_time(Timestamp()) == "-"


def test_the_width_is_80_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    # Under pytest stdout is captured, not a terminal.
    assert terminal_width() == 80
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width() == 132
    buffer = io.StringIO()
    assert Output(json_mode=False, stdout=buffer).console.width == 132


def table_of(titles: list[str]) -> ListTable:
    table = ListTable(
        "Tickets",
        [
            Column("#", justify="right"),
            Column("status"),
            Column("title", Give.CUT),
            Column("note", Give.WRAP),
            Column("who", Give.CUT, optional=True),
        ],
    )
    for number, title in enumerate(titles, start=1):
        table.add_row(str(number), "in progress", title, "a note " * 8, "alice.longname")
    return table


def test_a_list_fits_the_width_cutting_titles_never_states() -> None:
    long_title = "The printer on the third floor prints blank pages whenever accounting prints"
    for width in (80, 60, 40):
        lines = printed(table_of([long_title, "vpn"]), width=width)
        assert all(len(line) <= width for line in lines), (width, lines)
        rows = [line for line in lines if "in progress" in line]
        assert len([line for line in lines if line.lstrip().startswith(("1 ", "2 "))]) == 2
        assert len(rows) == 2  # the state whole, on its row's first line
        assert "…" in rows[0]  # the title cut with an ellipsis
    # Wide enough, nothing is cut and the optional column shows.
    wide = printed(table_of([long_title]), width=200)
    assert long_title in "\n".join(wide)
    assert "alice.longname" in "\n".join(wide)
    # At 40 columns the optional column gives way first.
    assert "who" not in printed(table_of([long_title]), width=40)[1]


def test_a_row_needs_one_cell_per_column() -> None:
    with pytest.raises(ValueError, match="2 cells for 5 columns"):
        table_of([]).add_row("1", Text("new"))
