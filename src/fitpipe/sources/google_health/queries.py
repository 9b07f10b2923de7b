"""Which Google Health data types fitpipe reads, and the filter that selects one local day of each.

A participant's local day is fitpipe's (fitpipe.days: the zone history, DST included), not the
device's clock: a day's physical window comes from DayContext.bounds and is sent as a
physical-time filter, so a participant whose watch still shows another zone after a flight
gets exactly the instants the study's day owns. Daily types are selected by their `date`.

Nights: fitpipe's day D owns the night that starts on D's evening. Google dates a night's
daily summaries by the day it ends, so daily HRV for day D is the one dated D+1. Sleep can
only be filtered by its end time, so the sleep query asks for sessions ending up to a day
after the night window and the format keeps those that start inside it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fitpipe.catalogue import DayWindow
from fitpipe.days import DayContext

# Google's limits (ListDataPointsRequest.page_size): 10,000 points, 25 for sleep and exercise.
MAX_PAGE_SIZE = 10_000
MAX_SESSION_PAGE_SIZE = 25


@dataclass(frozen=True)
class DataTypeQuery:
    data_type: str  # the kebab-case id in the URL, e.g. heart-rate
    key: str  # the JSON key of the point's data, e.g. heartRate
    filter_field: str  # AIP-160 field the day is selected by
    window: DayWindow  # which instants (or which date) of the local day the type belongs to
    page_size: int = MAX_PAGE_SIZE
    # Daily types: the date that holds day D's value is D + date_shift.
    date_shift: int = 0
    # Session types filtered by end time: how far past the window a session may end.
    end_slack: dt.timedelta = dt.timedelta(0)

    @property
    def parent(self) -> str:
        return f"users/me/dataTypes/{self.data_type}"

    def day_filter(self, ctx: DayContext) -> str:
        field = self.filter_field
        if self.window is DayWindow.DATE:
            day = ctx.day + dt.timedelta(days=self.date_shift)
            return f'{field} >= "{day.isoformat()}" AND {field} < "{(day + dt.timedelta(days=1)).isoformat()}"'
        lo, hi = ctx.bounds(self.window)
        return f'{field} >= "{rfc3339(lo)}" AND {field} < "{rfc3339(hi + self.end_slack)}"'


def rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


QUERIES: tuple[DataTypeQuery, ...] = (
    DataTypeQuery("heart-rate", "heartRate", "heart_rate.sample_time.physical_time", DayWindow.CALENDAR),
    DataTypeQuery(
        "active-zone-minutes", "activeZoneMinutes", "active_zone_minutes.interval.start_time", DayWindow.CALENDAR
    ),
    DataTypeQuery("steps", "steps", "steps.interval.start_time", DayWindow.CALENDAR),
    DataTypeQuery(
        "oxygen-saturation", "oxygenSaturation", "oxygen_saturation.sample_time.physical_time", DayWindow.NIGHT
    ),
    DataTypeQuery(
        "heart-rate-variability",
        "heartRateVariability",
        "heart_rate_variability.sample_time.physical_time",
        DayWindow.NIGHT,
    ),
    DataTypeQuery(
        "respiratory-rate-sleep-summary",
        "respiratoryRateSleepSummary",
        "respiratory_rate_sleep_summary.sample_time.physical_time",
        DayWindow.NIGHT,
    ),
    DataTypeQuery(
        "sleep",
        "sleep",
        "sleep.interval.end_time",
        DayWindow.NIGHT,
        page_size=MAX_SESSION_PAGE_SIZE,
        end_slack=dt.timedelta(days=1),
    ),
    DataTypeQuery("daily-resting-heart-rate", "dailyRestingHeartRate", "daily_resting_heart_rate.date", DayWindow.DATE),
    DataTypeQuery(
        "daily-heart-rate-variability",
        "dailyHeartRateVariability",
        "daily_heart_rate_variability.date",
        DayWindow.DATE,
        date_shift=1,
    ),
)
