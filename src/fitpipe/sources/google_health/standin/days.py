"""The data the stand-in serves: fitpipe's synthetic days (wearipedia, seeded) turned into Google
Health points, built with the generated client's own protobuf types.

An account made with the seed of synthetic participant N (`synthetic_seed(N)`) serves the days the
synthetic source loads for N, so a test can compare what arrives through the API with them.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar
from zoneinfo import ZoneInfo

import numpy as np

from fitpipe.ingest.validate import records_at
from fitpipe.participants import User
from fitpipe.sources.contract import BudgetLedger, Fetch
from fitpipe.sources.google_health.standin.model import Account, Point
from fitpipe.sources.synthetic.parse import daily_hrv_records
from fitpipe.sources.synthetic.source import SyntheticSource
from fitpipe.timezones import local_instant, local_to_utc

FORM_FACTORS = {"watch": "WATCH", "phone": "PHONE"}


def _types():
    """The generated client's types: proto-plus classes and their raw protobuf classes."""
    from google.devicesandservices import health_v4
    from google.protobuf import duration_pb2, timestamp_pb2
    from google.type import date_pb2, timeofday_pb2

    return health_v4, timestamp_pb2, duration_pb2, date_pb2, timeofday_pb2


class Builders:
    """Raw protobuf constructors (the proto-plus wrappers are ~10x slower for 86,400 points a day)."""

    def __init__(self):
        h, ts, du, da, tod = _types()
        self.h = h
        self.Timestamp, self.Duration, self.Date, self.TimeOfDay = ts.Timestamp, du.Duration, da.Date, tod.TimeOfDay
        pb = {
            name: getattr(h, name).pb()
            for name in (
                "DataPoint",
                "ReconciledDataPoint",
                "ListDataPointsResponse",
                "ReconcileDataPointsResponse",
                "HeartRate",
                "ActiveZoneMinutes",
                "Steps",
                "OxygenSaturation",
                "HeartRateVariability",
                "RespiratoryRateSleepSummary",
                "Sleep",
                "DailyRestingHeartRate",
                "DailyHeartRateVariability",
                "ObservationSampleTime",
                "ObservationTimeInterval",
                "SessionTimeInterval",
                "CivilDateTime",
                "DataSource",
            )
        }
        self.pb = pb
        self.HrvMetadata = h.HeartRateVariability.HeartRateVariabilityMetadata.pb()
        self.RespStats = h.RespiratoryRateSleepSummary.RespiratoryRateSleepSummaryStatistics.pb()
        self.SleepStage = h.Sleep.SleepStage.pb()
        self.SleepMetadata = h.Sleep.SleepMetadata.pb()
        self.SleepSummary = h.Sleep.SleepSummary.pb()
        self.Device = h.DataSource.Device.pb()

    def timestamp(self, instant: dt.datetime):
        return self.Timestamp(seconds=int(instant.timestamp()))

    def civil(self, instant: dt.datetime, offset: int):
        wall = (instant + dt.timedelta(seconds=offset)).replace(tzinfo=None)
        return self.pb["CivilDateTime"](
            date=self.Date(year=wall.year, month=wall.month, day=wall.day),
            time=self.TimeOfDay(hours=wall.hour, minutes=wall.minute, seconds=wall.second),
        )

    def sample_time(self, instant: dt.datetime, offset: int):
        return self.pb["ObservationSampleTime"](
            physical_time=self.timestamp(instant),
            utc_offset=self.Duration(seconds=offset),
            civil_time=self.civil(instant, offset),
        )

    def interval(self, kind: str, start: dt.datetime, end: dt.datetime, start_offset: int, end_offset: int):
        return self.pb[kind](
            start_time=self.timestamp(start),
            start_utc_offset=self.Duration(seconds=start_offset),
            end_time=self.timestamp(end),
            end_utc_offset=self.Duration(seconds=end_offset),
            civil_start_time=self.civil(start, start_offset),
            civil_end_time=self.civil(end, end_offset),
        )

    def data_source(self, source: str):
        return self.pb["DataSource"](
            recording_method="PASSIVELY_MEASURED",
            device=self.Device(
                form_factor=FORM_FACTORS[source],
                manufacturer="Google",
                display_name="Pixel Watch" if source == "watch" else "Pixel phone",
            ),
            platform="FITBIT" if source == "watch" else "HEALTH_CONNECT",
        )


