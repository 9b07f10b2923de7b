"""A local Google Health API v4 and Google OAuth server, for tests and for trying fitpipe without
a Google project:

    python -m fitpipe.sources.google_health.standin --port 8765 --participants 3 --client-secrets client.json [--latency 0.1]

It serves, on 127.0.0.1, what fitpipe uses:
- `GET /v4/users/me/dataTypes/{type}/dataPoints` and `...dataPoints:reconcile`, paged newest
  first, with the AIP-160 time filters fitpipe sends;
- an authorization endpoint that consents at once (as the participant would in a browser) and
  redirects to the loopback redirect URI, with PKCE checked at the token endpoint;
- a token endpoint that issues, refreshes and (after a revocation) refuses tokens with invalid_grant;
- `/_control/...` to add accounts and inject faults.

Every response body is built from the generated client's own protobuf types
(google.devicesandservices.health_v4) and serialised with protobuf's JSON mapping, so the JSON
has the API's shape by construction: int64 as strings, Duration as "NNNs", camelCase names.
Asked for `$alt=proto` (as fitpipe asks), it answers the same message in protobuf's binary
format (application/x-protobuf), errors of the injected faults as google.rpc.Status.

Accounts' data comes from fitpipe's synthetic source (wearipedia, seeded), turned into Google's
types: the test for an account with the seed of synthetic participant N can compare what arrives
through the API with what the synthetic source loads for N. Faults on demand: 429 (with or
without Retry-After), 503, 504, slow responses, expired access tokens, revoked grants, pages in
random order, late sync, the same points from a phone as well as the watch, an account without data.
`--latency SECONDS` (HealthApi(latency=...)) delays every data request's answer by that long, as
the network and Google's servers would (benchmarks/google_health.py uses 0.1).
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hashlib
import json
import random
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

CLIENT_ID = "fitpipe-local.apps.googleusercontent.com"
ACCESS_TOKEN_SECONDS = 3600
FORM_FACTORS = {"watch": "WATCH", "phone": "PHONE"}
JSON = "application/json; charset=UTF-8"
PROTOBUF = "application/x-protobuf"


@dataclass
class Account:
    """A Google account with a Fitbit, whose data the synthetic generator makes."""

    name: str
    timezone: str = "UTC"
    seed: int = 1
    wear_gaps: bool = True
    # Faults that are properties of the account rather than of one request:
    no_data: bool = False
    phone_duplicates: bool = False  # every heart-rate and steps point also comes from a phone
    shuffle_pages: bool = False  # points in random order across pages instead of newest first
    synced_until: dt.datetime | None = None  # late sync: nothing measured after this is there yet
    # The device's clock shown as this UTC offset (seconds), e.g. after a flight; None: the zone's.
    device_offset_s: int | None = None
    # Keep every Nth heart-rate second only (a device at rest samples every few seconds; tests
    # that do not compare heart rate use it to stay fast).
    heart_rate_every: int = 1
    account_id: str = field(default_factory=lambda: str(random.randrange(10**17, 10**18)))


@dataclass
class Point:
    data_type: str
    field_name: str  # the DataPoint oneof member, e.g. heart_rate
    message: Any  # the raw protobuf message of that member
    order: Any  # interval start, sample time or date: the API orders by it, newest first
    filters: dict[str, Any]  # AIP-160 field -> value, for the filters the API supports
    known_at: dt.datetime  # when the device would have synced it
    source: str = "watch"
    name: str = ""


def _types():
    """The generated client's types: proto-plus classes and their raw protobuf classes."""
    from google.devicesandservices import health_v4
    from google.protobuf import duration_pb2, timestamp_pb2
    from google.type import date_pb2, timeofday_pb2

    return health_v4, timestamp_pb2, duration_pb2, date_pb2, timeofday_pb2


class _Builders:
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


# --- the data: synthetic days turned into Google Health points ------------------------------------


def _instants(day: dt.date, clocks: list[str], timezone: str) -> list[dt.datetime | None]:
    """Local wall times of `day` (or full ISO stamps) as aware UTC instants, by fitpipe's own rule
    (fitpipe.timezones.local_to_utc), so times match what the synthetic source loads; None in a DST gap."""
    import numpy as np

    from fitpipe.timezones import local_to_utc

    stamps = [c if len(c) > 8 else f"{day.isoformat()}T{c}" for c in clocks]
    utc = local_to_utc(np.array([s[:19] for s in stamps], dtype="datetime64[s]"), timezone)
    return [None if np.isnat(u) else u.astype("datetime64[us]").item().replace(tzinfo=dt.UTC) for u in utc]


