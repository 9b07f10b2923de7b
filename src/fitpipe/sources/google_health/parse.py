"""The "google-health" payload format: Google Health API v4 data points as the generated client
returns them: per payload kind (the kebab-case data type), the list of response pages, each a
ReconcileDataPointsResponse protobuf. Google's client has already turned the API's JSON (int64 as
strings, Duration as "NNNs", enum names) into typed messages; reading them directly avoids
converting 86,400 heart-rate points a day back into dicts.

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
from collections.abc import Iterable, Mapping
from typing import Any

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
        if all(isinstance(t, np.datetime64) for t in self.times):  # 86,400 a day: one numpy call, not one each
            parsed = np.array(self.times, dtype="datetime64[us]")
        else:
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
    """A protobuf Timestamp, a datetime64 or an RFC 3339 UTC string as naive-UTC datetime64[us]."""
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[us]")
    if hasattr(value, "seconds") and hasattr(value, "nanos"):
        return np.datetime64(value.seconds * 1_000_000 + value.nanos // 1000, "us")
    if isinstance(value, str) and value.endswith("Z"):
        try:
            return np.datetime64(value[:-1], "us")
        except ValueError:
            pass
    return np.datetime64("NaT")


def micros(timestamps: list[Any]) -> np.ndarray:
    """Protobuf Timestamps as datetime64[us]: instant() for a whole page at once, without a
    function call per point (a day of heart rate is 86,400 of them)."""
    return np.fromiter(
        (t.seconds * 1_000_000 + t.nanos // 1000 for t in timestamps), dtype=np.int64, count=len(timestamps)
    ).astype("datetime64[us]")


def _enum(message: Any, field: str) -> str:
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(message, field)].name


def date_of(value: Any) -> str | None:
    try:
        return dt.date(value.year, value.month, value.day).isoformat()
    except (AttributeError, ValueError):
        return None


def points(payloads: Mapping[str, Any], data_type: str, field: str) -> Iterable[tuple[Any, Any]]:
    """(point, its data) for every point of a data type across its pages, in any order."""
    for page in payloads.get(data_type) or []:
        for point in page.data_points:
            if point.HasField(field):
                yield point, getattr(point, field)


def _sample_times(payloads, data_type: str, field: str) -> tuple[list[np.datetime64], list[Any]]:
    """A sample type's times, in order, and its points' data in the same order."""
    data = [d for _, d in points(payloads, data_type, field)]
    times = micros([d.sample_time.physical_time for d in data])
    order = np.argsort(times, kind="stable")
    return list(times[order]), [data[i] for i in order]


def parse_heart_rate(payloads, ctx: DayContext, parsed: ParsedDay) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["heart_rate"], parsed)
    times, data = _sample_times(payloads, "heart-rate", "heart_rate")
    builder.extend(times, {"bpm": [d.beats_per_minute for d in data]}, data)
    builder.finish()


def parse_active_zone_minutes(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["active_zone_minutes"], parsed)
    # One point per minute and zone; fitpipe keeps one row per minute.
    minutes: dict[np.datetime64, dict[str, Any]] = {}
    for _, data in points(payloads, "active-zone-minutes", "active_zone_minutes"):
        column = ZONE_COLUMNS.get(_enum(data, "heart_rate_zone"))
        if column is None:
            builder.quarantine(data, "active-zone-minutes point without a zone")
            continue
        start = instant(data.interval.start_time)
        row = minutes.setdefault(start, {"active_zone_minutes": 0, **{c: 0 for c in ZONE_COLUMNS.values()}})
        row["active_zone_minutes"] += data.active_zone_minutes
        row[column] += 1
    for start in sorted(minutes):
        builder.add(start, minutes[start], {"start": str(start), **minutes[start]})
    builder.finish()


def parse_spo2(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["spo2"], parsed)
    for time, data in zip(*_sample_times(payloads, "oxygen-saturation", "oxygen_saturation"), strict=True):
        builder.add(time, {"spo2_pct": data.percentage}, data)
    builder.finish()


def parse_hrv_intraday(payloads, ctx, parsed) -> None:
    builder = UtcRowBuilder(ctx, BY_NAME["hrv_intraday"], parsed)
    for time, data in zip(*_sample_times(payloads, "heart-rate-variability", "heart_rate_variability"), strict=True):
        metadata = data.metadata if data.HasField("metadata") else None
        builder.add(
            time,
            {
                "rmssd": data.root_mean_square_of_successive_differences_milliseconds,
                "coverage": None,
                "hf": metadata.high_frequency_power if metadata else None,
                "lf": metadata.low_frequency_power if metadata else None,
            },
            data,
        )
    builder.finish()


def parse_breathing_rate(payloads, ctx, parsed) -> None:
    # The query selected the summaries measured in this day's night window: they are this day's.
    builder = RowBuilder(ctx, BY_NAME["breathing_rate"], parsed)
    stats = {
        "full_sleep": "full_sleep_stats",
        "deep_sleep": "deep_sleep_stats",
        "light_sleep": "light_sleep_stats",
        "rem_sleep": "rem_sleep_stats",
    }
    for _, data in points(payloads, "respiratory-rate-sleep-summary", "respiratory_rate_sleep_summary"):
        builder.add(
            ctx.day.isoformat(),
            {
                column: getattr(data, field).breaths_per_minute if data.HasField(field) else None
                for column, field in stats.items()
            },
            data,
        )
    builder.finish()


def _session_id(point: Any) -> int | None:
    # "users/123/dataTypes/sleep/dataPoints/456" -> 456, the id Fitbit calls logId.
    try:
        return int(point.data_point_name.rsplit("/", 1)[-1])
    except ValueError:
        return None


def _seconds(start: np.datetime64, end: np.datetime64) -> float | None:
    return None if np.isnat(start) or np.isnat(end) else (end - start) / np.timedelta64(1, "s")


def parse_sleep(payloads, ctx, parsed) -> None:
    sessions = UtcRowBuilder(ctx, BY_NAME["sleep_sessions"], parsed)
    stages = UtcRowBuilder(ctx, BY_NAME["sleep_stages"], parsed)
    lo, hi = ctx.window(BY_NAME["sleep_sessions"])
    logs = sorted(points(payloads, "sleep", "sleep"), key=lambda pd: instant(pd[1].interval.start_time))
    for point, data in logs:
        start, end = instant(data.interval.start_time), instant(data.interval.end_time)
        if not lo <= start < hi:
            continue  # a session of the night before or after, which the end-time filter also matched
        summary, metadata = data.summary, data.metadata
        sessions.add(
            start,
            {
                "end_ts": end,
                "date_of_sleep": ctx.day.isoformat(),
                "log_id": _session_id(point),
                "is_main_sleep": metadata.main_sleep,
                "duration_s": _seconds(start, end),
                "efficiency": None,
                "minutes_asleep": summary.minutes_asleep,
                "minutes_awake": summary.minutes_awake,
                "minutes_to_fall_asleep": summary.minutes_to_fall_asleep,
                "minutes_after_wakeup": summary.minutes_after_wake_up,
                "time_in_bed": summary.minutes_in_sleep_period,
            },
            point.data_point_name,
        )
        awake = "awake" if _enum(data, "type_") == "CLASSIC" else "wake"
        for is_short, segments in ((False, data.stages), (True, data.short_awakenings)):
            for stage in segments:
                begin, finish = instant(stage.start_time), instant(stage.end_time)
                kind = _enum(stage, "type_")
                stages.add(
                    begin,
                    {
                        "is_short": is_short,
                        "stage": awake if kind == "AWAKE" else STAGES.get(kind, kind),
                        "seconds": _seconds(begin, finish),
                    },
                    stage,
                )
    sessions.finish()
    stages.finish()


def parse_heart_rate_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["heart_rate_daily"], parsed)
    for _, data in points(payloads, "daily-resting-heart-rate", "daily_resting_heart_rate"):
        builder.add(date_of(data.date), {"resting_bpm": data.beats_per_minute}, data)
    builder.finish()


def parse_hrv_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["hrv_daily"], parsed)
    for _, data in points(payloads, "daily-heart-rate-variability", "daily_heart_rate_variability"):
        morning = date_of(data.date)
        # Dated by the morning the night ends; fitpipe's day is the evening it starts.
        evening = (dt.date.fromisoformat(morning) - dt.timedelta(days=1)).isoformat() if morning else None
        builder.add(
            evening,
            {
                "daily_rmssd": data.average_heart_rate_variability_milliseconds,
                "deep_rmssd": data.deep_sleep_root_mean_square_of_successive_differences_milliseconds,
            },
            data,
        )
    builder.finish()


def parse_daily_activity(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["daily_activity"], parsed)
    counts = [data.count for _, data in points(payloads, "steps", "steps")]
    if counts:
        builder.add(ctx.day.isoformat(), {"steps": sum(counts)}, {"steps_points": len(counts)})
    builder.finish()


# Data types whose points carry the device's UTC offset: (data type, field, holder, time, offset).
_OFFSET_FIELDS = (
    ("heart-rate", "heart_rate", "sample_time", "physical_time", "utc_offset"),
    ("oxygen-saturation", "oxygen_saturation", "sample_time", "physical_time", "utc_offset"),
    ("heart-rate-variability", "heart_rate_variability", "sample_time", "physical_time", "utc_offset"),
    ("respiratory-rate-sleep-summary", "respiratory_rate_sleep_summary", "sample_time", "physical_time", "utc_offset"),
    ("active-zone-minutes", "active_zone_minutes", "interval", "start_time", "start_utc_offset"),
    ("steps", "steps", "interval", "start_time", "start_utc_offset"),
    ("sleep", "sleep", "interval", "start_time", "start_utc_offset"),
)


def parse_device_offsets(payloads, ctx, parsed) -> None:
    """Per offset the device reported that the participant's zone did not have at that instant:
    how many points, first and last. Nothing when the device agrees with the timezone history."""
    import pandas as pd

    times, offsets = [], []
    for data_type, field, holder, time_field, offset_field in _OFFSET_FIELDS:
        held = [getattr(data, holder) for _, data in points(payloads, data_type, field)]
        held = [where for where in held if where.HasField(offset_field)]
        times.append(micros([getattr(where, time_field) for where in held]))
        offsets += [getattr(where, offset_field).seconds for where in held]
    builder = UtcRowBuilder(ctx, BY_NAME["device_utc_offsets"], parsed)
    if offsets:
        utc = pd.DatetimeIndex(np.concatenate(times))
        reported = np.array(offsets, dtype=np.int64)
        expected = np.empty(len(utc), dtype=np.int64)
        next_day_starts = pd.Timestamp(ctx.bounds(DayWindow.CALENDAR)[1].replace(tzinfo=None))
        for zone, chosen in (
            (ctx.timezone, utc < next_day_starts),
            (ctx.next_timezone or ctx.timezone, utc >= next_day_starts),
        ):
            local = utc[chosen].tz_localize("UTC").tz_convert(zone).tz_localize(None)
            expected[chosen] = ((local - utc[chosen]) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
        differs = reported != expected
        for offset in sorted(set(reported[differs].tolist())):
            chosen = utc[differs & (reported == offset)]
            builder.add(
                ctx.day.isoformat(),
                {
                    "utc_offset_s": offset,
                    "points": len(chosen),
                    "first_ts": chosen.min().to_datetime64(),
                    "last_ts": chosen.max().to_datetime64(),
                },
                {"utc_offset_s": offset},
            )
    builder.finish()


PARSERS = (
    parse_heart_rate,
    parse_active_zone_minutes,
    parse_spo2,
    parse_hrv_intraday,
    parse_breathing_rate,
    parse_sleep,
    parse_heart_rate_daily,
    parse_daily_activity,
    parse_hrv_daily,
    parse_device_offsets,
)
