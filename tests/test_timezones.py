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

NY = "America/New_York"


@pytest.mark.parametrize("zone", ZONES)
def test_local_instant_matches_local_to_utc_shift_forward(zone):
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    walls = np.array([np.datetime64(dt.datetime(d.year, d.month, d.day, h), "us") for d in days for h in (0, 1, 2, 12)])
    expected = local_to_utc(walls, zone, nonexistent="shift_forward")
    got = [local_instant(d, h, zone) for d in days for h in (0, 1, 2, 12)]
    mismatches = [
        (w, e, g)
        for w, e, g in zip(walls, expected, got, strict=True)
        if e.astype(dt.datetime).replace(tzinfo=dt.UTC) != g
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


def local_seconds(day: str, hours: int = 24) -> np.ndarray:
    start = np.datetime64(f"{day}T00:00:00", "s")
    return np.arange(start, start + np.timedelta64(hours * 3600, "s"), np.timedelta64(1, "s")).astype("datetime64[us]")


def local(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[us]")


def utc(value: str) -> np.datetime64:
    return np.datetime64(value, "us")


def test_spring_forward_gap_is_nat():
    out = local_to_utc(
        local(
            "2024-03-10T01:59:59",
            "2024-03-10T02:00:00",
            "2024-03-10T02:30:00",
            "2024-03-10T02:59:59",
            "2024-03-10T03:00:00",
            "2024-03-10T03:30:00",
        ),
        NY,
    )
    assert out.dtype == np.dtype("datetime64[us]")
    assert out[0] == utc("2024-03-10T06:59:59")  # EST
    assert np.isnat(out[1:4]).all()
    assert out[4] == utc("2024-03-10T07:00:00")  # EDT
    assert out[5] == utc("2024-03-10T07:30:00")


def test_spring_forward_full_day():
    values = local_seconds("2024-03-10")
    out = local_to_utc(values, NY)
    assert len(out) == 86_400
    nat = np.isnat(out)
    assert nat.sum() == 3_600
    # Exactly the 02:xx local hour is missing.
    hours = values.astype("datetime64[h]") - np.datetime64("2024-03-10T00", "h")
    assert (nat == (hours == np.timedelta64(2, "h"))).all()
    real = out[~nat]
    assert len(np.unique(real)) == 82_800  # no NaT-hour value collides with a real 03:xx time
    assert (np.diff(real) > np.timedelta64(0)).all()
    assert real[0] == utc("2024-03-10T05:00:00") and real[-1] == utc("2024-03-11T03:59:59")


def test_fall_back_ambiguous_first_then_second_occurrence():
    out = local_to_utc(
        local(
            "2024-11-03T00:10:00",
            "2024-11-03T01:30:00",
            "2024-11-03T01:59:59",
            "2024-11-03T01:30:00",
            "2024-11-03T02:00:00",
        ),
        NY,
    )
    assert out[0] == utc("2024-11-03T04:10:00")
    assert out[1] == utc("2024-11-03T05:30:00")  # first 01:30 -> EDT (UTC-4)
    assert out[2] == utc("2024-11-03T05:59:59")
    assert out[3] == utc("2024-11-03T06:30:00")  # the repeated 01:30 -> EST (UTC-5)
    assert out[4] == utc("2024-11-03T07:00:00")
    assert not np.isnat(out).any()


def test_fall_back_full_day():
    out = local_to_utc(local_seconds("2024-11-03"), NY)
    assert len(out) == 86_400
    assert not np.isnat(out).any()
    assert len(np.unique(out)) == 86_400
    assert out[0] == utc("2024-11-03T04:00:00") and out[-1] == utc("2024-11-04T04:59:59")


def test_fall_back_device_reporting_the_repeated_hour_keeps_both():
    values = np.concatenate([local_seconds("2024-11-03", 2), local_seconds("2024-11-03")[3600:]])
    assert len(values) == 90_000
    out = local_to_utc(values, NY)
    assert not np.isnat(out).any()
    assert len(np.unique(out)) == 90_000
    assert (np.diff(out) == np.timedelta64(1, "s")).all()  # one continuous 25-hour day


def test_utc_is_identity():
    values = local_seconds("2024-03-10", 3)
    assert (local_to_utc(values, "UTC") == values).all()


def test_local_instant_day_lengths():
    def length(day: dt.date) -> dt.timedelta:
        return local_instant(day + dt.timedelta(days=1), 0, NY) - local_instant(day, 0, NY)

    assert length(dt.date(2024, 3, 10)) == dt.timedelta(hours=23)
    assert length(dt.date(2024, 11, 3)) == dt.timedelta(hours=25)
    assert length(dt.date(2024, 6, 1)) == dt.timedelta(hours=24)
    midnight = local_instant(dt.date(2024, 3, 10), 0, NY)
    assert midnight == dt.datetime(2024, 3, 10, 5, tzinfo=dt.UTC)
    assert midnight.utcoffset() == dt.timedelta(0)
    # An hour inside the gap is shifted forward to the first instant that exists.
    assert local_instant(dt.date(2024, 3, 10), 2, NY) == dt.datetime(2024, 3, 10, 7, tzinfo=dt.UTC)
