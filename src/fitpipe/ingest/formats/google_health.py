"""The "google-health" payload format: Google Health API v4 data points, one list of response pages
per data type (payload kind = the kebab-case data type), in the API's JSON (camelCase, int64 as
strings, Duration as "NNNs", enum names).

Times: every point carries a physical instant (UTC) and the device's UTC offset. Rows are keyed
by the instant, so nothing depends on the device's clock or the page order (newest first);
points are sorted before they are handed over, so a re-fetch in another order hashes the same.
The offset is kept where it carries information (device_utc_offsets).

Mapping onto fitpipe's tables:
- heart-rate -> heart_rate, at the device's own spacing;
- active-zone-minutes -> active_zone_minutes: per minute, the zone minutes (fat burn, cardio,
  peak) and the AZM credited; a minute outside every zone has no point, hence no row;
- steps -> daily_activity.steps, the sum over the local day;
- oxygen-saturation -> spo2; heart-rate-variability -> hrv_intraday (coverage not reported);
- respiratory-rate-sleep-summary -> breathing_rate, dated by the night it belongs to;
- sleep -> sleep_sessions and sleep_stages (stages and short awakenings; efficiency not reported);
- daily-resting-heart-rate -> heart_rate_daily.resting_bpm;
- daily-heart-rate-variability -> hrv_daily (Google dates it by the morning; fitpipe by the evening).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

import numpy as np

from fitpipe.catalogue import BY_NAME, DayWindow
from fitpipe.days import DayContext
from fitpipe.ingest.validate import ParsedDay, RowBuilder

# Google's sleep stage names -> fitpipe's (the Fitbit names: "wake" in stages logs, "awake" in classic ones).
STAGES = {"LIGHT": "light", "DEEP": "deep", "REM": "rem", "ASLEEP": "asleep", "RESTLESS": "restless"}
ZONE_COLUMNS = {"FAT_BURN": "fat_burn_minutes", "CARDIO": "cardio_minutes", "PEAK": "peak_minutes"}


class UtcRowBuilder(RowBuilder):
    """A RowBuilder for times that are already instants (RFC 3339, UTC): no local-time reading,
    so the repeated hour of a DST fall-back keeps both of its readings apart."""

    def _times(self, reject):
        if self.metric.window is DayWindow.DATE:
            return super()._times(reject)
        parsed = np.array([instant(t) for t in self.times], dtype="datetime64[us]")
        reject(np.isnat(parsed), "malformed time")
        return parsed

    def _column(self, column, values, reject):
        if column.pg_type != "timestamptz":
            return super()._column(column, values, reject)
        array = np.array([instant(v) for v in values], dtype="datetime64[us]")
        reject(np.isnat(array), f"{column.name} is malformed")
        return array


def instant(value: Any) -> np.datetime64:
    """An RFC 3339 UTC timestamp ("2024-03-10T07:00:00Z", fractions allowed) as naive-UTC datetime64."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return np.datetime64("NaT")
    try:
        return np.datetime64(value[:-1], "us")
    except ValueError:
        return np.datetime64("NaT")


def offset_seconds(value: Any) -> int | None:
    """A Duration in JSON ("-18000s", "19800.5s") as whole seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return int(float(value[:-1]))
        except ValueError:
            return None
    return None


def integer(value: Any) -> int | None:
    """int64 fields arrive as JSON strings ("61"); other producers send numbers."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def date_of(value: Any) -> str | None:
    try:
        return dt.date(int(value["year"]), int(value["month"]), int(value["day"])).isoformat()
    except (TypeError, KeyError, ValueError):
        return None


def points(payloads: Mapping[str, Any], data_type: str, key: str) -> Iterable[dict]:
    """The data of every point of a data type, across its pages (absent keys are skipped)."""
    for page in payloads.get(data_type) or []:
        for point in (page or {}).get("dataPoints") or []:
            data = point.get(key) if isinstance(point, dict) else None
            if isinstance(data, dict):
                yield point, data


def _sample_time(data: dict) -> str | None:
    return (data.get("sampleTime") or {}).get("physicalTime")


def _start_time(data: dict) -> str | None:
    return (data.get("interval") or {}).get("startTime")


