"""Argument types for numbers the console sends: refused at parse time, naming what was wrong.

Ids are int64 on the wire and in storage, so one past 2**63 - 1 can name nothing; protobuf
would refuse it with a traceback. A page holds 1 to 1000 rows, as the server allows.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from sonde.v1 import console_pb2

MAX_ID = 2**63 - 1
MAX_PAGE = 1000


def record_id(what: str, example: str = "17") -> Callable[[str], int]:
    """A positive 64-bit id ('#17' too); `what` is the kind with its article ("a ticket ...")."""

    def parse(value: str) -> int:
        number = value.strip().removeprefix("#")
        if not number.isdigit() or int(number) <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what} (e.g. {example})")
        if int(number) > MAX_ID:
            raise argparse.ArgumentTypeError(
                f"{value!r} is too large to be {what}: they end at {MAX_ID}"
            )
        return int(number)

    return parse


def page_limit(value: str) -> int:
    """How many rows a list shows: 1 to MAX_PAGE."""
    number = value.strip()
    if not number.lstrip("-").isdigit() or not 1 <= int(number) <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number from 1 to {MAX_PAGE}")
    return int(number)


def page_offset(value: str) -> int:
    """How many matching rows to skip: 0 or more (uint32 on the wire)."""
    number = value.strip()
    if not number.isdigit() or int(number) >= 2**32:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number from 0 to {2**32 - 1}")
    return int(number)


ticket_number = record_id("a ticket number")
snapshot_number = record_id("a diagnostic number", "12")
audit_row = record_id("an audit row id", "120")


_TIME_SPENT = re.compile(r"(?:(\d{1,3})h)?(?:(\d{1,4})m(?:in)?)?")


def time_spent(value: str) -> int:
    """Seconds of `15m`, `1h`, `1h30m`, or a number of minutes (the server bounds it)."""
    cleaned = value.strip().lower().replace(" ", "")
    if cleaned.isdigit() and len(cleaned) <= 5:
        return int(cleaned) * 60
    match = _TIME_SPENT.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(
            f"{value[:20]!r} is not a time spent: say 15m, 1h or 1h30m"
        )
    hours, minutes = (int(part) if part else 0 for part in match.groups())
    return hours * 3600 + minutes * 60


PRIORITIES = {
    "p1": console_pb2.TICKET_PRIORITY_P1,
    "p2": console_pb2.TICKET_PRIORITY_P2,
    "p3": console_pb2.TICKET_PRIORITY_P3,
    "p4": console_pb2.TICKET_PRIORITY_P4,
}


def priority(value: str) -> console_pb2.TicketPriority.ValueType:
    """`p1` (critical) to `p4` (low)."""
    key = value.strip().lower()
    if key not in PRIORITIES:
        raise argparse.ArgumentTypeError(f"unknown priority {value!r}: expected p1, p2, p3 or p4")
    return PRIORITIES[key]
