"""Business hours: how much working time lies between two instants, and when a target ends.

A calendar is an IANA time zone, local working windows per weekday (0 = Monday) and holidays
(local dates with no working time). Windows are local wall-clock times; a window's real length
is measured in UTC, so on a day whose clock changes inside a window the window is as long as
the real time it covers (00:00-24:00 on Paris' spring-forward day is 23 h). A window end of
00:00 means 24:00 (the next midnight). Local start times use fold=0, local end times fold=1,
so an ambiguous hour counts both times it is lived through.
All functions take and return timezone-aware datetimes and answer in UTC. Paused intervals
(a ticket waiting on the requester) do not count; a pause with no end runs on indefinitely.
add_business_time with a zero duration returns start unchanged (converted to UTC).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_HOLIDAYS = 366 * 10
# add_business_time gives up after this many local days without any working time.
MAX_IDLE_DAYS = 366 * 11
MIDNIGHT = time(0)
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Window = tuple[time, time]
Pause = tuple[datetime, datetime | None]


class CalendarError(ValueError):
    """A calendar, or a question put to it, was refused."""


@dataclass(frozen=True)
class BusinessCalendar:
    time_zone: str
    hours: tuple[tuple[Window, ...], ...]
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise CalendarError(f"unknown time zone {self.time_zone!r}") from error
        if len(self.hours) != 7:
            raise CalendarError(f"hours must list 7 weekdays, got {len(self.hours)}")
        for weekday, windows in enumerate(self.hours):
            _check_windows(_DAY_NAMES[weekday], windows)
        if not any(self.hours):
            raise CalendarError("the calendar has no working time on any weekday")
        if len(self.holidays) > MAX_HOLIDAYS:
            raise CalendarError(f"{len(self.holidays)} holidays, at most {MAX_HOLIDAYS}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _minutes(end: time) -> int:
    return 24 * 60 if end == MIDNIGHT else end.hour * 60 + end.minute


def _check_windows(day: str, windows: Sequence[Window]) -> None:
    previous_end = -1
    for start, end in sorted(windows):
        if start.tzinfo is not None or end.tzinfo is not None:
            raise CalendarError(f"{day}: windows are local times, without a time zone")
        begin = start.hour * 60 + start.minute
        if _minutes(end) <= begin:
            raise CalendarError(f"{day}: window {start}-{end} must end after it starts")
        if begin < previous_end:
            raise CalendarError(f"{day}: window {start}-{end} overlaps the one before")
        previous_end = _minutes(end)


def _parse_time(text: str) -> time:
    if text.strip() == "24:00":
        return MIDNIGHT
    try:
        return time.fromisoformat(text.strip())
    except ValueError as error:
        raise CalendarError(f"{text!r} is not a time HH:MM") from error


def _days(key: str) -> list[int]:
    first, _, last = key.strip().lower().partition("-")
    try:
        a = _DAY_NAMES.index(first)
        b = _DAY_NAMES.index(last) if last else a
    except ValueError as error:
        raise CalendarError(f"{key!r} is not a weekday or range like mon-fri") from error
    if b < a:
        raise CalendarError(f"{key!r}: a weekday range runs forward, e.g. mon-fri")
    return list(range(a, b + 1))


def parse_calendar(form: Mapping[str, object]) -> BusinessCalendar:
    """The calendar an admin wrote: time_zone, hours {"mon-fri": "08:00-12:00,..."}, holidays."""
    hours: list[list[Window]] = [[] for _ in range(7)]
    raw_hours = form.get("hours", {})
    if not isinstance(raw_hours, Mapping):
        raise CalendarError("hours must be a table of weekday -> windows")
    for key, text in raw_hours.items():
        for weekday in _days(str(key)):
            if hours[weekday]:
                raise CalendarError(f"{_DAY_NAMES[weekday]} is given twice in hours")
            for part in str(text).split(","):
                if not part.strip():
                    continue
                start, sep, end = part.partition("-")
                if not sep:
                    raise CalendarError(f"{part!r} is not a window HH:MM-HH:MM")
                hours[weekday].append((_parse_time(start), _parse_time(end)))
    raw_holidays = form.get("holidays", [])
    if not isinstance(raw_holidays, list):
        raise CalendarError("holidays must be a list of dates YYYY-MM-DD")
    try:
        holidays = frozenset(date.fromisoformat(str(day)) for day in raw_holidays)
    except ValueError as error:
        raise CalendarError(f"holidays: {error}") from error
    return BusinessCalendar(
        time_zone=str(form.get("time_zone", "")),
        hours=tuple(tuple(sorted(day)) for day in hours),
        holidays=holidays,
    )


def calendar_form(calendar: BusinessCalendar) -> dict[str, object]:
    """The admin's form of a calendar, one key per working weekday; parse_calendar reads it back."""

    def text(t: time, is_end: bool) -> str:
        return "24:00" if is_end and t == MIDNIGHT else t.strftime("%H:%M")

    hours = {
        _DAY_NAMES[weekday]: ",".join(f"{text(s, False)}-{text(e, True)}" for s, e in windows)
        for weekday, windows in enumerate(calendar.hours)
        if windows
    }
    return {
        "time_zone": calendar.time_zone,
        "hours": hours,
        "holidays": [day.isoformat() for day in sorted(calendar.holidays)],
    }


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise CalendarError(f"{instant} has no time zone; business time needs aware datetimes")
    return instant.astimezone(UTC)