def _sorted(items: list[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    return sorted(items, key=lambda item: item[0] or "")


def parse_heart_rate(payloads, ctx: DayContext, parsed: ParsedDay) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["heart_rate"], parsed)
    samples = _sorted([(_sample_time(d), d) for _, d in points(payloads, "heart-rate", "heartRate")])
    for time, data in samples:
        builder.add(time, {"bpm": integer(data.get("beatsPerMinute"))}, data)
    builder.finish()


def parse_active_zone_minutes(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["active_zone_minutes"], parsed)
    # One point per minute and zone; fitpipe keeps one row per minute.
    minutes: dict[str, dict[str, Any]] = {}
    for _, data in points(payloads, "active-zone-minutes", "activeZoneMinutes"):
        start, column = _start_time(data), ZONE_COLUMNS.get(data.get("heartRateZone"))
        credit = integer(data.get("activeZoneMinutes"))
        if start is None or column is None or credit is None:
            builder.quarantine(data, "malformed active-zone-minutes point")
            continue
        row = minutes.setdefault(start, {"active_zone_minutes": 0, **{c: 0 for c in ZONE_COLUMNS.values()}})
        row["active_zone_minutes"] += credit
        row[column] += 1
    for start in sorted(minutes):
        builder.add(start, minutes[start], {"startTime": start, **minutes[start]})
    builder.finish()


def parse_spo2(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["spo2"], parsed)
    for time, data in _sorted([(_sample_time(d), d) for _, d in points(payloads, "oxygen-saturation", "oxygenSaturation")]):
        builder.add(time, {"spo2_pct": data.get("percentage")}, data)
    builder.finish()


def parse_hrv_intraday(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["hrv_intraday"], parsed)
    samples = _sorted([(_sample_time(d), d) for _, d in points(payloads, "heart-rate-variability", "heartRateVariability")])
    for time, data in samples:
        metadata = data.get("metadata") or {}
        builder.add(time, {"rmssd": data.get("rootMeanSquareOfSuccessiveDifferencesMilliseconds"), "coverage": None,
                           "hf": metadata.get("highFrequencyPower"), "lf": metadata.get("lowFrequencyPower")}, data)
    builder.finish()


def parse_breathing_rate(payloads, ctx, parsed) -> None:
    # The query selected the summaries measured in this day's night window: they are this day's.
    builder = RowBuilder(ctx, BY_NAME["breathing_rate"], parsed)
    stats = {"full_sleep": "fullSleepStats", "deep_sleep": "deepSleepStats", "light_sleep": "lightSleepStats",
             "rem_sleep": "remSleepStats"}
    for _, data in points(payloads, "respiratory-rate-sleep-summary", "respiratoryRateSleepSummary"):
        builder.add(ctx.day.isoformat(), {column: (data.get(key) or {}).get("breathsPerMinute")
                                          for column, key in stats.items()}, data)
    builder.finish()


def _session_id(point: dict) -> int | None:
    # "users/123/dataTypes/sleep/dataPoints/456" -> 456, the id Fitbit calls logId.
    name = point.get("dataPointName") or point.get("name") or ""
    return integer(name.rsplit("/", 1)[-1])


def parse_sleep(payloads, ctx, parsed) -> None:
    sessions = UtcRowBuilder(ctx, BY_NAME["sleep_sessions"], parsed)
    stages = UtcRowBuilder(ctx, BY_NAME["sleep_stages"], parsed)
    lo, hi = ctx.window(BY_NAME["sleep_sessions"])
    for point, data in sorted(points(payloads, "sleep", "sleep"), key=lambda pd: _start_time(pd[1]) or ""):
        interval, summary, metadata = data.get("interval") or {}, data.get("summary") or {}, data.get("metadata") or {}
        start, end = instant(interval.get("startTime")), instant(interval.get("endTime"))
        if not np.isnat(start) and not lo <= start < hi:
            continue  # a session of the night before or after, which the end-time filter also matched
        duration = (end - start) / np.timedelta64(1, "s") if not (np.isnat(start) or np.isnat(end)) else None
        sessions.add(interval.get("startTime"), {
            "end_ts": interval.get("endTime"), "date_of_sleep": ctx.day.isoformat(), "log_id": _session_id(point),
            "is_main_sleep": bool(metadata.get("mainSleep", not metadata.get("nap", False))),
            "duration_s": duration, "efficiency": None,
            "minutes_asleep": integer(summary.get("minutesAsleep")), "minutes_awake": integer(summary.get("minutesAwake")),
            "minutes_to_fall_asleep": integer(summary.get("minutesToFallAsleep", 0)),
            "minutes_after_wakeup": integer(summary.get("minutesAfterWakeUp", 0)),
            "time_in_bed": integer(summary.get("minutesInSleepPeriod")),
        }, {k: v for k, v in data.items() if k not in ("stages", "shortAwakenings")})
        awake = "awake" if data.get("type") == "CLASSIC" else "wake"
        for is_short, key in ((False, "stages"), (True, "shortAwakenings")):
            for stage in data.get(key) or []:
                begin, finish = instant(stage.get("startTime")), instant(stage.get("endTime"))
                seconds = (finish - begin) / np.timedelta64(1, "s") if not (np.isnat(begin) or np.isnat(finish)) else None
                name = awake if stage.get("type") == "AWAKE" else STAGES.get(stage.get("type"), stage.get("type"))
                stages.add(stage.get("startTime"), {"is_short": is_short, "stage": name, "seconds": seconds}, stage)
    sessions.finish()
    stages.finish()


def parse_heart_rate_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["heart_rate_daily"], parsed)
    for _, data in points(payloads, "daily-resting-heart-rate", "dailyRestingHeartRate"):
        builder.add(date_of(data.get("date")), {"resting_bpm": integer(data.get("beatsPerMinute"))}, data)
    builder.finish()


