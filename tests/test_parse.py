"""Pure parser tests: payloads in, typed rows and quarantine out. No database.

Most payloads here are built by hand in the Fitbit Web API shape the synthetic source produces
(see ../shared/reference/wearipedia-fitbit.md), so each test controls exactly one quirk. A few
tests generate a real synthetic day (~0.4 s each) to check the source's own corrections.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from fitpipe.catalogue import BY_NAME, DayWindow
from fitpipe.days import DayContext
from fitpipe.sources.synthetic.parse import parse_payloads
from fitpipe.sources.synthetic.source import (
    NIGHT_KINDS,
    SyntheticSource,
    move_night_to_its_evening,
)
from fitpipe.sources.synthetic.wear_gaps import gaps_for
from support.sources import fetch_now, synthetic_user


def synthetic_seed_for(user_id: int) -> int:
    return SyntheticSource.default_settings(user_id)["seed"]


NY = "America/New_York"
D = dt.date(2024, 1, 10)
NEXT = D + dt.timedelta(days=1)


# --------------------------------------------------------------------------------------------
# payload builders (the shapes of wearipedia's Fitbit payloads)


def hr_payload(points: list[dict]) -> dict:
    return {
        "intraday_heart_rate": [
            {
                "heart_rate_day": [
                    {
                        "activities-heart": [],
                        "activities-heart-intraday": {"dataset": points, "datasetInterval": 1, "datasetType": "second"},
                    }
                ]
            }
        ]
    }


def azm_payload(day: dt.date, minutes: list[dict]) -> dict:
    return {
        "intraday_active_zone_minute": [
            {"activities-active-zone-minutes-intraday": [{"dateTime": day.isoformat(), "minutes": minutes}]}
        ]
    }


def spo2_payload(day: dt.date, minutes: list[dict]) -> dict:
    return {"intraday_spo2": [{"dateTime": day.isoformat(), "minutes": minutes}]}


def hrv_payload(day: dt.date, minutes: list[dict]) -> dict:
    return {"intraday_hrv": [{"hrv": [{"minutes": minutes, "dateTime": day.isoformat()}]}]}


def hrv_value(rmssd: float = 40.0) -> dict:
    return {"rmssd": rmssd, "coverage": 0.9, "hf": 300.0, "lf": 150.0}


def night_payloads(day: dt.date, stamps: list[str]) -> dict:
    """SpO2 and HRV points at the given stamps, as the source lists them under `day`."""
    return {
        **spo2_payload(day, [{"value": 95.0 + i % 3, "minute": s} for i, s in enumerate(stamps)]),
        **hrv_payload(day, [{"minute": s + ".000", "value": hrv_value(30.0 + i)} for i, s in enumerate(stamps)]),
    }


def sleep_log(day: dt.date, start: str, end: str, segments: list[dict], **overrides) -> dict:
    log = {
        "dateOfSleep": day.isoformat(),
        "startTime": start,
        "endTime": end,
        "duration": 7 * 3600 * 1000,
        "efficiency": 93,
        "isMainSleep": True,
        "logId": 123456789,
        "minutesAsleep": 400,
        "minutesAwake": 20,
        "minutesToFallAsleep": 3,
        "minutesAfterWakeup": 1,
        "timeInBed": 420,
        "type": "stages",
        "levels": {"data": segments, "shortData": [], "summary": {}},
    }
    log.update(overrides)
    return log


def sleep_payload(*logs: dict) -> dict:
    return {"sleep": [{"sleep": list(logs)}]}


def utc(local: str, timezone: str = "UTC", fold: int = 0) -> np.datetime64:
    """The naive-UTC instant of a local wall time, computed with zoneinfo (not fitpipe)."""
    wall = dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(timezone), fold=fold)
    return np.datetime64(wall.astimezone(dt.UTC).replace(tzinfo=None), "us")


def reasons(parsed, metric: str) -> list[str]:
    return [q.reason for q in parsed.quarantined if q.metric == metric]


def column(parsed, table: str, name: str) -> np.ndarray:
    return parsed.rows[table].columns[name]


# --------------------------------------------------------------------------------------------
# night ownership: SpO2 and HRV of day D's night live in [D 12:00, D+1 12:00) local


def test_hrv_after_midnight_times_are_unwrapped_onto_the_next_day():
    # The night starts on D's evening; the source stamps its after-midnight points with D's date.
    evening = [f"{D}T23:{m:02d}:07" for m in (57, 58, 59)]
    wrapped = [f"{D}T00:{m:02d}:07" for m in (0, 1, 2)] + [f"{D}T06:59:07"]
    payloads = night_payloads(D, evening + wrapped)

    # Unfixed, the wrapped points would land on the morning of D itself, before the window opens.
    raw = parse_payloads(payloads, DayContext(1, D, "UTC"))
    assert len(raw.rows["hrv_intraday"]) == len(evening)
    assert len(reasons(raw, "hrv_intraday")) == len(wrapped)
    assert all("outside local day" in r for r in reasons(raw, "hrv_intraday"))

    move_night_to_its_evening(payloads, D)
    stamps = [p["minute"] for p in payloads["intraday_hrv"][0]["hrv"][0]["minutes"]]
    assert stamps[:3] == [s + ".000" for s in evening]
    assert stamps[3:] == [f"{NEXT}{s[10:]}.000" for s in wrapped]

    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))
    assert parsed.quarantined == []
    ts = column(parsed, "hrv_intraday", "ts")
    expected = [utc(s) for s in evening] + [utc(f"{NEXT}{s[10:]}") for s in wrapped]
    assert list(ts) == expected
    assert np.all(np.diff(ts) > np.timedelta64(0, "s")), "unwrapped night must be in time order"
    np.testing.assert_allclose(column(parsed, "hrv_intraday", "rmssd"), [30.0 + i for i in range(len(expected))])


def test_spo2_of_a_night_starting_after_midnight_goes_to_the_next_day():
    # A whole night that starts at 00:30 is listed under D, stamped with D's date.
    stamps = [f"{D}T00:30:00", f"{D}T00:31:00", f"{D}T03:00:00", f"{D}T07:45:00"]
    payloads = night_payloads(D, stamps)
    move_night_to_its_evening(payloads, D)
    assert [p["minute"] for p in payloads["intraday_spo2"][0]["minutes"]] == [f"{NEXT}{s[10:]}" for s in stamps]

    for timezone in ("UTC", NY):
        parsed = parse_payloads(payloads, DayContext(3, D, timezone))
        assert parsed.quarantined == []
        assert list(column(parsed, "spo2", "ts")) == [utc(f"{NEXT}{s[10:]}", timezone) for s in stamps]
        assert set(column(parsed, "spo2", "user_id")) == {3}
        lo, hi = DayContext(3, D, timezone).window(BY_NAME["spo2"])
        assert lo == utc(f"{D}T12:00:00", timezone) and hi == utc(f"{NEXT}T12:00:00", timezone)


def test_points_already_on_the_next_morning_and_afternoon_points_are_left_alone():
    stamps = [f"{D}T21:00:00", f"{NEXT}T01:00:00", f"{NEXT}T11:59:59"]
    payloads = night_payloads(D, stamps)
    move_night_to_its_evening(payloads, D)
    assert [p["minute"] for p in payloads["intraday_spo2"][0]["minutes"]] == stamps


def test_night_points_outside_the_night_window_are_quarantined():
    # Noon of D+1 belongs to the next night; 11:00 on D to the previous one.
    payloads = night_payloads(D, [f"{D}T11:00:00", f"{D}T12:00:00", f"{NEXT}T11:59:00", f"{NEXT}T12:00:00"])
    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))
    assert list(column(parsed, "spo2", "ts")) == [utc(f"{D}T12:00:00"), utc(f"{NEXT}T11:59:00")]
    assert reasons(parsed, "spo2") == [f"outside local day {D} of this metric"] * 2


@pytest.mark.slow
def test_generated_nights_lie_in_their_window_and_in_time_order():
    user = synthetic_user(7, NY, D, wear_gaps=False, display_name="p7")
    payloads = SyntheticSource().fetch_day(user, D, fetch_now())
    ctx = DayContext(7, D, NY)
    parsed = parse_payloads(payloads, ctx)
    for table in ("spo2", "hrv_intraday"):
        ts = column(parsed, table, "ts")
        lo, hi = ctx.window(BY_NAME[table])
        assert len(ts) >= 300, f"{table}: a night has 360-540 minutes"
        assert ts.min() >= lo and ts.max() < hi
        assert np.all(np.diff(ts) > np.timedelta64(0, "s")), f"{table} is not in time order: wrapping left"
        assert not reasons(parsed, table)


# --------------------------------------------------------------------------------------------
# AZM, validation and quarantine


def test_azm_missing_zone_keys_become_zero():
    minutes = [
        {"minute": "00:00:00", "value": {"activeZoneMinutes": 0}},
        {"minute": "00:01:00", "value": {"activeZoneMinutes": 1, "fatBurnActiveZoneMinutes": 1}},
        {"minute": "00:02:00", "value": {"activeZoneMinutes": 2, "cardioActiveZoneMinutes": 1}},
        {"minute": "00:03:00", "value": {"activeZoneMinutes": 2, "peakActiveZoneMinutes": 1}},
    ]
    parsed = parse_payloads(azm_payload(D, minutes), DayContext(1, D, "UTC"))
    assert parsed.quarantined == []
    expect = {
        "active_zone_minutes": [m["value"]["activeZoneMinutes"] for m in minutes],
        "fat_burn_minutes": [m["value"].get("fatBurnActiveZoneMinutes", 0) for m in minutes],
        "cardio_minutes": [m["value"].get("cardioActiveZoneMinutes", 0) for m in minutes],
        "peak_minutes": [m["value"].get("peakActiveZoneMinutes", 0) for m in minutes],
    }
    for name, values in expect.items():
        assert column(parsed, "active_zone_minutes", name).tolist() == values, name
    assert list(column(parsed, "active_zone_minutes", "ts")) == [utc(f"{D}T{m['minute']}") for m in minutes]


def test_malformed_and_out_of_range_heart_rate_records_are_quarantined_with_reasons():
    good = [{"time": f"10:00:{s:02d}", "value": 60.0 + s} for s in range(10)]
    bad = [
        ({"time": "11:00:00", "value": "abc"}, "not a number", "'abc'"),
        ({"value": 77.5}, "malformed", "77.5"),
        ({"time": "11:00:02", "value": 400}, "range", "400"),
        ({"time": "11:00:03", "value": 20.0}, "range", "20.0"),
        ({"time": "11:00:04"}, "malformed", "11:00:04"),
        ({"time": "11:00:05", "value": None}, "missing", "None"),
        ({"time": "25:61:00", "value": 70.0}, "malformed local time", "25:61:00"),
        ({"time": 36000, "value": 70.0}, "malformed", "36000"),
        ("not a record", "malformed", "not a record"),
    ]
    payloads = hr_payload(good[:5] + [b[0] for b in bad] + good[5:])
    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))

    assert list(column(parsed, "heart_rate", "ts")) == [utc(f"{D}T{p['time']}") for p in good]
    np.testing.assert_allclose(column(parsed, "heart_rate", "bpm"), [p["value"] for p in good])
    quarantined = [q for q in parsed.quarantined if q.metric == "heart_rate"]
    assert len(quarantined) == len(bad) == len(parsed.quarantined)
    for record, reason_word, raw_part in bad:
        matching = [q for q in quarantined if q.raw_value == repr(record)]
        assert len(matching) == 1, f"{record!r} not quarantined exactly once: {quarantined}"
        assert reason_word in matching[0].reason, (record, matching[0].reason)
        assert raw_part in matching[0].raw_value
    for q in quarantined:
        if "range" in q.reason:
            assert "25..250" in q.reason, q.reason


def test_other_metrics_validate_against_the_catalogue_ranges():
    spo2 = BY_NAME["spo2"].value("spo2_pct")
    stamps = [f"{D}T23:00:00", f"{D}T23:01:00", f"{D}T23:02:00", f"{D}T23:03:00"]
    values = [spo2.high + 1, spo2.low - 1, spo2.high, spo2.low]
    payloads = {
        **spo2_payload(D, [{"value": v, "minute": s} for v, s in zip(values, stamps, strict=True)]),
        **hrv_payload(
            D,
            [
                {"minute": stamps[0], "value": hrv_value(301.0)},
                {"minute": stamps[1], "value": {"rmssd": 30.0}},
                {"minute": stamps[2]},
                {"minute": stamps[3], "value": hrv_value(42.0)},
            ],
        ),
        **azm_payload(
            D,
            [
                {"minute": "09:00:00", "value": {"activeZoneMinutes": 9}},
                {"minute": "09:01:00", "value": {"fatBurnActiveZoneMinutes": 1}},
                {"minute": "09:02:00", "value": {"activeZoneMinutes": 1, "fatBurnActiveZoneMinutes": 1}},
            ],
        ),
    }
    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))

    assert column(parsed, "spo2", "spo2_pct").tolist() == [spo2.high, spo2.low]
    assert sorted(reasons(parsed, "spo2")) == [f"spo2_pct outside its valid range {spo2.low:g}..{spo2.high:g}"] * 2
    assert column(parsed, "hrv_intraday", "rmssd").tolist() == [42.0]
    hrv_reasons = reasons(parsed, "hrv_intraday")
    assert len(hrv_reasons) == 3
    assert sum("rmssd outside its valid range" in r for r in hrv_reasons) == 1
    assert sum(r == "malformed record" for r in hrv_reasons) == 2
    assert column(parsed, "active_zone_minutes", "active_zone_minutes").tolist() == [1]
    azm_reasons = reasons(parsed, "active_zone_minutes")
    assert len(azm_reasons) == 2
    assert any("active_zone_minutes outside its valid range 0..3" in r for r in azm_reasons)
    assert "malformed record" in azm_reasons


def test_malformed_sleep_logs_and_segments_are_quarantined_and_the_rest_loads():
    segments = [
        {"dateTime": f"{D}T23:00:00.000", "level": "light", "seconds": 600},
        {"dateTime": f"{D}T23:10:00.000", "level": "deep", "seconds": 1200},
        {"dateTime": f"{D}T23:30:00.000", "seconds": 60},  # no level
        {"dateTime": f"{D}T23:31:00.000", "level": "rem", "seconds": -5},  # out of range
    ]
    good = sleep_log(D, f"{D}T23:00:00.000", f"{NEXT}T06:00:00.000", segments)
    broken = {
        k: v for k, v in sleep_log(D, f"{D}T22:00:00.000", f"{NEXT}T05:00:00.000", []).items() if k != "efficiency"
    }
    parsed = parse_payloads(sleep_payload(good, broken), DayContext(1, D, "UTC"))

    assert list(column(parsed, "sleep_sessions", "start_ts")) == [utc(f"{D}T23:00:00")]
    assert list(column(parsed, "sleep_sessions", "end_ts")) == [utc(f"{NEXT}T06:00:00")]
    assert column(parsed, "sleep_sessions", "duration_s").tolist() == [good["duration"] // 1000]
    assert list(column(parsed, "sleep_sessions", "date_of_sleep")) == [np.datetime64(D, "D")]
    assert reasons(parsed, "sleep_sessions") == ["malformed sleep log"]
    assert column(parsed, "sleep_stages", "stage").tolist() == ["light", "deep"]
    stage_reasons = reasons(parsed, "sleep_stages")
    assert "malformed sleep segment" in stage_reasons
    assert any("seconds outside its valid range" in r for r in stage_reasons)
    assert len(stage_reasons) == 2


def test_duplicate_keys_are_quarantined_keeping_the_first():
    points = [
        {"time": "08:00:00", "value": 70.0},
        {"time": "08:00:01", "value": 71.0},
        {"time": "08:00:00", "value": 99.0},
        {"time": "08:00:01", "value": 98.0},
    ]
    parsed = parse_payloads(hr_payload(points), DayContext(1, D, "UTC"))
    assert column(parsed, "heart_rate", "bpm").tolist() == [70.0, 71.0]
    assert reasons(parsed, "heart_rate") == ["duplicate key in the payload"] * 2
    assert {q.raw_value for q in parsed.quarantined} == {repr(points[2]), repr(points[3])}

    # Sleep stages: the stage and is_short are part of the key, so the same second twice is fine
    # for two stages, but the same (second, stage) twice is a duplicate.
    start = f"{D}T23:00:00.000"
    segments = [
        {"dateTime": start, "level": "light", "seconds": 60},
        {"dateTime": start, "level": "deep", "seconds": 60},
        {"dateTime": start, "level": "light", "seconds": 90},
    ]
    log = sleep_log(D, start, f"{NEXT}T06:00:00.000", segments)
    log["levels"]["shortData"] = [{"dateTime": start, "level": "light", "seconds": 30}]
    parsed = parse_payloads(sleep_payload(log), DayContext(1, D, "UTC"))
    rows = list(
        zip(
            column(parsed, "sleep_stages", "stage").tolist(),
            column(parsed, "sleep_stages", "is_short").tolist(),
            column(parsed, "sleep_stages", "seconds").tolist(),
            strict=True,
        )
    )
    assert sorted(rows) == sorted([("light", False, 60), ("deep", False, 60), ("light", True, 30)])
    assert reasons(parsed, "sleep_stages") == ["duplicate key in the payload"]


def test_daily_payloads_dated_another_day_are_quarantined():
    other = D + dt.timedelta(days=1)
    payloads = {
        "steps": [
            {
                "activities-steps": [
                    {"dateTime": D.isoformat(), "value": 1234},
                    {"dateTime": other.isoformat(), "value": 99},
                ]
            }
        ],
        "distance": [{"activities-distance": [{"dateTime": D.isoformat(), "value": 1.5}]}],
        "heart_rate_day": [
            {
                "activities-heart": [
                    {"dateTime": (D - dt.timedelta(days=1)).isoformat(), "value": {"restingHeartRate": 61}},
                    {
                        "dateTime": D.isoformat(),
                        "value": {
                            "restingHeartRate": 58,
                            "heartRateZones": [{"name": "Fat Burn", "minutes": 30, "caloriesOut": 120.5}],
                        },
                    },
                ]
            }
        ],
        "hrv": [{"hrv": [{"hrv": [{"value": {"dailyRmssd": 47, "deepRmssd": 44}, "dateTime": other.isoformat()}]}]}],
        "intraday_breath_rate": [
            {"br": [{"dateTime": D.isoformat(), "value": {"fullSleepSummary": {"breathingRate": 15.0}}}]}
        ],
    }
    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))
    day = np.datetime64(D, "D")

    assert list(column(parsed, "daily_activity", "day")) == [day]
    assert column(parsed, "daily_activity", "steps").tolist() == [1234]
    assert column(parsed, "daily_activity", "distance_km").tolist() == [1.5]
    assert np.isnan(column(parsed, "daily_activity", "minutes_sedentary")[0]), "absent daily kinds are NULL"
    assert reasons(parsed, "daily_activity") == [f"not dated {D}"]
    assert "99" in next(q.raw_value for q in parsed.quarantined if q.metric == "daily_activity")

    assert list(column(parsed, "heart_rate_daily", "day")) == [day]
    assert column(parsed, "heart_rate_daily", "resting_bpm").tolist() == [58.0]
    assert column(parsed, "heart_rate_daily", "minutes_fat_burn").tolist() == [30.0]
    assert reasons(parsed, "heart_rate_daily") == [f"not dated {D}"]

    assert "hrv_daily" not in parsed.rows
    assert reasons(parsed, "hrv_daily") == [f"not dated {D}"]
    assert column(parsed, "breathing_rate", "full_sleep").tolist() == [15.0]
    assert np.isnan(column(parsed, "breathing_rate", "deep_sleep")[0])


def test_non_numeric_values_of_nullable_columns_are_quarantined():
    payloads = {
        "steps": [{"activities-steps": [{"dateTime": D.isoformat(), "value": "abc"}]}],
        "heart_rate_day": [{"activities-heart": [{"dateTime": D.isoformat(), "value": {"restingHeartRate": "sixty"}}]}],
    }
    parsed = parse_payloads(payloads, DayContext(1, D, "UTC"))
    for metric, column_name, bad in (("daily_activity", "steps", "abc"), ("heart_rate_daily", "resting_bpm", "sixty")):
        found = [q for q in parsed.quarantined if q.metric == metric]
        assert len(found) == 1, (metric, parsed.quarantined)
        assert column_name in found[0].reason and bad in found[0].raw_value


# --------------------------------------------------------------------------------------------
# DST


def test_nonexistent_local_times_are_quarantined_and_repeated_ones_kept_apart():
    spring, autumn = dt.date(2024, 3, 10), dt.date(2024, 11, 3)
    points = [
        {"time": "01:59:59", "value": 60.0},
        {"time": "02:00:00", "value": 61.0},
        {"time": "02:30:00", "value": 62.0},
        {"time": "03:00:00", "value": 63.0},
    ]
    parsed = parse_payloads(hr_payload(points), DayContext(1, spring, NY))
    assert list(column(parsed, "heart_rate", "ts")) == [utc(f"{spring}T01:59:59", NY), utc(f"{spring}T03:00:00", NY)]
    assert column(parsed, "heart_rate", "ts")[1] - column(parsed, "heart_rate", "ts")[0] == np.timedelta64(1, "s")
    assert reasons(parsed, "heart_rate") == [f"local time does not exist in {NY} (DST gap)"] * 2

    # The repeated hour: a wall time seen twice is its first (EDT), then its second (EST) instant.
    points = [
        {"time": "01:30:00", "value": 60.0},
        {"time": "01:30:00", "value": 61.0},
        {"time": "01:30:00", "value": 62.0},
    ]
    parsed = parse_payloads(hr_payload(points), DayContext(1, autumn, NY))
    first, second = utc(f"{autumn}T01:30:00", NY, fold=0), utc(f"{autumn}T01:30:00", NY, fold=1)
    assert second - first == np.timedelta64(3600, "s")
    assert list(column(parsed, "heart_rate", "ts")) == [first, second]
    assert reasons(parsed, "heart_rate") == ["duplicate key in the payload"]

    # Day windows follow the local calendar: 23 and 25 hours.
    for day, hours in ((spring, 23), (autumn, 25)):
        lo, hi = DayContext(1, day, NY).window(BY_NAME["heart_rate"])
        assert hi - lo == np.timedelta64(hours, "h")
        assert lo == utc(f"{day}T00:00:00", NY)
    assert BY_NAME["heart_rate"].window is DayWindow.CALENDAR


# --------------------------------------------------------------------------------------------
# wear gaps


def _gap_mask(intervals) -> np.ndarray:
    worn_off = np.zeros(86400, dtype=bool)
    for lo, hi in intervals:
        worn_off[max(lo, 0) : min(hi, 86400)] = True
    return worn_off


def test_wear_gaps_are_deterministic_across_calls_and_processes():
    seed = synthetic_seed_for(5)
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    first = [gaps_for(seed, d) for d in days]
    assert first == [gaps_for(seed, d) for d in reversed(days)][::-1]
    assert len({tuple(g.intervals) for g in first}) > 50, "gaps should vary from day to day"
    assert first != [gaps_for(synthetic_seed_for(6), d) for d in days], "gaps should vary between users"
    for gaps in first:
        assert gaps.intervals == sorted(gaps.intervals)
        assert all(0 <= lo < hi <= 86400 for lo, hi in gaps.intervals)
    for previous, gaps in itertools.pairwise(first):
        if gaps.covers_all_day():
            continue
        # A night off removes the following morning up to 07:00.
        assert ((0, 7 * 3600) in gaps.intervals) == previous.night_off
        if previous.night_off:
            assert (22 * 3600, 86400) in previous.intervals

    code = (
        "import datetime as dt; from fitpipe.sources.synthetic.wear_gaps import gaps_for; "
        f"print([(g.intervals, g.night_off) for g in (gaps_for({seed}, dt.date(2024, 1, 1) + dt.timedelta(days=i)) "
        "for i in range(60))])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == repr([(g.intervals, g.night_off) for g in first])


def _find_day(seed: int, want_night_off: bool) -> dt.date:
    for offset in range(365):
        day = dt.date(2024, 2, 1) + dt.timedelta(days=offset)
        gaps = gaps_for(seed, day)
        if gaps.night_off == want_night_off and not gaps.covers_all_day() and len(gaps.intervals) >= 2:
            return day
    raise AssertionError("no suitable day in a year")


@pytest.mark.parametrize("night_off", [False, True])
def test_removed_heart_rate_seconds_are_exactly_the_union_of_the_gaps(night_off):
    uid = 11
    seed = synthetic_seed_for(uid)
    day = _find_day(seed, night_off)
    source = SyntheticSource()
    full = source.fetch_day(synthetic_user(uid, "UTC", day, wear_gaps=False, display_name="p"), day, fetch_now())
    gapped = source.fetch_day(synthetic_user(uid, "UTC", day, wear_gaps=True, display_name="p"), day, fetch_now())

    def clock_seconds(payloads):
        dataset = payloads["intraday_heart_rate"][0]["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]
        return {int(p["time"][:2]) * 3600 + int(p["time"][3:5]) * 60 + int(p["time"][6:8]): p["value"] for p in dataset}

    def azm_minutes(payloads):
        entry = payloads["intraday_active_zone_minute"][0]["activities-active-zone-minutes-intraday"][0]
        return {int(m["minute"][:2]) * 60 + int(m["minute"][3:5]) for m in entry["minutes"]}

    all_seconds, kept = clock_seconds(full), clock_seconds(gapped)
    assert len(all_seconds) == 86400
    gaps = gaps_for(seed, day)
    off = _gap_mask(gaps.intervals)
    assert set(all_seconds) - set(kept) == set(np.flatnonzero(off).tolist())
    assert all(kept[s] == all_seconds[s] for s in kept), "wear gaps must not change the worn values"
    assert azm_minutes(full) - azm_minutes(gapped) == {m for m in range(1440) if off[m * 60]}

    for kind in NIGHT_KINDS:
        if night_off:
            assert gapped[kind] == [], kind
        else:
            assert gapped[kind] == full[kind], kind

    parsed = parse_payloads(gapped, DayContext(uid, day, "UTC"))
    assert len(parsed.rows["heart_rate"]) == 86400 - int(off.sum())
    assert ("spo2" in parsed.rows) != night_off


def test_unknown_sleep_stage_is_quarantined_not_a_failed_day():
    """The table's CHECK would reject the whole day at COPY time; the parser sets the record aside."""
    day = dt.date(2024, 1, 5)
    segments = [
        {"dateTime": "2024-01-05T23:00:00", "level": "light", "seconds": 600},
        {"dateTime": "2024-01-05T23:10:00", "level": "dreaming", "seconds": 300},
    ]
    payloads = sleep_payload(sleep_log(day, "2024-01-05T23:00:00.000", "2024-01-06T06:00:00.000", segments))
    parsed = parse_payloads(payloads, DayContext(1, day, "UTC"))
    assert list(column(parsed, "sleep_stages", "stage")) == ["light"]
    assert any("stage is not one of" in r for r in reasons(parsed, "sleep_stages"))
    assert any("dreaming" in q.raw_value for q in parsed.quarantined)


def test_an_invalid_first_copy_of_a_key_does_not_drop_the_valid_copy():
    points = [
        {"time": "08:00:00", "value": 400},
        {"time": "08:00:00", "value": 70},
        {"time": "08:00:01", "value": 71},
        {"time": "08:00:01", "value": 72},
    ]
    payloads = {
        "intraday_heart_rate": [
            {
                "heart_rate_day": [
                    {"activities-heart": [], "activities-heart-intraday": {"dataset": points, "datasetType": "second"}}
                ]
            }
        ]
    }
    parsed = parse_payloads(payloads, DayContext(1, dt.date(2024, 1, 3), "UTC"))
    assert parsed.rows["heart_rate"].columns["bpm"].tolist() == [70, 71]
    reasons = sorted(q.reason for q in parsed.quarantined)
    assert len(reasons) == 2 and "duplicate key in the payload" in reasons
    assert any("range" in r for r in reasons), reasons
