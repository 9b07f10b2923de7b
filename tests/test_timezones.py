"""The scalar boundary function agrees with the vectorised mapping, hour by hour."""

import datetime as dt

import numpy as np
import pytest

from fitpipe.derive.imputation import fill
from fitpipe.timezones import local_instant, local_to_utc

# Zones whose clocks jump at midnight (Santiago, Havana, Beirut) and by half hours (Kolkata).
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Asia/Kolkata",
    "UTC",
]


@pytest.mark.parametrize("zone", ZONES)
def test_local_instant_matches_local_to_utc_shift_forward(zone):
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    walls = np.array([np.datetime64(dt.datetime(d.year, d.month, d.day, h), "us") for d in days for h in (0, 1, 2, 12)])
    expected = local_to_utc(walls, zone, nonexistent="shift_forward")
    got = [local_instant(d, h, zone) for d in days for h in (0, 1, 2, 12)]
    mismatches = [
        (w, e, g) for w, e, g in zip(walls, expected, got) if e.astype(dt.datetime).replace(tzinfo=dt.UTC) != g
    ]
    assert not mismatches, mismatches[:5]


def test_local_day_lengths_follow_dst():
    def hours(day):
        return (
            local_instant(day + dt.timedelta(days=1), 0, "America/New_York") - local_instant(day, 0, "America/New_York")
        ) / dt.timedelta(hours=1)

    assert hours(dt.date(2024, 3, 10)) == 23
    assert hours(dt.date(2024, 11, 3)) == 25
    assert hours(dt.date(2024, 6, 1)) == 24


def test_profile_shrinks_to_linear_without_a_daily_rhythm():
    """Pure noise has no daily rhythm: the profile method must then behave like the line."""
    rng = np.random.default_rng(7)
    minutes = 14 * 1440
    series = 70 + np.cumsum(rng.normal(0, 0.3, minutes))
    series[5000:5060] = np.nan
    minute_of_day = np.arange(minutes) % 1440
    linear, _ = fill(series, minute_of_day, "linear", 120)
    profile, _ = fill(series, minute_of_day, "profile", 120)
    gap = slice(5000, 5060)
    assert np.nanmax(np.abs(profile[gap] - linear[gap])) < 1.0


def test_half_hour_jump_starts_at_the_transition():
    """Lord Howe Island moves its clocks by 30 minutes (02:00 -> 02:30 on 2024-10-06). The day's
    02:00 boundary is the transition instant itself; pandas' shift_forward would skip a whole hour."""
    assert local_instant(dt.date(2024, 10, 6), 2, "Australia/Lord_Howe") == dt.datetime(
        2024, 10, 5, 15, 30, tzinfo=dt.UTC
    )
