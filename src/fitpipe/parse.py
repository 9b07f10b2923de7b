"""Pure functions from a day's payloads to typed rows per table, validated by the catalogue.

One parser per table. Each returns a `Rows` (column arrays in the catalogue's column order).
Records that cannot be loaded (malformed, out of their metric's valid range, at a local time
that does not exist, or outside the day that owns them) go to quarantine with the reason; the
rest of the day loads.

Day ownership (see catalogue.DayWindow): intraday heart rate and AZM belong to the calendar day
they were measured on; SpO2, HRV and sleep belong to the night that starts on the payload's day,
[D 12:00, D+1 12:00) local. A source whose convention differs (the Fitbit Web API dates a night
by its wake-up day) shifts its payloads to this one before handing them over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .catalogue import BY_NAME, DayWindow, Metric
from .timezones import local_instant, local_to_utc

_NUMPY_TYPES = {"smallint": np.int16, "integer": np.int32, "bigint": np.int64, "real": np.float32,
                "double precision": np.float64, "boolean": np.bool_}


@dataclass
class Quarantined:
    metric: str
    raw_value: str
    reason: str


@dataclass
class Rows:
    """Column arrays for one table, in catalogue order (user_id first, then time, ...)."""

    metric: Metric
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns[self.metric.time_column])


@dataclass
class ParsedDay:
    rows: dict[str, Rows] = field(default_factory=dict)
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return sum(len(r) for r in self.rows.values())


@dataclass(frozen=True)
class DayContext:
    user_id: int
    day: dt.date
    timezone: str

    def window(self, metric: Metric) -> tuple[np.datetime64, np.datetime64] | None:
        """[lo, hi) of the instants (naive UTC) that this local day owns for the metric."""
        if metric.window is DayWindow.DATE:
            return None
        start_hour = 12 if metric.window is DayWindow.NIGHT else 0
        lo = local_instant(self.day, start_hour, self.timezone)
        hi = local_instant(self.day + dt.timedelta(days=1), start_hour, self.timezone)
        return (np.datetime64(lo.replace(tzinfo=None), "us"), np.datetime64(hi.replace(tzinfo=None), "us"))


class _Builder:
    """Collects one table's records, then validates them all at once."""

    def __init__(self, ctx: DayContext, metric: Metric, parsed: ParsedDay):
        self.ctx, self.metric, self.parsed = ctx, metric, parsed
        self.times: list[Any] = []
        self.values: dict[str, list[Any]] = {c.name: [] for c in metric.columns[2:]}
        self.raw: list[Any] = []

    def quarantine(self, raw: Any, reason: str) -> None:
        self.parsed.quarantined.append(Quarantined(self.metric.name, _raw_text(raw), reason))

    def add(self, time: Any, values: Mapping[str, Any], raw: Any) -> None:
        self.times.append(time)
        for name, column in self.values.items():
            column.append(values.get(name))
        self.raw.append(raw)

    def extend(self, times: list[Any], values: dict[str, list[Any]], raw: list[Any]) -> None:
        self.times.extend(times)
        for name, column in self.values.items():
            column.extend(values.get(name) or [None] * len(times))
        self.raw.extend(raw)

    def finish(self) -> None:
        metric, ctx, n = self.metric, self.ctx, len(self.times)
        keep = np.ones(n, dtype=bool)
        reasons: dict[int, str] = {}

        def reject(mask: np.ndarray, reason: str) -> None:
            for index in np.flatnonzero(mask & keep):
                reasons[int(index)] = reason
            keep[mask] = False

        times = self._times(reject)
        arrays: dict[str, np.ndarray] = {}
        for column in metric.columns[2:]:
            arrays[column.name] = self._column(column, self.values[column.name], reject)
        if n and metric.window is not DayWindow.DATE:
            lo, hi = ctx.window(metric)
            reject(~((times >= lo) & (times < hi)) & ~np.isnat(times), f"outside local day {ctx.day} of this metric")
        elif n:
            reject(times != np.datetime64(ctx.day, "D"), f"not dated {ctx.day}")
        key = [times] + [arrays[c.name] for c in metric.extra_key]
        reject(_duplicates(key, keep), "duplicate key in the payload")

        for index, reason in sorted(reasons.items()):
            self.quarantine(self.raw[index], reason)
        if not keep.any():
            return
        columns = {"user_id": np.full(int(keep.sum()), ctx.user_id, dtype=np.int32),
                   metric.time_column: times[keep]}
        columns.update({name: array[keep] for name, array in arrays.items()})
        self.parsed.rows[metric.table] = Rows(metric, columns)

    def _times(self, reject: Callable[[np.ndarray, str], None]) -> np.ndarray:
        if self.metric.window is DayWindow.DATE:
            unit, kind = "D", "date"
        else:
            unit, kind = "s", "local time"
        parsed = np.empty(len(self.times), dtype=f"datetime64[{unit}]")
        bad = np.zeros(len(self.times), dtype=bool)
        try:
            parsed[:] = np.array(self.times, dtype=f"datetime64[{unit}]")
        except (ValueError, TypeError):
            for i, value in enumerate(self.times):
                try:
                    parsed[i] = np.datetime64(value, unit)
                except (ValueError, TypeError):
                    parsed[i] = np.datetime64("NaT")
        bad |= np.isnat(parsed)
        reject(bad, f"malformed {kind}")
        if self.metric.window is DayWindow.DATE:
            return parsed
        utc = local_to_utc(parsed, self.ctx.timezone)
        reject(np.isnat(utc) & ~bad, f"local time does not exist in {self.ctx.timezone} (DST gap)")
        return utc

    def _column(self, column, values: list[Any], reject) -> np.ndarray:
        if column.pg_type in ("text",):
            array = np.array(["" if v is None else str(v) for v in values], dtype=object)
            reject(np.array([v is None for v in values], dtype=bool), f"{column.name} is missing")
            if column.allowed:
                reject(np.array([v is not None and str(v) not in column.allowed for v in values], dtype=bool),
                       f"{column.name} is not one of {', '.join(column.allowed)}")
            return array
        if column.pg_type in ("timestamptz", "date"):
            unit = "D" if column.pg_type == "date" else "s"
            array = np.array([_datetime_or_nat(v, unit) for v in values], dtype=f"datetime64[{unit}]")
            if column.pg_type == "timestamptz":
                valid = ~np.isnat(array)
                mapped = np.full(len(array), np.datetime64("NaT"), dtype="datetime64[us]")
                if valid.any():
                    mapped[valid] = local_to_utc(array[valid], self.ctx.timezone)
                array = mapped
            reject(np.isnat(array), f"{column.name} is malformed")
            return array
        numbers = _to_float(values)
        missing = np.isnan(numbers)
        if not column.nullable:
            reject(missing, f"{column.name} is missing or not a number")
        else:
            # Absent is fine for these columns; present but unreadable is not.
            given = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
            reject(missing & given, f"{column.name} is not a number")
        with np.errstate(invalid="ignore"):
            outside = ~missing & ~_within(numbers, column.low, column.high)
        reject(outside, f"{column.name} outside its valid range {column.low:g}..{column.high:g}"
               if column.low is not None else f"{column.name} out of range")
        if column.nullable:
            return np.where(missing, np.nan, numbers)
        target = _NUMPY_TYPES[column.pg_type]
        if np.issubdtype(target, np.integer) or target is np.bool_:
            numbers = np.where(missing | outside, 0, numbers)
            if target is not np.bool_:
                numbers = np.round(numbers)
        return numbers.astype(target)