class DayMaker:
    """One account's local day as Google Health points, from the synthetic generator."""

    def __init__(self, builders: _Builders):
        self.b = builders

    def offset(self, account: Account, instant: dt.datetime) -> int:
        if account.device_offset_s is not None:
            return account.device_offset_s
        return int(instant.astimezone(ZoneInfo(account.timezone)).utcoffset().total_seconds())

    def make(self, account: Account, day: dt.date) -> list[Point]:
        if account.no_data:
            return []
        from fitpipe.ingest.validate import records_at
        from fitpipe.participants import User
        from fitpipe.sources.contract import BudgetLedger, Fetch
        from fitpipe.sources.synthetic.source import SyntheticSource

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
    _TIME_FIELDS = {
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
        for index, (record, instant) in enumerate(zip(dataset, instants)):
            if instant is None or index % account.heart_rate_every:
                continue  # a wall time the DST gap skipped: no device measures at it
            message = HeartRate(
                sample_time=self.b.sample_time(instant, self.offset(account, instant)),
                beats_per_minute=int(round(float(record["value"]))),
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
        for record, start in zip(minutes, instants):
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
        from fitpipe.timezones import local_instant

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
            for record, instant in zip(minutes, instants)
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
        from fitpipe.timezones import local_instant

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
        from fitpipe.ingest.validate import records_at
        from fitpipe.sources.synthetic.parse import _find_daily_hrv
        from fitpipe.timezones import local_instant

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
        for record in _find_daily_hrv(payloads["hrv"]):
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


# --- filters ----------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


def parse_filter(text: str) -> list[tuple[str, str, Any]]:
    """The AIP-160 subset the API documents for dataPoints: `field >= "literal"` joined by AND."""
    import re

    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = re.fullmatch(r'([a-z_]+(?:\.[a-z_]+)+)\s*(>=|<)\s*"([^"]+)"', part.strip())
        if not match:
            raise BadRequest(f"unsupported filter clause: {part.strip()!r}")
        name, operator, literal = match.groups()
        clauses.append((name, operator, _literal(name, literal)))
    return clauses


def _literal(name: str, text: str) -> Any:
    try:
        if name.endswith(".date"):
            return dt.date.fromisoformat(text)
        if "civil" in name:
            return dt.datetime.fromisoformat(text)
        if not text.endswith("Z"):
            raise ValueError
        return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        raise BadRequest(f"bad literal {text!r} for {name}") from None


def _matches(point: Point, clauses) -> bool:
    for name, operator, literal in clauses:
        if name not in point.filters:
            raise BadRequest(f"unsupported filter field {name} for data type {point.data_type}")
        value = point.filters[name]
        if not (value >= literal if operator == ">=" else value < literal):
            return False
    return True


def _days_for(clauses, timezone: str) -> list[dt.date]:
    """The local days whose generated points may match the filter: those the bounds fall on, and
    the day before (its night runs into the next morning; its daily HRV is dated the next day)."""
    zone = ZoneInfo(timezone)
    bounds = []
    for _, operator, literal in clauses:
        if operator == "<":  # exclusive: the last day is the one just before the bound
            literal = literal - (dt.timedelta(days=1) if type(literal) is dt.date else dt.timedelta(microseconds=1))
        if isinstance(literal, dt.datetime):
            literal = literal.astimezone(zone).date() if literal.tzinfo else literal.date()
        bounds.append(literal)
    if len(bounds) < 2:
        raise BadRequest("a dataPoints filter must give a start and an end")
    first, last = min(bounds) - dt.timedelta(days=1), max(bounds)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# --- state ----------------------------------------------------------------------------------------------


class HealthApi:
    """The server's state; thread-safe. Tests drive it directly, the CLI through /_control."""

    def __init__(
        self, *, client_secret: str | None = None, quota: tuple[int, float] = (300, 60.0), latency: float = 0.0
    ):
        self.client_id = CLIENT_ID
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.quota = quota
        # Seconds every data request waits before it is answered (a simulated round trip).
        self.latency = latency
        self.accounts: dict[str, Account] = {}
        self.lock = threading.RLock()
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.faults: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        # (account, monotonic time, path, status) of every data request, for tests.
        self.requests: list[tuple[str, float, str, int]] = []
        self.token_requests: list[tuple[str, str]] = []
        self._days: dict[tuple[str, dt.date], dict[str, list[Point]]] = {}
        # A query's matching points in page order, and the pages already serialised from them
        # ((offset, size, wire) -> (body, content type)): Google's CPU, which is not fitpipe's
        # and which a benchmark should not count against it more than once.
        self._answers: dict[tuple[str, str], tuple[list[Point], dict]] = {}
        # Data pages served per wire (the `$alt` asked for: "proto" or "json").
        self.served: collections.Counter[str] = collections.Counter()
        # Data requests being answered now, and the most at once (a client's concurrency cap).
        self.in_flight = 0
        # Arrival to answer sent, per data request: the latency the stand-in actually gave.
        self.answer_seconds: list[float] = []
        self.peak_in_flight = 0
        self._builders: _Builders | None = None
        self.base_url = ""

    # accounts and faults
    def add_account(self, name: str, **settings: Any) -> Account:
        with self.lock:
            account = Account(name, **settings)
            self.accounts[name] = account
            return account

    def update_account(self, name: str, **settings: Any) -> None:
        with self.lock:
            account = self.accounts[name]
            for key, value in settings.items():
                setattr(account, key, value)
            self._days = {k: v for k, v in self._days.items() if k[0] != name}
            self._answers = {k: v for k, v in self._answers.items() if k[0] != name}

    def inject(self, name: str, *faults: dict) -> None:
        """Faults for the account's next data requests, one each: {"status": 429, "retry_after": 2},
        {"status": 503}, {"status": 504}, {"delay": 5.0}."""
        with self.lock:
            self.faults[name].extend(faults)

    def expire_access_tokens(self, name: str) -> None:
        with self.lock:
            for token in self.access_tokens.values():
                if token["account"] == name:
                    token["expires"] = 0

    def revoke(self, name: str) -> None:
        """As if the participant removed the app's access in their Google account."""
        with self.lock:
            for token in self.refresh_tokens.values():
                if token["account"] == name:
                    token["revoked"] = True
            self.access_tokens = {k: v for k, v in self.access_tokens.items() if v["account"] != name}

    def issued_secrets(self) -> list[str]:
        """Every token and code this server handed out, and the client secret: none may appear
        in fitpipe's output, logs or database in plain text."""
        with self.lock:
            return [self.client_secret, *self.codes, *self.refresh_tokens, *self.access_tokens]

    def client_secrets(self) -> dict:
        """The client-secrets JSON of a Desktop-app OAuth client, pointing at this server."""
        return {
            "installed": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "project_id": "fitpipe-local",
                "auth_uri": f"{self.base_url}/o/oauth2/v2/auth",
                "token_uri": f"{self.base_url}/token",
                "redirect_uris": ["http://localhost"],
            }
        }

    def requests_per_window(self, name: str, seconds: float) -> int:
        """The most data requests of the account in any window of `seconds`."""
        with self.lock:
            times = sorted(t for account, t, _, _ in self.requests if account == name)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # OAuth
    def authorize(self, query: dict[str, str]) -> str:
        """The consent screen, approved: the redirect URL with a code."""
        if query.get("client_id") != self.client_id:
            raise BadRequest("invalid_client")
        redirect = query.get("redirect_uri", "")
        if not redirect.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise BadRequest("redirect_uri must be a loopback address")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise BadRequest("PKCE (S256) is required")
        with self.lock:
            name = query.get("login_hint")
            if not name:
                granted = {t["account"] for t in self.refresh_tokens.values() if not t["revoked"]}
                name = next((n for n in self.accounts if n not in granted), next(iter(self.accounts), None))
            if name not in self.accounts:
                raise BadRequest(f"no such account: {name}")
            code = secrets.token_urlsafe(24)
            self.codes[code] = {
                "account": name,
                "redirect_uri": redirect,
                "challenge": query["code_challenge"],
                "scope": query.get("scope", ""),
                "offline": query.get("access_type") == "offline",
            }
        params = {"code": code, "scope": query.get("scope", "")}
        if query.get("state"):
            params["state"] = query["state"]
        return f"{redirect}?{urlencode(params)}"

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type")
        self.token_requests.append((grant or "", form.get("client_id", "")))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        with self.lock:
            if grant == "authorization_code":
                code = self.codes.get(form.get("code", ""))
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if (
                    not code
                    or code.get("used")
                    or code["redirect_uri"] != form.get("redirect_uri")
                    or challenge != code["challenge"]
                ):
                    return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
                code["used"] = True
                answer = self._access_token(code["account"], code["scope"])
                if code["offline"]:
                    refresh = secrets.token_urlsafe(32)
                    self.refresh_tokens[refresh] = {
                        "account": code["account"],
                        "scope": code["scope"],
                        "revoked": False,
                    }
                    answer["refresh_token"] = refresh
                return 200, answer
            if grant == "refresh_token":
                held = self.refresh_tokens.get(form.get("refresh_token", ""))
                if not held or held["revoked"]:
                    return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                return 200, self._access_token(held["account"], held["scope"])
        return 400, {"error": "unsupported_grant_type"}

    def _access_token(self, name: str, scope: str) -> dict:
        token = secrets.token_urlsafe(32)
        self.access_tokens[token] = {"account": name, "expires": time.time() + ACCESS_TOKEN_SECONDS}
        return {"access_token": token, "expires_in": ACCESS_TOKEN_SECONDS, "scope": scope, "token_type": "Bearer"}

    def revoke_token(self, token: str) -> None:
        with self.lock:
            if token in self.refresh_tokens:
                self.refresh_tokens[token]["revoked"] = True
            self.access_tokens.pop(token, None)

    def account_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self.lock:
            held = self.access_tokens.get(authorization[7:])
            return held["account"] if held and held["expires"] > time.time() else None

    # data
    def points(self, name: str, data_type: str, clauses) -> list[Point]:
        with self.lock:
            account = self.accounts[name]
            if self._builders is None:
                self._builders = _Builders()
            maker = DayMaker(self._builders)
            made: list[Point] = []
            for day in _days_for(clauses, account.timezone):
                key = (name, day)
                if key not in self._days:
                    by_type: dict[str, list[Point]] = collections.defaultdict(list)
                    for point in maker.make(account, day):
                        by_type[point.data_type].append(point)
                    self._days[key] = by_type
                made.extend(self._days[key].get(data_type, ()))
            synced = account.synced_until
        return [p for p in made if (synced is None or p.known_at <= synced) and _matches(p, clauses)]

    def take_fault(self, name: str) -> dict | None:
        with self.lock:
            queue = self.faults.get(name)
            return queue.popleft() if queue else None

    def over_quota(self, name: str) -> bool:
        limit, seconds = self.quota
        now = time.monotonic()
        with self.lock:
            recent = sum(1 for account, t, _, status in self.requests if account == name and t > now - seconds)
        return recent > limit

    def _answer(self, name: str, data_type: str, clauses, family: str, reconcile: bool) -> list[Point]:
        found = self.points(name, data_type, clauses)
        if reconcile:
            if family == "google-wearables":
                found = [p for p in found if p.source == "watch"]
            else:  # Google's merge, simplified: one point per instant, the watch's when both have one
                by_key: dict[Any, Point] = {}
                for p in sorted(found, key=lambda p: p.source != "watch"):
                    by_key.setdefault((p.order, repr(p.filters)), p)
                found = list(by_key.values())
        found.sort(key=lambda p: p.order, reverse=True)
        with self.lock:
            if self.accounts[name].shuffle_pages:
                random.Random(len(found)).shuffle(found)
        return found

    def list_page(self, name: str, data_type: str, query: dict[str, str], reconcile: bool) -> tuple[bytes, str]:
        """One page of the answer, serialised for the wire `$alt` asks for: protobuf for
        `proto`, else JSON (enums as numbers when `enum-encoding=int`, as the generated client asks)."""
        family = query.get("dataSourceFamily", "").rsplit("/", 1)[-1] or "all-sources"
        fingerprint = hashlib.sha256(f"{data_type}|{query.get('filter')}|{family}|{reconcile}".encode()).hexdigest()[
            :16
        ]
        with self.lock:
            answer = self._answers.get((name, fingerprint))
        if answer is None:
            answer = (self._answer(name, data_type, parse_filter(query.get("filter", "")), family, reconcile), {})
            with self.lock:
                answer = self._answers.setdefault((name, fingerprint), answer)
        found, built = answer
        limit = 25 if data_type in ("sleep", "exercise") else 10_000
        size = min(int(query.get("pageSize") or (25 if limit == 25 else 1440)), limit)
        offset = 0
        if query.get("pageToken"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["pageToken"]))
                offset = int(token["offset"])
            except (ValueError, KeyError, TypeError):
                raise BadRequest("invalid page token") from None
            if token.get("query") != fingerprint:
                raise BadRequest("the page token belongs to another query")
        alt = query.get("$alt", "json")
        wire = "proto" if alt == "proto" else "json"
        with self.lock:
            self.served[wire] += 1
            page = built.get((offset, size, alt))
        if page is None:
            response = self._page(found, offset, size, fingerprint, reconcile)
            if wire == "proto":
                page = (response.SerializeToString(), PROTOBUF)
            else:
                from google.protobuf.json_format import MessageToDict

                page = (
                    json.dumps(MessageToDict(response, use_integers_for_enums="enum-encoding=int" in alt)).encode(),
                    JSON,
                )
            with self.lock:
                built[(offset, size, alt)] = page
        return page

    def _page(self, found: list[Point], offset: int, size: int, fingerprint: str, reconcile: bool):
        page = found[offset : offset + size]
        b = self._builders
        if reconcile:
            response = b.pb["ReconcileDataPointsResponse"](
                data_points=[
                    b.pb["ReconciledDataPoint"](data_point_name=p.name, **{p.field_name: p.message}) for p in page
                ]
            )
        else:
            response = b.pb["ListDataPointsResponse"](
                data_points=[
                    b.pb["DataPoint"](name=p.name, data_source=b.data_source(p.source), **{p.field_name: p.message})
                    for p in page
                ]
            )
        if offset + size < len(found):
            response.next_page_token = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + size, "query": fingerprint}).encode()
            ).decode()
        return response


