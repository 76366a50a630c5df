"""Business-hours arithmetic: hand-worked instants and properties over generated calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.server.domain.business_calendar import (
    BusinessCalendar,
    CalendarError,
    add_business_time,
    business_time_between,
    calendar_form,
    parse_calendar,
)

H = timedelta(hours=1)


def office(zone: str = "Europe/Paris", holidays: list[str] | None = None) -> BusinessCalendar:
    return parse_calendar(
        {"time_zone": zone, "hours": {"mon-fri": "08:00-18:00"}, "holidays": holidays or []}
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_friday_evening_plus_two_hours_is_monday_nine() -> None:
    # Fri 2026-06-05 17:00 Paris (CEST, 15:00 UTC): 1 h left Friday, 1 h from Mon 08:00.
    assert add_business_time(office(), utc(2026, 6, 5, 15), 2 * H) == utc(2026, 6, 8, 7)


def test_across_a_holiday() -> None:
    # Thu 2026-12-24 17:00 CET (16:00 UTC) + 2 h, Fri 25 a holiday: Mon 28 09:00 CET.
    cal = office(holidays=["2026-12-25"])
    assert add_business_time(cal, utc(2026, 12, 24, 16), 2 * H) == utc(2026, 12, 28, 8)


def test_start_inside_a_holiday_counts_from_next_window() -> None:
    cal = office(holidays=["2026-12-25"])
    # Fri 25 10:00 CET is a holiday: 1 h counts from Mon 28 08:00 CET -> 09:00 CET (08:00 UTC).
    assert add_business_time(cal, utc(2026, 12, 25, 9), H) == utc(2026, 12, 28, 8)


def test_spring_forward_24h_window_is_23_hours() -> None:
    cal = parse_calendar({"time_zone": "Europe/Paris", "hours": {"sun": "00:00-24:00"}})
    # Sun 2026-03-29 00:00 CET = 03-28 23:00 UTC; to 24:00 CEST = 03-29 22:00 UTC.
    assert business_time_between(cal, utc(2026, 3, 28, 0), utc(2026, 3, 31)) == 23 * H


def test_window_ending_in_the_spring_forward_gap_ends_at_the_change() -> None:
    # Paris skips 02:00-03:00 on Sun 2026-03-29 (01:00 UTC): 01:00-02:30 is 00:00-01:00 UTC.
    cal = parse_calendar({"time_zone": "Europe/Paris", "hours": {"sun": "01:00-02:30"}})
    assert business_time_between(cal, utc(2026, 3, 28), utc(2026, 3, 30)) == H
    assert add_business_time(cal, utc(2026, 3, 28), H) == utc(2026, 3, 29, 1)


def test_window_starting_in_the_spring_forward_gap_starts_at_the_change() -> None:
    # 02:30-05:00 on that day: from the change (03:00 CEST, 01:00 UTC) to 05:00 CEST = 2 h.
    cal = parse_calendar({"time_zone": "Europe/Paris", "hours": {"sun": "02:30-05:00"}})
    assert business_time_between(cal, utc(2026, 3, 28), utc(2026, 3, 30)) == 2 * H
    assert add_business_time(cal, utc(2026, 3, 28), H) == utc(2026, 3, 29, 2)


def test_window_inside_the_spring_forward_gap_has_no_time() -> None:
    cal = parse_calendar(
        {"time_zone": "Europe/Paris", "hours": {"sun": "02:15-02:45", "mon": "08:00-09:00"}}
    )
    assert business_time_between(cal, utc(2026, 3, 28), utc(2026, 3, 30)) == timedelta(0)
    # The next working time is Monday's 08:00 CEST (06:00 UTC).
    assert add_business_time(cal, utc(2026, 3, 28), H / 2) == utc(2026, 3, 30, 6, 30)


def test_fall_back_24h_window_is_25_hours() -> None:
    cal = parse_calendar({"time_zone": "Europe/Paris", "hours": {"sun": "00:00-24:00"}})
    assert business_time_between(cal, utc(2026, 10, 24), utc(2026, 10, 27)) == 25 * H


def test_office_hours_across_dst_keep_local_times() -> None:
    # Fri 2026-03-27 17:00 CET (16:00 UTC) + 2 h: Mon 30 09:00 CEST = 07:00 UTC.
    assert add_business_time(office(), utc(2026, 3, 27, 16), 2 * H) == utc(2026, 3, 30, 7)
    # Fri 2026-10-23 17:00 CEST (15:00 UTC) + 2 h: Mon 26 09:00 CET = 08:00 UTC.
    assert add_business_time(office(), utc(2026, 10, 23, 15), 2 * H) == utc(2026, 10, 26, 8)


def test_new_york() -> None:
    # Fri 2026-06-05 17:00 EDT (21:00 UTC) + 2 h: Mon 09:00 EDT = 13:00 UTC.
    cal = office("America/New_York")
    assert add_business_time(cal, utc(2026, 6, 5, 21), 2 * H) == utc(2026, 6, 8, 13)


def test_lunch_break_splits() -> None:
    cal = parse_calendar({"time_zone": "UTC", "hours": {"mon-fri": "08:00-12:00,13:30-18:00"}})
    # Mon 2026-06-08 11:00 + 2 h: 1 h to noon, lunch, 1 h from 13:30 -> 14:30.
    assert add_business_time(cal, utc(2026, 6, 8, 11), 2 * H) == utc(2026, 6, 8, 14, 30)


def test_pause_spanning_a_weekend() -> None:
    cal = office("UTC")
    pause = (utc(2026, 6, 5, 16), utc(2026, 6, 8, 10))  # Fri 16:00 to Mon 10:00
    # Fri 15:00 + 3 h: 1 h Friday, paused until Mon 10:00, 2 h more -> Mon 12:00.
    assert add_business_time(cal, utc(2026, 6, 5, 15), 3 * H, [pause]) == utc(2026, 6, 8, 12)
    assert business_time_between(cal, utc(2026, 6, 5, 15), utc(2026, 6, 8, 12), [pause]) == 3 * H


def test_zero_duration_returns_start() -> None:
    start = utc(2026, 6, 6, 3)
    assert add_business_time(office(), start, timedelta(0)) == start


def test_refusals() -> None:
    with pytest.raises(CalendarError, match="unknown time zone"):
        office("Mars/Olympus")
    with pytest.raises(CalendarError, match="overlaps"):
        parse_calendar({"time_zone": "UTC", "hours": {"mon": "08:00-12:00,11:00-13:00"}})
    with pytest.raises(CalendarError, match="end after"):
        parse_calendar({"time_zone": "UTC", "hours": {"mon": "12:00-08:00"}})
    with pytest.raises(CalendarError, match="no working time"):
        parse_calendar({"time_zone": "UTC", "hours": {}})
    too_many = [(date(2000, 1, 1) + timedelta(days=i)).isoformat() for i in range(3661)]
    with pytest.raises(CalendarError, match="holidays"):
        parse_calendar({"time_zone": "UTC", "hours": {"mon": "08:00-09:00"}, "holidays": too_many})


def test_only_working_day_always_a_holiday_is_bounded() -> None:
    days = [(date(2026, 1, 5) + timedelta(weeks=i)).isoformat() for i in range(3000)]
    cal = parse_calendar({"time_zone": "UTC", "hours": {"mon": "08:00-09:00"}, "holidays": days})
    with pytest.raises(CalendarError, match="no working time in"):
        add_business_time(cal, utc(2026, 1, 1), H)


def test_round_trip() -> None:
    form = {
        "time_zone": "Europe/Paris",
        "hours": {"mon": "08:00-12:00,13:30-18:00", "sat": "00:00-24:00"},
        "holidays": ["2026-12-25"],
    }
    assert calendar_form(parse_calendar(form)) == form
    assert parse_calendar(calendar_form(parse_calendar(form))) == parse_calendar(form)


ZONES = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    hours = []
    for _ in range(7):
        cuts = sorted(set(draw(st.lists(st.integers(0, 48), max_size=4))))
        pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
        windows = tuple(
            (time(a // 2, 30 * (a % 2)), time(0) if b == 48 else time(b // 2, 30 * (b % 2)))
            for a, b in pairs
        )
        hours.append(windows)
    if not any(hours):
        hours[0] = ((time(9), time(17)),)
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20))
    return BusinessCalendar(draw(st.sampled_from(ZONES)), tuple(hours), holidays)


starts = st.datetimes(datetime(2026, 1, 1), datetime(2027, 6, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
durations = st.integers(0, 60 * 200).map(lambda m: timedelta(minutes=m))


@settings(max_examples=100, deadline=None)
@given(calendars(), starts, durations)
def test_between_inverts_add(cal: BusinessCalendar, s: datetime, d: timedelta) -> None:
    assert business_time_between(cal, s, add_business_time(cal, s, d)) == d


@settings(max_examples=100, deadline=None)
@given(calendars(), starts, durations, durations)
def test_add_composes_and_is_monotonic(
    cal: BusinessCalendar, s: datetime, a: timedelta, b: timedelta
) -> None:
    assert add_business_time(cal, add_business_time(cal, s, a), b) == add_business_time(
        cal, s, a + b
    )
    assert add_business_time(cal, s, a) <= add_business_time(cal, s, a + b)


@settings(max_examples=100, deadline=None)
@given(calendars(), starts, starts, starts)
def test_between_bounded_splits_and_pauses(
    cal: BusinessCalendar, a: datetime, m: datetime, b: datetime
) -> None:
    a, m, b = sorted([a, m, b])
    whole = business_time_between(cal, a, b)
    assert whole <= b - a
    assert whole == business_time_between(cal, a, m) + business_time_between(cal, m, b)
    assert business_time_between(cal, a, b, [(m, None)]) <= whole


@settings(max_examples=100, deadline=None)
@given(calendars(), starts, starts, durations)
def test_add_monotonic_in_start_and_ends_in_a_window(
    cal: BusinessCalendar, s1: datetime, s2: datetime, d: timedelta
) -> None:
    s1, s2 = sorted([s1, s2])
    assert add_business_time(cal, s1, d) <= add_business_time(cal, s2, d)
    if d > timedelta(0):
        due = add_business_time(cal, s1, d)
        # the second before the due instant is working time: due is inside a window or its end
        second = timedelta(seconds=1)
        assert business_time_between(cal, due - second, due) == second