def _datetime_or_nat(value: Any, unit: str) -> np.datetime64:
    try:
        return np.datetime64(str(value)[:19] if unit == "s" else value, unit) if isinstance(value, str) else np.datetime64("NaT")
    except ValueError:
        return np.datetime64("NaT")


def _within(numbers: np.ndarray, low, high) -> np.ndarray:
    ok = np.ones(len(numbers), dtype=bool)
    if low is not None:
        ok &= numbers >= low
    if high is not None:
        ok &= numbers <= high
    return ok


def _to_float(values: list[Any]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        out = np.empty(len(values))
        for i, value in enumerate(values):
            try:
                out[i] = float(value) if not isinstance(value, (str, bytes)) or value.strip() else np.nan
            except (ValueError, TypeError):
                out[i] = np.nan
        return out


def _duplicates(key: list[np.ndarray], keep: np.ndarray) -> np.ndarray:
    """Later copies of a key that already appeared among the kept rows."""
    n = len(keep)
    if n < 2:
        return np.zeros(n, dtype=bool)
    positions = np.flatnonzero(keep)
    duplicate = np.zeros(n, dtype=bool)
    if len(key) == 1:
        _, first = np.unique(key[0][positions], return_index=True)
        duplicate[positions] = True
        duplicate[positions[first]] = False
        return duplicate
    # Composite keys only occur in small tables (sleep stages): a set is simplest.
    seen: set[tuple] = set()
    for position in positions:
        item = tuple(k[position] for k in key)
        duplicate[position] = item in seen
        seen.add(item)
    return duplicate


def _raw_text(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 2000 else text[:2000] + "..."


def _records(container: Any, *path: str) -> Iterable[Any]:
    """Walk list/dict nesting: each step is a key into dicts; lists are flattened."""
    items = container if isinstance(container, list) else [container]
    for step in path:
        nxt = []
        for item in items:
            if isinstance(item, dict) and step in item:
                value = item[step]
                nxt.extend(value if isinstance(value, list) else [value])
        items = nxt
    return items


# --- parsers for the "fitbit-webapi" payload format -------------------------------------------

def _intraday_clock_series(ctx: DayContext, builder: _Builder, records: list[Any], clock_key: str,
                           value_of: Callable[[Any], Mapping[str, Any]]) -> None:
    day = ctx.day.isoformat()
    times, raws, columns = [], [], {name: [] for name in builder.values}
    for record in records:
        try:
            values = value_of(record)
            clock = record[clock_key]
            if not isinstance(clock, str):
                raise TypeError
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")
            continue
        times.append(f"{day}T{clock}")
        for name in columns:
            columns[name].append(values.get(name))
        raws.append(record)
    builder.extend(times, columns, raws)


def parse_heart_rate(payloads: Mapping[str, Any], ctx: DayContext, parsed: ParsedDay) -> None:
    builder = _Builder(ctx, BY_NAME["heart_rate"], parsed)
    dataset = list(_records(payloads.get("intraday_heart_rate", []), "heart_rate_day",
                            "activities-heart-intraday", "dataset"))
    _intraday_clock_series(ctx, builder, dataset, "time", lambda r: {"bpm": r["value"]})
    builder.finish()


def parse_active_zone_minutes(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["active_zone_minutes"], parsed)
    minutes = list(_records(payloads.get("intraday_active_zone_minute", []),
                            "activities-active-zone-minutes-intraday", "minutes"))

    def values(record):
        v = record["value"]
        # The source omits a zone key when its value is zero.
        return {"active_zone_minutes": v["activeZoneMinutes"], "fat_burn_minutes": v.get("fatBurnActiveZoneMinutes", 0),
                "cardio_minutes": v.get("cardioActiveZoneMinutes", 0), "peak_minutes": v.get("peakActiveZoneMinutes", 0)}

    _intraday_clock_series(ctx, builder, minutes, "minute", values)
    builder.finish()


def _night_series(builder: _Builder, records: list[Any], value_of) -> None:
    for record in records:
        try:
            builder.add(str(record["minute"])[:19], value_of(record), record)
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")


def parse_spo2(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["spo2"], parsed)
    _night_series(builder, list(_records(payloads.get("intraday_spo2", []), "minutes")),
                  lambda r: {"spo2_pct": r["value"]})
    builder.finish()


def parse_hrv_intraday(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["hrv_intraday"], parsed)
    records = list(_records(payloads.get("intraday_hrv", []), "hrv", "minutes"))
    _night_series(builder, records, lambda r: {k: r["value"][k] for k in ("rmssd", "coverage", "hf", "lf")})
    builder.finish()


def parse_breathing_rate(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["breathing_rate"], parsed)
    stages = {"full_sleep": "fullSleepSummary", "deep_sleep": "deepSleepSummary",
              "light_sleep": "lightSleepSummary", "rem_sleep": "remSleepSummary"}
    for record in _records(payloads.get("intraday_breath_rate", []), "br"):
        try:
            value = record["value"]
            builder.add(record["dateTime"], {col: (value.get(key) or {}).get("breathingRate")
                                             for col, key in stages.items()}, record)
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")
    builder.finish()


def parse_sleep(payloads, ctx, parsed) -> None:
    sessions = _Builder(ctx, BY_NAME["sleep_sessions"], parsed)
    stages = _Builder(ctx, BY_NAME["sleep_stages"], parsed)
    for log in _records(payloads.get("sleep", []), "sleep"):
        try:
            sessions.add(log["startTime"][:19], {
                "end_ts": log["endTime"][:19], "date_of_sleep": log["dateOfSleep"], "log_id": log["logId"],
                "is_main_sleep": bool(log["isMainSleep"]), "duration_s": log["duration"] / 1000,
                "efficiency": log["efficiency"], "minutes_asleep": log["minutesAsleep"],
                "minutes_awake": log["minutesAwake"], "minutes_to_fall_asleep": log["minutesToFallAsleep"],
                "minutes_after_wakeup": log["minutesAfterWakeup"], "time_in_bed": log["timeInBed"],
            }, {k: v for k, v in log.items() if k != "levels"})
        except (KeyError, TypeError, AttributeError):
            sessions.quarantine(log, "malformed sleep log")
            continue
        levels = log.get("levels") or {}
        for is_short, key in ((False, "data"), (True, "shortData")):
            for segment in levels.get(key) or []:
                try:
                    stages.add(segment["dateTime"][:19], {"is_short": is_short, "stage": segment["level"],
                                                          "seconds": segment["seconds"]}, segment)
                except (KeyError, TypeError, AttributeError):
                    stages.quarantine(segment, "malformed sleep segment")
    sessions.finish()
    stages.finish()


def parse_heart_rate_daily(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["heart_rate_daily"], parsed)
    zones = {"Out of Range": "out_of_range", "Fat Burn": "fat_burn", "Cardio": "cardio", "Peak": "peak"}
    for record in _records(payloads.get("heart_rate_day", []), "activities-heart"):
        try:
            value = record["value"]
            row = {"resting_bpm": value.get("restingHeartRate")}
            for zone in value.get("heartRateZones") or []:
                suffix = zones.get(zone.get("name"))
                if suffix:
                    row[f"minutes_{suffix}"] = zone.get("minutes")
                    row[f"calories_{suffix}"] = zone.get("caloriesOut")
            builder.add(record["dateTime"], row, record)
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")
    builder.finish()


def parse_daily_activity(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["daily_activity"], parsed)
    kinds = {"steps": "steps", "distance": "distance_km", "minutesSedentary": "minutes_sedentary",
             "minutesLightlyActive": "minutes_lightly_active", "minutesFairlyActive": "minutes_fairly_active",
             "minutesVeryActive": "minutes_very_active"}
    by_day: dict[Any, dict[str, Any]] = {}
    for kind, column in kinds.items():
        for record in _records(payloads.get(kind, []), f"activities-{kind}"):
            if not isinstance(record, dict) or "dateTime" not in record:
                builder.quarantine(record, f"malformed {kind} record")
                continue
            by_day.setdefault(record["dateTime"], {})[column] = record.get("value")
    for day, row in by_day.items():
        builder.add(day, row, {"dateTime": day, **row})
    builder.finish()


def _find_daily_hrv(node: Any) -> Iterable[dict]:
    # wearipedia nests the daily HRV records several "hrv" levels deep; the Web API has one.
    if isinstance(node, list):
        for item in node:
            yield from _find_daily_hrv(item)
    elif isinstance(node, dict):
        if "dateTime" in node and isinstance(node.get("value"), dict) and "dailyRmssd" in node["value"]:
            yield node
        else:
            yield from _find_daily_hrv(node.get("hrv"))


def parse_hrv_daily(payloads, ctx, parsed) -> None:
    builder = _Builder(ctx, BY_NAME["hrv_daily"], parsed)
    for record in _find_daily_hrv(payloads.get("hrv", [])):
        builder.add(record["dateTime"], {"daily_rmssd": record["value"].get("dailyRmssd"),
                                         "deep_rmssd": record["value"].get("deepRmssd")}, record)
    builder.finish()


PARSERS: dict[str, tuple[Callable[[Mapping[str, Any], DayContext, ParsedDay], None], ...]] = {
    "fitbit-webapi": (
        parse_heart_rate, parse_active_zone_minutes, parse_spo2, parse_hrv_intraday, parse_breathing_rate,
        parse_sleep, parse_heart_rate_daily, parse_daily_activity, parse_hrv_daily,
    ),
}


def parse_day(payloads: Mapping[str, Any], ctx: DayContext, payload_format: str = "fitbit-webapi") -> ParsedDay:
    parsed = ParsedDay()
    for parser in PARSERS[payload_format]:
        parser(payloads, ctx, parsed)
    return parsed
