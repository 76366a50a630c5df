"""Tables and text that read at the terminal's width (80 columns when it is not a terminal).

A list table (`ListTable`) is laid out when it is printed, for the width it gets. Each column
says how it may give way:
- KEEP never gives way: ids a technician copies, states, numbers and times are shown whole;
- CUT is cut with an ellipsis (titles, names): the row keeps to one line;
- WRAP is wrapped at words (a finding, a change): nothing is lost.
Columns marked `optional` are left out, last first, when the others would not fit. When even
then the KEEP columns would not stay whole, the rows are printed as records (`field  value`
lines), not cut.

Free text a person wrote (comments, descriptions) keeps its newlines and is wrapped with
textwrap to the width (`Paragraph`), never cut.
"""

from __future__ import annotations

import enum
import itertools
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from sonde.server.console.inert import inert

# The width when stdout is not a terminal (a pipe, a file, a test).
DEFAULT_WIDTH = 80
# How many characters of an id a table shows at least (unique_prefix_chars), as git does.
SHORT_ID_CHARS = 8
# Two spaces between columns. A CUT or WRAP column is never narrower than _NARROWEST; an
# optional column shows only while each of them keeps _COMFORTABLE (or all it needs).
_GAP = 2
_NARROWEST = 6
_COMFORTABLE = 16