# --- HTTP ---------------------------------------------------------------------------------------------------


def _status_body(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def _status_proto(code: int, message: str) -> bytes:
    """An error as google.rpc.Status in protobuf, as Google describes errors when asked for `$alt=proto`."""
    from google.rpc import code_pb2, status_pb2

    grpc_codes = {429: code_pb2.RESOURCE_EXHAUSTED, 503: code_pb2.UNAVAILABLE, 504: code_pb2.DEADLINE_EXCEEDED}
    return status_pb2.Status(code=grpc_codes.get(code, code_pb2.UNKNOWN), message=message).SerializeToString()


class _Handler(BaseHTTPRequestHandler):
    api: HealthApi
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm the body's last
    # segment waits for the client's delayed ACK of the headers (40 ms on Linux), which no
    # real front end adds to a round trip.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read stdout
        pass

    def _send(
        self, code: int, body: dict | bytes | None = None, headers: dict | None = None, content_type: str = JSON
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        wait = getattr(self, "_answer_at", 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _query(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode() if length else ""
        if self.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(text or "{}")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def do_GET(self) -> None:
        path, query = self._query()
        try:
            if path == "/o/oauth2/v2/auth":
                location = self.api.authorize(query)
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path.startswith("/v4/users/me/dataTypes/"):
                self._data(path, query)
                return
            if path == "/_control/requests":
                with self.api.lock:
                    self._send(200, {"requests": [[a, t, p, s] for a, t, p, s in self.api.requests]})
                return
            self._send(404, _status_body(404, "NOT_FOUND", f"no such resource: {path}"))
        except BadRequest as exc:
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))

    def do_POST(self) -> None:
        path, query = self._query()
        form = self._form()
        try:
            if path == "/token":
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    # Client authentication by HTTP Basic (RFC 6749 2.3.1), as requests-oauthlib sends it.
                    client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
                    form = {"client_id": client_id, "client_secret": client_secret, **form}
                self._send(*self.api.token(form))
            elif path == "/revoke":
                self.api.revoke_token(form.get("token") or query.get("token", ""))
                self._send(200, {})
            elif path == "/_control/accounts":
                self.api.add_account(**form)
                self._send(200, {"ok": True})
            elif path == "/_control/faults":
                self.api.inject(form["account"], *form["faults"])
                self._send(200, {"ok": True})
            elif path == "/_control/revoke":
                self.api.revoke(form["account"])
                self._send(200, {"ok": True})
            elif path == "/_control/expire":
                self.api.expire_access_tokens(form["account"])
                self._send(200, {"ok": True})
            elif path == "/_control/sync":
                until = form.get("synced_until")
                self.api.update_account(
                    form["account"], synced_until=dt.datetime.fromisoformat(until) if until else None
                )
                self._send(200, {"ok": True})
            else:
                self._send(404, _status_body(404, "NOT_FOUND", f"no such resource: {path}"))
        except (BadRequest, KeyError, TypeError, ValueError) as exc:
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))

    def _data(self, path: str, query: dict[str, str]) -> None:
        arrived = time.monotonic()  # quotas count requests as they arrive
        with self.api.lock:
            self.api.in_flight += 1
            self.api.peak_in_flight = max(self.api.peak_in_flight, self.api.in_flight)
        try:
            self._answer_data(path, query, arrived)
        finally:
            with self.api.lock:
                self.api.in_flight -= 1
                self.api.answer_seconds.append(time.monotonic() - arrived)

    def _answer_data(self, path: str, query: dict[str, str], arrived: float) -> None:
        # The round trip, on every data request (401s included): the answer leaves `latency`
        # after the request arrived, or later if building it took longer, as from Google, whose
        # serving time is part of the latency a client sees.
        self._answer_at = arrived + self.api.latency
        name = self.api.account_for(self.headers.get("Authorization"))
        if name is None:
            with self.api.lock:
                self.api.requests.append(("", arrived, path, 401))
            self._send(
                401,
                _status_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
            return
        rest = path[len("/v4/users/me/dataTypes/") :]
        data_type, _, method = rest.partition("/")
        reconcile = method == "dataPoints:reconcile"
        status = 200
        try:
            fault = self.api.take_fault(name)
            if fault and fault.get("delay"):
                time.sleep(float(fault["delay"]))
                fault = None
            if self.api.over_quota(name):
                fault = {"status": 429, "retry_after": None}
            if fault:
                status = int(fault["status"])
                names = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
                headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
                if query.get("$alt") == "proto":
                    self._send(status, _status_proto(status, "injected fault"), headers, PROTOBUF)
                else:
                    self._send(status, _status_body(status, names.get(status, "UNKNOWN"), "injected fault"), headers)
                return
            if method not in ("dataPoints", "dataPoints:reconcile"):
                status = 404
                self._send(404, _status_body(404, "NOT_FOUND", f"no such method: {method}"))
                return
            body, content_type = self.api.list_page(name, data_type, query, reconcile)
            self._send(200, body, content_type=content_type)
        except BadRequest as exc:
            status = 400
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))
        finally:
            with self.api.lock:
                self.api.requests.append((name, arrived, path, status))


