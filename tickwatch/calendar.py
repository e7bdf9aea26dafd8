"""Trading sessions: which session a bar belongs to and its minute of the exchange's day.

The sessions come from `exchange_calendars` (a maintained library of exchange calendars:
`XNYS` for US equities, `CMES` for CME Globex futures, `24/7` for crypto, and many more). A
session runs from its open to the next session's open, so pre- and post-market bars stay with
the day they trade on and a futures session that opens the evening before belongs to the date
it closes on. Minutes of the day are the exchange's local clock. (A daily bar stamped at
midnight UTC falls in the session before its date: every daily bar is still a session of its
own, which is all the features and the detector need of it.)

One calendar is active per process (`use_calendar`, from `features.calendar`): the features,
the detector and the backtest must agree on it, and the detector records the one it was fitted
with.
"""

from __future__ import annotations

import bisect
import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_CALENDAR = "XNYS"
FIRST_YEAR = 1990  # sessions are built from here to two years ahead of today


class Calendar:
    """One exchange's sessions as sorted open times (UTC ms) and their dates."""

    def __init__(self, name: str) -> None:
        import exchange_calendars as xc

        try:
            cal = xc.get_calendar(
                name,
                start=dt.date(FIRST_YEAR, 1, 2).isoformat(),
                end=(dt.date.today() + dt.timedelta(days=730)).isoformat(),
            )
        except xc.errors.InvalidCalendarName as exc:
            raise ValueError(
                f"unknown calendar {name!r}: use an exchange_calendars name such as XNYS, "
                "CMES or 24/7"
            ) from exc
        self.name = name
        self.tz = ZoneInfo(str(cal.tz))
        schedule = cal.schedule
        self.opens = [int(t.value // 1_000_000) for t in schedule["open"]]
        self.labels = [d.year * 10_000 + d.month * 100 + d.day for d in schedule.index]

    def slot(self, start_ms: int) -> tuple[int, int]:
        """(session date as yyyymmdd, minute of the exchange's day) of a bar starting then."""
        local = dt.datetime.fromtimestamp(start_ms / 1000, tz=self.tz)
        i = bisect.bisect_right(self.opens, start_ms) - 1
        return self.labels[max(i, 0)], local.hour * 60 + local.minute


@lru_cache(maxsize=16)
def calendar(name: str) -> Calendar:
    """The named calendar, built once per process."""
    return Calendar(name)
