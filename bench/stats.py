"""Percentiles and the short table every benchmark prints at its end (PERFORMANCE.md)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1): a value that was actually measured."""
    if not values:
        raise ValueError("a percentile of no values is undefined")
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Row:
    """One line of a result table: what was measured, over how many, and its spread."""

    what: str
    n: int
    median: float
    p95: float | None = None
    p99: float | None = None
    maximum: float | None = None
    target: str = ""

    @classmethod
    def of(cls, what: str, values: Sequence[float], target: str = "") -> Row:
        return cls(
            what,
            len(values),
            statistics.median(values),
            percentile(values, 0.95),
            percentile(values, 0.99),
            max(values),
            target,
        )


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    header = ("what", "N", "median", "p95", "p99", "max", "target")
    lines = [
        (r.what, str(r.n), _cell(r.median), _cell(r.p95), _cell(r.p99), _cell(r.maximum), r.target)
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    out = []
    for number, line in enumerate([header, *lines]):
        cells = [
            cell.ljust(width) if i in (0, 6) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