class HealthApiServer:
    """The HTTP server on 127.0.0.1 in a background thread: `with HealthApiServer() as server: ...`."""

    def __init__(self, api: HealthApi | None = None, port: int = 0):
        self.api = api or HealthApi()
        handler = type("Handler", (_Handler,), {"api": self.api})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.api.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-api", daemon=True)

    def __enter__(self) -> HealthApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def synthetic_seed(user_id: int) -> int:
    """The seed fitpipe's synthetic source gives participant `user_id`, so an account made with it
    serves the same days the synthetic source loads for that participant."""
    from fitpipe.sources.synthetic.source import SyntheticSource

    return int(SyntheticSource.default_settings(user_id)["seed"])


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fitpipe.sources.google_health.standin", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--participants", type=int, default=3, help="accounts participant-1..N (synthetic seeds 1..N)")
    parser.add_argument("--timezone", default="America/New_York")
    parser.add_argument("--client-secrets", required=True, help="write the OAuth client's JSON here")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay every data request's answer by this long (a simulated round trip)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.latency < 0:
        parser.error("--latency must be 0 or more seconds")
    server = HealthApiServer(HealthApi(latency=args.latency), port=args.port)
    for number in range(1, args.participants + 1):
        server.api.add_account(f"participant-{number}", timezone=args.timezone, seed=synthetic_seed(number))
    with open(args.client_secrets, "w") as file:
        json.dump(server.api.client_secrets(), file, indent=2)
    delayed = f", {args.latency * 1000:g} ms per data request" if args.latency else ""
    print(
        f"Google Health API stand-in on {server.url} with {args.participants} account(s){delayed}; "
        f"OAuth client in {args.client_secrets}. Ctrl-C stops it.",
        flush=True,
    )
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