def _instants(day: dt.date, clocks: list[str], timezone: str) -> list[dt.datetime | None]:
    """Local wall times of `day` (or full ISO stamps) as aware UTC instants, by fitpipe's own rule
    (fitpipe.timezones.local_to_utc), so times match what the synthetic source loads; None in a DST gap."""
    stamps = [c if len(c) > 8 else f"{day.isoformat()}T{c}" for c in clocks]
    utc = local_to_utc(np.array([s[:19] for s in stamps], dtype="datetime64[s]"), timezone)
    return [None if np.isnat(u) else u.astype("datetime64[us]").item().replace(tzinfo=dt.UTC) for u in utc]


class DayMaker:
    """One account's local day as Google Health points, from the synthetic generator."""

    def __init__(self, builders: Builders):
        self.b = builders

    def offset(self, account: Account, instant: dt.datetime) -> int:
        if account.device_offset_s is not None:
            return account.device_offset_s
        offset = instant.astimezone(ZoneInfo(account.timezone)).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def make(self, account: Account, day: dt.date) -> list[Point]:
        if account.no_data:
            return []
        user = User(
            0,
            account.name,
            account.timezone,
            "synthetic",
            day,
            settings={"seed": account.seed, "wear_gaps": account.wear_gaps, "sync_lag_hours": 0},
        )
        payloads = SyntheticSource().fetch_day(user, day, Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(None)))
        out: list[Point] = []
        out += self._heart_rate(
            account,
            day,
            list(records_at(payloads["intraday_heart_rate"], "heart_rate_day", "activities-heart-intraday", "dataset")),
        )
        out += self._zone_minutes(
            account,
            day,
            list(
                records_at(
                    payloads["intraday_active_zone_minute"], "activities-active-zone-minutes-intraday", "minutes"
                )
            ),
        )
        out += self._steps(account, day, list(records_at(payloads["steps"], "activities-steps")))
        out += self._spo2(account, day, list(records_at(payloads["intraday_spo2"], "minutes")))
        out += self._hrv(account, day, list(records_at(payloads["intraday_hrv"], "hrv", "minutes")))
        sleeps = list(records_at(payloads["sleep"], "sleep"))
        out += self._sleep(account, day, sleeps)
        out += self._breathing(account, day, list(records_at(payloads["intraday_breath_rate"], "br")), sleeps)
        out += self._daily(account, day, payloads)
        if account.phone_duplicates:
            out += [
                Point(p.data_type, p.field_name, p.message, p.order, p.filters, p.known_at, "phone")
                for p in out
                if p.data_type in ("heart-rate", "steps")
            ]
        return out

    # Where each kind of point keeps the time the API filters and orders it by.
    _TIME_FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "sample": ("sample_time.physical_time", "sample_time.civil_time"),
        "interval": ("interval.start_time", "interval.civil_start_time"),
    }

    def _point(self, account, kind, data_type, field_name, start, known_at, message) -> Point:
        physical, civil = self._TIME_FIELDS[kind]
        wall = (start + dt.timedelta(seconds=self.offset(account, start))).replace(tzinfo=None)
        return Point(
            data_type,
            field_name,
            message,
            start,
            {f"{field_name}.{physical}": start, f"{field_name}.{civil}": wall},
            known_at,
        )

    def _heart_rate(self, account, day, dataset):
        instants = _instants(day, [r["time"] for r in dataset], account.timezone)
        HeartRate = self.b.pb["HeartRate"]
        out = []
        for index, (record, instant) in enumerate(zip(dataset, instants, strict=True)):
            if instant is None or index % account.heart_rate_every:
                continue  # a wall time the DST gap skipped: no device measures at it
            message = HeartRate(
                sample_time=self.b.sample_time(instant, self.offset(account, instant)),
                beats_per_minute=round(float(record["value"])),
            )
            out.append(self._point(account, "sample", "heart-rate", "heart_rate", instant, instant, message))
        return out

    def _zone_minutes(self, account, day, minutes):
        zones = (
            ("fatBurnActiveZoneMinutes", "FAT_BURN"),
            ("cardioActiveZoneMinutes", "CARDIO"),
            ("peakActiveZoneMinutes", "PEAK"),
        )
        instants = _instants(day, [m["minute"] for m in minutes], account.timezone)
        out = []
        for record, start in zip(minutes, instants, strict=True):
            if start is None:
                continue
            end = start + dt.timedelta(minutes=1)
            for key, zone in zones:
                credit = (record.get("value") or {}).get(key)
                if credit:
                    interval = self.b.interval(
                        "ObservationTimeInterval", start, end, self.offset(account, start), self.offset(account, end)
                    )
                    message = self.b.pb["ActiveZoneMinutes"](
                        interval=interval, heart_rate_zone=zone, active_zone_minutes=int(credit)
                    )
                    out.append(
                        self._point(
                            account, "interval", "active-zone-minutes", "active_zone_minutes", start, end, message
                        )
                    )
        return out

    def _steps(self, account, day, totals):

        out = []
        for record in totals:
            total = int(record.get("value") or 0)
            lo, hi = (
                local_instant(day, 0, account.timezone),
                local_instant(day + dt.timedelta(days=1), 0, account.timezone),
            )
            hours = int((hi - lo).total_seconds() // 3600)
            # Spread over the day's hours (Google stores steps as intervals; the day's sum is what counts).
            for hour in range(hours):
                count = total // hours + (1 if hour < total % hours else 0)
                if not count:
                    continue
                start, end = lo + dt.timedelta(hours=hour), lo + dt.timedelta(hours=hour + 1)
                interval = self.b.interval(
                    "ObservationTimeInterval", start, end, self.offset(account, start), self.offset(account, end)
                )
                out.append(
                    self._point(
                        account,
                        "interval",
                        "steps",
                        "steps",
                        start,
                        end,
                        self.b.pb["Steps"](interval=interval, count=count),
                    )
                )
        return out

    def _night_samples(self, account, day, minutes, data_type, field_name, build):
        """Sample points from wearipedia's per-minute night records; `build(record, sample_time)`."""
        instants = _instants(day, [str(m["minute"])[:19] for m in minutes], account.timezone)
        return [
            self._point(
                account,
                "sample",
                data_type,
                field_name,
                instant,
                instant,
                build(record, self.b.sample_time(instant, self.offset(account, instant))),
            )
            for record, instant in zip(minutes, instants, strict=True)
            if instant is not None
        ]

    def _spo2(self, account, day, minutes):
        return self._night_samples(
            account,
            day,
            minutes,
            "oxygen-saturation",
            "oxygen_saturation",
            lambda record, when: self.b.pb["OxygenSaturation"](sample_time=when, percentage=float(record["value"])),
        )

    def _hrv(self, account, day, minutes):
        # The API has no coverage; rmssd, HF and LF power it has.
        return self._night_samples(
            account,
            day,
            minutes,
            "heart-rate-variability",
            "heart_rate_variability",
            lambda record, when: self.b.pb["HeartRateVariability"](
                sample_time=when,
                root_mean_square_of_successive_differences_milliseconds=float(record["value"]["rmssd"]),
                metadata=self.b.HrvMetadata(
                    high_frequency_power=float(record["value"]["hf"]), low_frequency_power=float(record["value"]["lf"])
                ),
            ),
        )

    def _sleep(self, account, day, logs):
        stage_names = {
            "wake": "AWAKE",
            "awake": "AWAKE",
            "light": "LIGHT",
            "deep": "DEEP",
            "rem": "REM",
            "asleep": "ASLEEP",
            "restless": "RESTLESS",
        }
        out = []
        for log in logs:
            start, end = _instants(day, [log["startTime"][:19], log["endTime"][:19]], account.timezone)
            if start is None or end is None:
                continue

            def stages(segments):
                made = []
                for segment in segments:
                    (begin,) = _instants(day, [segment["dateTime"][:19]], account.timezone)
                    if begin is None:
                        continue
                    finish = begin + dt.timedelta(seconds=int(segment["seconds"]))
                    made.append(
                        self.b.SleepStage(
                            start_time=self.b.timestamp(begin),
                            start_utc_offset=self.b.Duration(seconds=self.offset(account, begin)),
                            end_time=self.b.timestamp(finish),
                            end_utc_offset=self.b.Duration(seconds=self.offset(account, finish)),
                            type_=stage_names[segment["level"]],
                        )
                    )
                return made

            levels = log.get("levels") or {}
            message = self.b.pb["Sleep"](
                interval=self.b.interval(
                    "SessionTimeInterval", start, end, self.offset(account, start), self.offset(account, end)
                ),
                type_="STAGES" if log.get("type") == "stages" else "CLASSIC",
                stages=stages(levels.get("data") or []),
                short_awakenings=stages(levels.get("shortData") or []),
                metadata=self.b.SleepMetadata(
                    main_sleep=bool(log["isMainSleep"]), nap=not log["isMainSleep"], processed=True
                ),
                summary=self.b.SleepSummary(
                    minutes_asleep=int(log["minutesAsleep"]),
                    minutes_awake=int(log["minutesAwake"]),
                    minutes_to_fall_asleep=int(log["minutesToFallAsleep"]),
                    minutes_after_wake_up=int(log["minutesAfterWakeup"]),
                    minutes_in_sleep_period=int(log["timeInBed"]),
                ),
                create_time=self.b.timestamp(end),
                update_time=self.b.timestamp(end),
            )
            offset = self.offset(account, end)
            out.append(
                Point(
                    "sleep",
                    "sleep",
                    message,
                    start,
                    {
                        "sleep.interval.end_time": end,
                        "sleep.interval.civil_end_time": (end + dt.timedelta(seconds=offset)).replace(tzinfo=None),
                    },
                    end,
                    name=f"users/{account.account_id}/dataTypes/sleep/dataPoints/{int(log['logId'])}",
                )
            )
        return out

    def _breathing(self, account, day, records, sleeps):

        main = [s for s in sleeps if s.get("isMainSleep")]
        out = []
        for record in records:
            # Measured over the night: stamped at its end (or the next morning without a sleep log).
            when = (_instants(day, [main[0]["endTime"][:19]], account.timezone)[0] if main else None) or local_instant(
                day + dt.timedelta(days=1), 7, account.timezone
            )
            value = record.get("value") or {}
            stats = {}
            for key, name in (
                ("fullSleepSummary", "full_sleep_stats"),
                ("deepSleepSummary", "deep_sleep_stats"),
                ("lightSleepSummary", "light_sleep_stats"),
                ("remSleepSummary", "rem_sleep_stats"),
            ):
                rate = (value.get(key) or {}).get("breathingRate")
                if rate is not None:
                    stats[name] = self.b.RespStats(breaths_per_minute=float(rate))
            message = self.b.pb["RespiratoryRateSleepSummary"](
                sample_time=self.b.sample_time(when, self.offset(account, when)), **stats
            )
            out.append(
                self._point(
                    account,
                    "sample",
                    "respiratory-rate-sleep-summary",
                    "respiratory_rate_sleep_summary",
                    when,
                    when,
                    message,
                )
            )
        return out

    def _daily(self, account, day, payloads):

        out = []
        for record in records_at(payloads["heart_rate_day"], "activities-heart"):
            resting = (record.get("value") or {}).get("restingHeartRate")
            if resting is None:
                continue
            message = self.b.pb["DailyRestingHeartRate"](
                date=self.b.Date(year=day.year, month=day.month, day=day.day), beats_per_minute=int(resting)
            )
            out.append(
                Point(
                    "daily-resting-heart-rate",
                    "daily_resting_heart_rate",
                    message,
                    day,
                    {"daily_resting_heart_rate.date": day},
                    local_instant(day + dt.timedelta(days=1), 0, account.timezone),
                )
            )
        for record in daily_hrv_records(payloads["hrv"]):
            # Google dates a night's summary by the morning it ends.
            morning = day + dt.timedelta(days=1)
            value = record["value"]
            fields = {"date": self.b.Date(year=morning.year, month=morning.month, day=morning.day)}
            if value.get("dailyRmssd") is not None:
                fields["average_heart_rate_variability_milliseconds"] = float(value["dailyRmssd"])
            if value.get("deepRmssd") is not None:
                fields["deep_sleep_root_mean_square_of_successive_differences_milliseconds"] = float(value["deepRmssd"])
            out.append(
                Point(
                    "daily-heart-rate-variability",
                    "daily_heart_rate_variability",
                    self.b.pb["DailyHeartRateVariability"](**fields),
                    morning,
                    {"daily_heart_rate_variability.date": morning},
                    local_instant(morning, 12, account.timezone),
                )
            )
        return out


def synthetic_seed(user_id: int) -> int:
    """The seed fitpipe's synthetic source gives participant `user_id`, so an account made with it
    serves the same days the synthetic source loads for that participant."""
    return int(SyntheticSource.default_settings(user_id)["seed"])