def _day_windows(calendar: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
    if day in calendar.holidays:
        return []
    zone = calendar.zone
    result = []
    for start, end in sorted(calendar.hours[day.weekday()]):
        begin = _local_instant(datetime.combine(day, start, tzinfo=zone), fold=0)
        end_day = day + timedelta(days=1) if end == MIDNIGHT else day
        finish = _local_instant(datetime.combine(end_day, end, tzinfo=zone), fold=1)
        if finish > begin:
            result.append((begin, finish))
    return result


def _local_instant(local: datetime, *, fold: int) -> datetime:
    """The UTC instant of a local wall-clock time; an ambiguous one read with `fold`, and one
    that does not exist (skipped by a spring-forward) as the instant of the clock change."""
    before = local.replace(fold=0).astimezone(UTC)
    after = local.replace(fold=1).astimezone(UTC)
    if before <= after:  # it exists once (equal) or twice (a fall-back's repeated hour)
        return after if fold else before
    # In a gap: read before the change it lies past it, read after it lies ahead of it; the
    # change is the first instant between them whose offset is the new one.
    new_offset = local.replace(fold=1).utcoffset()
    low, high = after, before
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(local.tzinfo).utcoffset() == new_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond else high


def _windows_from(
    calendar: BusinessCalendar, start: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals in UTC that end after start, in order, clipped to start."""
    day = start.astimezone(calendar.zone).date() - timedelta(days=1)
    idle = 0
    while True:
        windows = _day_windows(calendar, day)
        idle = 0 if windows else idle + 1
        if idle > MAX_IDLE_DAYS:
            raise CalendarError(
                f"no working time in {MAX_IDLE_DAYS} days after {start.isoformat()}"
            )
        for begin, finish in windows:
            if finish > start:
                yield max(begin, start), finish
        day += timedelta(days=1)


def _pause_intervals(
    pauses: Sequence[Pause], end: datetime | None
) -> list[tuple[datetime, datetime | None]]:
    merged: list[tuple[datetime, datetime | None]] = []
    for p_from, p_to in sorted(
        ((_utc(f), None if t is None else _utc(t)) for f, t in pauses), key=lambda p: p[0]
    ):
        if p_to is not None and p_to <= p_from:
            continue
        if merged and (merged[-1][1] is None or p_from <= merged[-1][1]):
            last_from, last_to = merged[-1]
            merged[-1] = (
                last_from,
                None if last_to is None or p_to is None else max(last_to, p_to),
            )
        else:
            merged.append((p_from, p_to))
    return merged


def _unpaused(
    intervals: Iterator[tuple[datetime, datetime]], pauses: list[tuple[datetime, datetime | None]]
) -> Iterator[tuple[datetime, datetime]]:
    for begin, finish in intervals:
        cursor = begin
        for p_from, p_to in pauses:
            if p_to is not None and p_to <= cursor:
                continue
            if p_from >= finish:
                break
            if p_from > cursor:
                yield cursor, p_from
            if p_to is None:
                return
            cursor = max(cursor, p_to)
            if cursor >= finish:
                break
        if cursor < finish:
            yield cursor, finish


def business_time_between(
    calendar: BusinessCalendar, a: datetime, b: datetime, pauses: Sequence[Pause] = ()
) -> timedelta:
    """Working time in [a, b) outside pauses; zero when b <= a."""
    a, b = _utc(a), _utc(b)
    total = timedelta(0)
    if b <= a:
        return total
    for begin, finish in _unpaused(_windows_from(calendar, a), _pause_intervals(pauses, b)):
        if begin >= b:
            break
        total += min(finish, b) - begin
    return total


def add_business_time(
    calendar: BusinessCalendar, start: datetime, duration: timedelta, pauses: Sequence[Pause] = ()
) -> datetime:
    """The instant when duration of working time outside pauses has elapsed after start.

    Zero returns start (in UTC). A positive duration ends inside a window or at its end, never
    at the start of the next window. A pause without an end means the target never falls due:
    CalendarError.
    """
    start = _utc(start)
    if duration < timedelta(0):
        raise CalendarError(f"a business duration cannot be negative: {duration}")
    if duration == timedelta(0):
        return start
    remaining = duration
    for begin, finish in _unpaused(_windows_from(calendar, start), _pause_intervals(pauses, None)):
        if finish - begin >= remaining:
            return begin + remaining
        remaining -= finish - begin
    raise CalendarError("an open pause stops the clock: there is no due time while it lasts")