def terminal_width() -> int:
    """The terminal's columns, or 80 when stdout is not a terminal ($COLUMNS wins)."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def unique_prefix_chars(ids: Iterable[str], minimum: int = SHORT_ID_CHARS) -> int:
    """The shortest length at which the start of each id is unique among `ids` (and at least
    `minimum`): the ids a table shows, copied back, name one each."""
    chars = minimum
    for one, other in itertools.pairwise(sorted(set(ids))):  # neighbours share the most
        shared = 0
        while shared < min(len(one), len(other)) and one[shared] == other[shared]:
            shared += 1
        chars = max(chars, shared + 1)
    return chars


def wrap_paragraphs(value: str, width: int) -> list[str]:
    """Text a person wrote, its own newlines kept, each line wrapped at words to `width`
    (a word longer than the width is broken, never cut); inert, line by line."""
    lines: list[str] = []
    for line in value.replace("\r\n", "\n").split("\n"):
        shown = inert(line.rstrip())
        if not shown:
            lines.append("")
            continue
        indent = shown[: len(shown) - len(shown.lstrip(" "))]
        lines.extend(
            textwrap.wrap(
                shown,
                width=max(width, 1),
                subsequent_indent=indent if len(indent) < width // 2 else "",
                break_long_words=True,
                break_on_hyphens=False,
            )
        )
    return lines


class Paragraph:
    """Free text (a comment, a description) wrapped to the width it is printed at."""

    def __init__(self, value: str, indent: int = 0, style: str = "") -> None:
        self.value = value
        self.indent = indent
        self.style = style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width - self.indent, 1)
        for line in wrap_paragraphs(self.value, width):
            yield Text(" " * self.indent + line, style=self.style, no_wrap=True, end="\n")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lines = [inert(line) for line in self.value.split("\n")]
        longest_word = max((cell_len(word) for line in lines for word in line.split()), default=1)
        longest_line = max((cell_len(line) for line in lines), default=1)
        return Measurement(longest_word + self.indent, longest_line + self.indent)


class Give(enum.Enum):
    """How a column gives way when the row does not fit."""

    KEEP = "keep"
    CUT = "cut"
    WRAP = "wrap"


@dataclass(frozen=True)
class Column:
    header: str
    give: Give = Give.KEEP
    justify: str = "left"
    optional: bool = False
    min_width: int = 0  # a CUT/WRAP column never narrower (an id under a name)


Cell = Text | str
# How far a row's detail (`add_row(detail=...)`) sits under the row.
DETAIL_INDENT = 4


class ListTable:
    """A titled list whose columns are fitted to the width when printed (see the module).

    When even the KEEP columns and the narrowest of the others do not fit (a terminal of
    40 columns), each row is printed as a record instead: a block of `column  value` lines,
    so that states and ids are still whole (long values wrap, never cut).
    """

    def __init__(self, title: str, columns: Sequence[Column], detail_label: str = "detail") -> None:
        self.title = title
        self.columns = list(columns)
        self.rows: list[list[Text]] = []
        self.details: list[Text | None] = []
        self.detail_label = detail_label

    def add_row(self, *cells: Cell, detail: Cell | None = None) -> None:
        """One row; `detail` (a refusal's text, say) is wrapped under it, indented."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([_as_text(cell) for cell in cells])
        self.details.append(None if detail is None else _as_text(detail))

    def widths(self, width: int) -> list[int] | None:
        """Each column's width at `width` (0: left out), or None: print records."""
        natural = [self._natural(index) for index in range(len(self.columns))]
        shown = list(range(len(self.columns)))
        while True:
            fitted = self._fit([natural[index] for index in shown], shown, width)
            optional = [index for index in shown if self.columns[index].optional]
            if fitted is not None or not optional:
                break
            shown.remove(optional[-1])
        if fitted is None:  # a very narrow terminal: the KEEP columns would not stay whole
            return None
        result = [0] * len(self.columns)
        for index, chosen in zip(shown, fitted, strict=True):
            result[index] = chosen
        return result

    def _natural(self, index: int) -> int:
        cells = [Text(self.columns[index].header)] + [row[index] for row in self.rows]
        widest = max(cell_len(line) for cell in cells for line in cell.plain.split("\n"))
        return max(widest, self.columns[index].min_width)

    def _fit(self, natural: list[int], shown: list[int], width: int) -> list[int] | None:
        room = width - _GAP * (len(shown) - 1)
        flexible = [n for n, index in enumerate(shown) if self.columns[index].give is not Give.KEEP]
        fixed = sum(natural[n] for n in range(len(shown)) if n not in flexible)
        left = room - fixed
        if sum(natural[n] for n in flexible) <= left:
            return natural
        any_optional = any(self.columns[index].optional for index in shown)
        floors = {
            n: max(
                self.columns[shown[n]].min_width,
                min(natural[n], _COMFORTABLE) if any_optional else _NARROWEST,
            )
            for n in flexible
        }
        if sum(min(natural[n], floors[n]) for n in flexible) > left:
            return None
        widths = list(natural)

        # Water-filling: the narrow columns keep their width, the wide ones share the rest
        # (the highest level at which each gets min(natural, max(floor, level)) and all fit).
        def at(level: int) -> dict[int, int]:
            return {n: min(natural[n], max(floors[n], level)) for n in flexible}

        level = max(natural[n] for n in flexible)
        while level > 0 and sum(at(level).values()) > left:
            level -= 1
        shares = at(level)
        spare = left - sum(shares.values())
        for n in sorted(flexible, key=lambda n: natural[n]):  # the rest, a column each
            if spare and shares[n] < natural[n]:
                shares[n] += 1
                spare -= 1
        for n, share in shares.items():
            widths[n] = share
        return widths

    def table(self, width: int) -> Table:
        """The rich table for `width` columns, every row in it (details are left out)."""
        widths = self.widths(width)
        if widths is None:
            raise ValueError(f"{self.title!r} does not fit {width} columns as a table")
        return self._table(widths, self.rows, title=self.title, header=True)

    def _table(
        self, widths: list[int], rows: Sequence[list[Text]], *, title: str | None, header: bool
    ) -> Table:
        table = Table(
            title=title,
            title_justify="left",
            box=None,
            pad_edge=False,
            padding=(0, _GAP // 2),
            header_style="bold",
            show_header=header,
        )
        shown = [index for index, chosen in enumerate(widths) if chosen]
        for index in shown:
            column = self.columns[index]
            table.add_column(
                column.header,
                justify="right" if column.justify == "right" else "left",
                width=widths[index],
                no_wrap=column.give is not Give.WRAP,
                overflow="ellipsis" if column.give is Give.CUT else "fold",
            )
        for row in rows:
            table.add_row(*(row[index] for index in shown))
        return table

    def _records(self) -> RenderResult:
        """Each row as a block of `column  value` lines, a blank line between blocks."""
        yield Text(self.title, style="italic")
        labels = [column.header for column in self.columns]
        if any(detail is not None for detail in self.details):
            labels.append(self.detail_label)
        for number, (row, detail) in enumerate(zip(self.rows, self.details, strict=True)):
            if number:
                yield Text("")
            grid = Table.grid(padding=(0, _GAP))
            grid.add_column(style="bold", no_wrap=True, min_width=max(map(cell_len, labels)))
            grid.add_column(overflow="fold")
            for column, cell in zip(self.columns, row, strict=True):
                grid.add_row(column.header, cell)
            if detail is not None:
                grid.add_row(self.detail_label, detail)
            yield grid

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.widths(options.max_width)
        if widths is None:
            yield from self._records()
        elif all(detail is None for detail in self.details):
            yield self._table(widths, self.rows, title=self.title, header=True)
        else:  # a table a row, the same widths for all, each row's detail under it
            yield self._table(widths, [], title=self.title, header=True)
            for row, detail in zip(self.rows, self.details, strict=True):
                yield self._table(widths, [row], title=None, header=False)
                if detail is not None:
                    yield Padding(detail, (0, 0, 0, DETAIL_INDENT))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widths = self.widths(options.max_width)
        if widths is None:
            return Measurement(options.max_width, options.max_width)
        shown = sum(1 for chosen in widths if chosen)
        total = sum(widths) + _GAP * max(shown - 1, 0)
        return Measurement(total, total)


def _as_text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)