def parse_hrv_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["hrv_daily"], parsed)
    evening = ctx.day.isoformat()
    for _, data in points(payloads, "daily-heart-rate-variability", "dailyHeartRateVariability"):
        morning = date_of(data.get("date"))
        # Dated by the morning the night ends; fitpipe's day is the evening it starts.
        day = (dt.date.fromisoformat(morning) - dt.timedelta(days=1)).isoformat() if morning else None
        builder.add(day or evening, {
            "daily_rmssd": data.get("averageHeartRateVariabilityMilliseconds"),
            "deep_rmssd": data.get("deepSleepRootMeanSquareOfSuccessiveDifferencesMilliseconds"),
        }, data)
    builder.finish()


def parse_daily_activity(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["daily_activity"], parsed)
    counts = [(_start_time(d), integer(d.get("count"))) for _, d in points(payloads, "steps", "steps")]
    if not counts:
        builder.finish()
        return
    bad = [c for c in counts if c[1] is None]
    for record in bad:
        builder.quarantine(record, "steps count is not a number")
    builder.add(ctx.day.isoformat(), {"steps": sum(c for _, c in counts if c is not None)},
                {"steps_points": len(counts)})
    builder.finish()


# Data types whose points carry the device's UTC offset, and where it sits.
_OFFSET_FIELDS = (
    ("heart-rate", "heartRate", "sampleTime", "physicalTime", "utcOffset"),
    ("oxygen-saturation", "oxygenSaturation", "sampleTime", "physicalTime", "utcOffset"),
    ("heart-rate-variability", "heartRateVariability", "sampleTime", "physicalTime", "utcOffset"),
    ("respiratory-rate-sleep-summary", "respiratoryRateSleepSummary", "sampleTime", "physicalTime", "utcOffset"),
    ("active-zone-minutes", "activeZoneMinutes", "interval", "startTime", "startUtcOffset"),
    ("steps", "steps", "interval", "startTime", "startUtcOffset"),
    ("sleep", "sleep", "interval", "startTime", "startUtcOffset"),
)


def parse_device_offsets(payloads, ctx, parsed) -> None:
    """Per offset the device reported that the participant's zone did not have at that instant:
    how many points, first and last. Nothing when the device agrees with the timezone history."""
    import pandas as pd

    times, offsets = [], []
    for data_type, key, holder, time_field, offset_field in _OFFSET_FIELDS:
        for _, data in points(payloads, data_type, key):
            where = data.get(holder) or {}
            seconds = offset_seconds(where.get(offset_field))
            moment = instant(where.get(time_field))
            if seconds is not None and not np.isnat(moment):
                times.append(moment)
                offsets.append(seconds)
    builder = UtcRowBuilder(ctx, BY_NAME["device_utc_offsets"], parsed)
    if times:
        utc = pd.DatetimeIndex(np.array(times, dtype="datetime64[us]"))
        reported = np.array(offsets)
        expected = np.empty(len(utc), dtype=np.int64)
        next_day_starts = np.datetime64(ctx.bounds(DayWindow.CALENDAR)[1].replace(tzinfo=None), "us")
        for zone, chosen in ((ctx.timezone, utc < next_day_starts), (ctx.next_timezone or ctx.timezone, utc >= next_day_starts)):
            local = utc[chosen].tz_localize("UTC").tz_convert(zone).tz_localize(None)
            expected[chosen] = ((local - utc[chosen]) / pd.Timedelta(seconds=1)).astype(np.int64)
        differs = reported != expected
        for offset in sorted(set(reported[differs].tolist())):
            chosen = utc[differs & (reported == offset)]
            builder.add(ctx.day.isoformat(), {
                "utc_offset_s": offset, "points": len(chosen),
                "first_ts": f"{chosen.min().isoformat()}Z", "last_ts": f"{chosen.max().isoformat()}Z",
            }, {"utc_offset_s": offset})
    builder.finish()


NAME = "google-health"
PARSERS = (
    parse_heart_rate, parse_active_zone_minutes, parse_spo2, parse_hrv_intraday, parse_breathing_rate,
    parse_sleep, parse_heart_rate_daily, parse_daily_activity, parse_hrv_daily, parse_device_offsets,
)
