"""Which instants a participant's local day owns: the one rule, used by parsing, loading,
rollups, imputation and export.

- A calendar metric (heart rate, AZM) owns [D 00:00, D+1 00:00) local.
- A night metric (SpO2, HRV, sleep) owns the night that starts on the evening of D,
  [D 12:00, D+1 12:00) local. A source whose convention differs (the Fitbit Web API dates a
  night by its wake-up day) shifts its payloads to this one before handing them over.
- A dated metric (daily summaries) owns the rows dated D.

"Local" is the zone in force on that day (participants.timezone_history). Day D starts at its
boundary hour in D's zone and ends where D+1 starts, in D+1's zone, so consecutive days neither
overlap nor leave a gap, even on the day a participant changes zone: that day is shorter or
longer by the offset difference, as it is for the person who travelled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fitpipe.catalogue import DayWindow, Metric
from fitpipe.timezones import local_instant

ONE_DAY = dt.timedelta(days=1)


class ZoneHistory(Protocol):
    def zone_on(self, day: dt.date) -> str: ...


def start_hour(window: DayWindow) -> int:
    return 12 if window is DayWindow.NIGHT else 0


@dataclass(frozen=True)
class DayContext:
    user_id: int
    day: dt.date
    # The zone in force on `day`; wall times in the day's payloads are read in it.
    timezone: str
    # The zone in force on the next day, where this day ends; the same zone unless it changes.
    next_timezone: str | None = None

    def bounds(self, window: DayWindow) -> tuple[dt.datetime, dt.datetime]:
        """[lo, hi) as aware UTC datetimes of the instants this day owns under `window`."""
        hour = start_hour(window)
        lo = local_instant(self.day, hour, self.timezone)
        hi = local_instant(self.day + ONE_DAY, hour, self.next_timezone or self.timezone)
        return lo, hi

    def window(self, metric: Metric) -> tuple[np.datetime64, np.datetime64] | None:
        """[lo, hi) of the instants (naive UTC, numpy) that this local day owns for the metric."""
        if metric.window is DayWindow.DATE:
            return None
        lo, hi = self.bounds(metric.window)
        return (np.datetime64(lo.replace(tzinfo=None), "us"), np.datetime64(hi.replace(tzinfo=None), "us"))

    def intraday_window(self, metric: Metric) -> tuple[np.datetime64, np.datetime64]:
        """window() of a metric that is not one value per date, which always has one."""
        window = self.window(metric)
        if window is None:
            raise ValueError(f"{metric.name} is one value per date: it has no window of instants")
        return window


def days_between(first: dt.date, last: dt.date):
    for offset in range((last - first).days + 1):
        yield first + dt.timedelta(days=offset)


class DayCutter:
    """The rule above for many instants at once: which local day owns each instant under one
    window, by the participant's timezone history. Day D owns [start(D), start(D+1)), the starts
    DayContext.bounds gives, so the cut is exactly the one replace_day deletes by. Used where
    records arrive unsorted by day (a Takeout archive's files)."""

    def __init__(self, user: ZoneHistory, window: DayWindow):
        self.user, self.window = user, window
        self.first: dt.date | None = None
        self.starts = np.array([], dtype="datetime64[us]")

    def _cover(self, lo: dt.date, hi: dt.date) -> None:
        if self.first is not None and lo >= self.first and hi < self.first + dt.timedelta(days=len(self.starts) - 1):
            return
        if self.first is not None:
            lo = min(lo, self.first)
            hi = max(hi, self.first + dt.timedelta(days=len(self.starts)))
        hour = start_hour(self.window)
        count = (hi - lo).days + 2
        self.starts = np.array(
            [
                np.datetime64(
                    local_instant(
                        lo + dt.timedelta(days=i), hour, self.user.zone_on(lo + dt.timedelta(days=i))
                    ).replace(tzinfo=None),
                    "us",
                )
                for i in range(count)
            ]
        )
        self.first = lo

    def days(self, utc: np.ndarray) -> np.ndarray:
        """datetime64[D] local day per instant (utc without NaT)."""
        if not len(utc):
            return np.array([], dtype="datetime64[D]")
        approx = utc.astype("datetime64[D]")
        self._cover(approx.min().item() - dt.timedelta(days=2), approx.max().item() + dt.timedelta(days=2))
        index = np.searchsorted(self.starts, utc, side="right") - 1
        return np.datetime64(self.first, "D") + index
