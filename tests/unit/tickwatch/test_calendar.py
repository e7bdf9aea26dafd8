"""Sessions and minutes of the day from exchange calendars (XNYS, CMES, 24/7)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tickwatch.calendar import calendar
from tickwatch.features import active_calendar, session_slot, use_calendar


def _ms(text: str, tz: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_us_equities_sessions_run_from_open_to_next_open() -> None:
    xnys = calendar("XNYS")
    assert xnys.slot(_ms("2024-07-03 09:30", "America/New_York")) == (20240703, 570)
    assert xnys.slot(_ms("2024-07-03 15:59", "America/New_York")) == (20240703, 959)
    # after-hours stays with its day; the next day's pre-market too (the open is the boundary)
    assert xnys.slot(_ms("2024-07-03 18:00", "America/New_York"))[0] == 20240703
    # July 4th is a holiday: its bars (if any) belong to the 3rd, the 5th opens a new session
    assert xnys.slot(_ms("2024-07-05 09:00", "America/New_York"))[0] == 20240703
    assert xnys.slot(_ms("2024-07-05 09:30", "America/New_York"))[0] == 20240705


def test_cme_globex_sessions_open_the_evening_before() -> None:
    cmes = calendar("CMES")
    # Sunday 17:00 Chicago opens Monday's session; Labor Day 2013 closed early, and Tuesday's
    # session opened on Monday evening
    assert cmes.slot(_ms("2013-09-01 17:00", "America/Chicago")) == (20130902, 17 * 60)
    assert cmes.slot(_ms("2013-09-02 11:59", "America/Chicago"))[0] == 20130902
    assert cmes.slot(_ms("2013-09-02 17:00", "America/Chicago"))[0] == 20130903


def test_crypto_sessions_are_utc_days() -> None:
    always = calendar("24/7")
    assert always.slot(_ms("2022-01-05 23:59", "UTC")) == (20220105, 23 * 60 + 59)
    assert always.slot(_ms("2022-01-06 00:00", "UTC")) == (20220106, 0)


def test_the_active_calendar_drives_session_slot_and_unknown_names_are_refused() -> None:
    before = active_calendar().name
    t = _ms("2013-09-01 17:00", "America/Chicago")
    try:
        use_calendar("CMES")
        assert session_slot(t)[0] == 20130902
        use_calendar("XNYS")
        assert session_slot(t)[0] == 20130830  # Friday's NYSE session: no new open since
        with pytest.raises(ValueError, match="unknown calendar"):
            use_calendar("NOPE")
    finally:
        use_calendar(before)
