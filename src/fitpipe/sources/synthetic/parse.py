"""The synthetic source's payloads: shaped like the Fitbit Web API's JSON, as wearipedia's
generator returns them. One parser per table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fitpipe.catalogue import BY_NAME
from fitpipe.days import DayContext
from fitpipe.ingest.validate import ParsedDay, RowBuilder, parse_day, records_at


def _intraday_clock_series(
    ctx: DayContext,
    builder: RowBuilder,
    records: list[Any],
    clock_key: str,
    value_of: Callable[[Any], Mapping[str, Any]],
) -> None:
    day = ctx.day.isoformat()
    times: list[str] = []
    raws: list[Any] = []
    columns: dict[str, list[Any]] = {name: [] for name in builder.values}
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
    builder = RowBuilder(ctx, BY_NAME["heart_rate"], parsed)
    dataset = list(
        records_at(payloads.get("intraday_heart_rate", []), "heart_rate_day", "activities-heart-intraday", "dataset")
    )
    _intraday_clock_series(ctx, builder, dataset, "time", lambda r: {"bpm": r["value"]})
    builder.finish()


def parse_active_zone_minutes(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["active_zone_minutes"], parsed)
    minutes = list(
        records_at(
            payloads.get("intraday_active_zone_minute", []), "activities-active-zone-minutes-intraday", "minutes"
        )
    )

    def values(record):
        v = record["value"]
        # The source omits a zone key when its value is zero.
        return {
            "active_zone_minutes": v["activeZoneMinutes"],
            "fat_burn_minutes": v.get("fatBurnActiveZoneMinutes", 0),
            "cardio_minutes": v.get("cardioActiveZoneMinutes", 0),
            "peak_minutes": v.get("peakActiveZoneMinutes", 0),
        }

    _intraday_clock_series(ctx, builder, minutes, "minute", values)
    builder.finish()


def _night_series(builder: RowBuilder, records: list[Any], value_of) -> None:
    for record in records:
        try:
            builder.add(str(record["minute"])[:19], value_of(record), record)
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")


def parse_spo2(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["spo2"], parsed)
    _night_series(
        builder, list(records_at(payloads.get("intraday_spo2", []), "minutes")), lambda r: {"spo2_pct": r["value"]}
    )
    builder.finish()


def parse_hrv_intraday(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["hrv_intraday"], parsed)
    records = list(records_at(payloads.get("intraday_hrv", []), "hrv", "minutes"))
    _night_series(builder, records, lambda r: {k: r["value"][k] for k in ("rmssd", "coverage", "hf", "lf")})
    builder.finish()


def parse_breathing_rate(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["breathing_rate"], parsed)
    stages = {
        "full_sleep": "fullSleepSummary",
        "deep_sleep": "deepSleepSummary",
        "light_sleep": "lightSleepSummary",
        "rem_sleep": "remSleepSummary",
    }
    for record in records_at(payloads.get("intraday_breath_rate", []), "br"):
        try:
            value = record["value"]
            builder.add(
                record["dateTime"],
                {col: (value.get(key) or {}).get("breathingRate") for col, key in stages.items()},
                record,
            )
        except (KeyError, TypeError, AttributeError):
            builder.quarantine(record, "malformed record")
    builder.finish()


def parse_sleep(payloads, ctx, parsed) -> None:
    sessions = RowBuilder(ctx, BY_NAME["sleep_sessions"], parsed)
    stages = RowBuilder(ctx, BY_NAME["sleep_stages"], parsed)
    for log in records_at(payloads.get("sleep", []), "sleep"):
        try:
            sessions.add(
                log["startTime"][:19],
                {
                    "end_ts": log["endTime"][:19],
                    "date_of_sleep": log["dateOfSleep"],
                    "log_id": log["logId"],
                    "is_main_sleep": bool(log["isMainSleep"]),
                    "duration_s": log["duration"] / 1000,
                    "efficiency": log["efficiency"],
                    "minutes_asleep": log["minutesAsleep"],
                    "minutes_awake": log["minutesAwake"],
                    "minutes_to_fall_asleep": log["minutesToFallAsleep"],
                    "minutes_after_wakeup": log["minutesAfterWakeup"],
                    "time_in_bed": log["timeInBed"],
                },
                {k: v for k, v in log.items() if k != "levels"},
            )
        except (KeyError, TypeError, AttributeError):
            sessions.quarantine(log, "malformed sleep log")
            continue
        levels = log.get("levels") or {}
        for is_short, key in ((False, "data"), (True, "shortData")):
            for segment in levels.get(key) or []:
                try:
                    stages.add(
                        segment["dateTime"][:19],
                        {"is_short": is_short, "stage": segment["level"], "seconds": segment["seconds"]},
                        segment,
                    )
                except (KeyError, TypeError, AttributeError):
                    stages.quarantine(segment, "malformed sleep segment")
    sessions.finish()
    stages.finish()


def parse_heart_rate_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["heart_rate_daily"], parsed)
    zones = {"Out of Range": "out_of_range", "Fat Burn": "fat_burn", "Cardio": "cardio", "Peak": "peak"}
    for record in records_at(payloads.get("heart_rate_day", []), "activities-heart"):
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
    builder = RowBuilder(ctx, BY_NAME["daily_activity"], parsed)
    kinds = {
        "steps": "steps",
        "distance": "distance_km",
        "minutesSedentary": "minutes_sedentary",
        "minutesLightlyActive": "minutes_lightly_active",
        "minutesFairlyActive": "minutes_fairly_active",
        "minutesVeryActive": "minutes_very_active",
    }
    by_day: dict[Any, dict[str, Any]] = {}
    for kind, column in kinds.items():
        for record in records_at(payloads.get(kind, []), f"activities-{kind}"):
            if not isinstance(record, dict) or "dateTime" not in record:
                builder.quarantine(record, f"malformed {kind} record")
                continue
            by_day.setdefault(record["dateTime"], {})[column] = record.get("value")
    for day, row in by_day.items():
        builder.add(day, row, {"dateTime": day, **row})
    builder.finish()


def daily_hrv_records(node: Any) -> Iterable[dict]:
    """The daily HRV records of a synthetic `hrv` payload. wearipedia nests them several "hrv"
    levels deep (the Web API has one); the Google Health stand-in reads them here too."""
    if isinstance(node, list):
        for item in node:
            yield from daily_hrv_records(item)
    elif isinstance(node, dict):
        if "dateTime" in node and isinstance(node.get("value"), dict) and "dailyRmssd" in node["value"]:
            yield node
        else:
            yield from daily_hrv_records(node.get("hrv"))


def parse_hrv_daily(payloads, ctx, parsed) -> None:
    builder = RowBuilder(ctx, BY_NAME["hrv_daily"], parsed)
    for record in daily_hrv_records(payloads.get("hrv", [])):
        builder.add(
            record["dateTime"],
            {"daily_rmssd": record["value"].get("dailyRmssd"), "deep_rmssd": record["value"].get("deepRmssd")},
            record,
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
)


def parse_payloads(payloads: Mapping[str, Any], ctx: DayContext) -> ParsedDay:
    """One day of Fitbit Web API payloads as rows, as the synthetic source's runs parse them."""
    return parse_day(payloads, ctx, PARSERS)
