"""The synthetic source: wearipedia's Fitbit Charge 6 generator, one day at a time.

wearipedia ignores the seed it is given for `random` inside the device wrapper and never seeds
`numpy.random`, so we call its generator directly after seeding both from (user seed, day).
Generating one day per call keeps memory flat for any range (a 30-day window needs ~1 GB).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fitpipe.sources.contract import Fetch, MissingExtra, Source
from fitpipe.sources.synthetic.wear_gaps import DayGaps, gaps_for, stable_seed

if TYPE_CHECKING:
    from fitpipe.ingest.validate import Parser
    from fitpipe.participants import User as Participant

# wearipedia's payload kinds that fitpipe reads (see ../shared/reference/wearipedia-fitbit.md).
PAYLOAD_KINDS = (
    "intraday_heart_rate",
    "heart_rate_day",
    "intraday_active_zone_minute",
    "intraday_spo2",
    "intraday_hrv",
    "intraday_breath_rate",
    "sleep",
    "hrv",
    "steps",
    "distance",
    "minutesSedentary",
    "minutesLightlyActive",
    "minutesFairlyActive",
    "minutesVeryActive",
)
# What a night off removes: everything measured in that night.
NIGHT_KINDS = ("intraday_spo2", "intraday_hrv", "intraday_breath_rate", "sleep", "hrv")
# Whole-day summaries: they reach the phone once the day is over.
DAILY_KINDS = (
    "heart_rate_day",
    "steps",
    "distance",
    "minutesSedentary",
    "minutesLightlyActive",
    "minutesFairlyActive",
    "minutesVeryActive",
)


def _seconds(clock: str) -> int:
    return int(clock[0:2]) * 3600 + int(clock[3:5]) * 60 + int(clock[6:8])


def _worn(clock: str, intervals: list[tuple[int, int]]) -> bool:
    second = _seconds(clock)
    return not any(lo <= second < hi for lo, hi in intervals)


def remove_non_wear(payloads: dict[str, Any], gaps: DayGaps) -> None:
    """Drop the records that fall in non-wear stretches, in place."""
    if gaps.night_off:
        for kind in NIGHT_KINDS:
            payloads[kind] = []
    if not gaps.intervals:
        return
    for day in payloads["intraday_heart_rate"]:
        intraday = day["heart_rate_day"][0]["activities-heart-intraday"]
        intraday["dataset"] = [p for p in intraday["dataset"] if _worn(p["time"], gaps.intervals)]
    for day in payloads["intraday_active_zone_minute"]:
        for entry in day["activities-active-zone-minutes-intraday"]:
            entry["minutes"] = [m for m in entry["minutes"] if _worn(m["minute"], gaps.intervals)]


def move_night_to_its_evening(payloads: dict[str, Any], day: dt.date) -> None:
    """Stamp every SpO2/HRV point of day D's night inside [D 12:00, D+1 12:00), in place.

    wearipedia lists the night that starts on D's evening under D, but stamps after-midnight
    points (and whole nights that start between 00:00 and 03:00) with D's own date. A point
    stamped before noon on D therefore really belongs to the next morning.
    """
    own, following = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()

    def fix(stamp: Any) -> Any:
        if isinstance(stamp, str) and stamp[:10] == own and stamp[11:13] < "12":
            return following + stamp[10:]
        return stamp

    for entry in payloads["intraday_spo2"]:
        for point in entry.get("minutes", []):
            point["minute"] = fix(point.get("minute"))
    for entry in payloads["intraday_hrv"]:
        for night in entry.get("hrv", []):
            for point in night.get("minutes", []):
                point["minute"] = fix(point.get("minute"))


def _before(stamp: Any, cutoff: str) -> bool:
    return isinstance(stamp, str) and stamp[:19] < cutoff


def keep_synced(payloads: dict[str, Any], day: dt.date, synced_until: dt.datetime) -> None:
    """Drop, in place, what the phone had not synced by `synced_until` (local wall time).

    Intraday points arrive with their own time; a sleep log once it has ended; a night's
    summaries once the night window is over; daily totals once the day is over.
    """
    midnight = dt.datetime.combine(day, dt.time())
    cutoff_iso = synced_until.isoformat(timespec="seconds")
    unsynced = DayGaps(intervals=[(max(int((synced_until - midnight).total_seconds()), 0), 2 * 86400)])
    if unsynced.intervals[0][0] < 86400:
        remove_non_wear(payloads, unsynced)
    for entry in payloads["intraday_spo2"]:
        entry["minutes"] = [p for p in entry.get("minutes", []) if _before(p.get("minute"), cutoff_iso)]
    for entry in payloads["intraday_hrv"]:
        for night in entry.get("hrv", []):
            night["minutes"] = [p for p in night.get("minutes", []) if _before(p.get("minute"), cutoff_iso)]
    for entry in payloads["sleep"]:
        entry["sleep"] = [log for log in entry.get("sleep", []) if _before(log.get("endTime"), cutoff_iso)]
    if synced_until < midnight + dt.timedelta(days=1, hours=12):
        payloads["intraday_breath_rate"], payloads["hrv"] = [], []
    if synced_until < midnight + dt.timedelta(days=1):
        for kind in DAILY_KINDS:
            payloads[kind] = []


def _generator():
    try:
        from wearipedia.devices.fitbit.fitbit_sense_gen import create_syn_data
    except ImportError:
        raise MissingExtra("synthetic", "synthetic", "wearipedia") from None
    return create_syn_data


@dataclass(frozen=True)
class SyntheticSettings:
    """seed: the participant's generator seed. wear_gaps: cut synthetic non-wear stretches.
    sync_lag_hours: with a lag of L hours, a fetch at instant T sees what was measured before
    T - L (local); the day settles once its night is fully synced, ceil((12 + L) / 24) days after it."""

    seed: int = 0
    wear_gaps: bool = True
    sync_lag_hours: int = 0


class SyntheticSource(Source):
    """wearipedia's generator, with optional wear gaps and a simulated phone sync lag."""

    name = "synthetic"
    credential_kind = "none"
    settings = SyntheticSettings
    produces = (
        "heart_rate",
        "active_zone_minutes",
        "spo2",
        "hrv_intraday",
        "breathing_rate",
        "sleep_sessions",
        "sleep_stages",
        "heart_rate_daily",
        "daily_activity",
        "hrv_daily",
    )

    @classmethod
    def parsers(cls) -> Sequence[Parser]:
        from fitpipe.sources.synthetic.parse import PARSERS

        return PARSERS

    @classmethod
    def default_settings(cls, user_id: int) -> dict[str, Any]:
        # Multiplying by an odd constant is a bijection modulo 2**31, so seeds never collide,
        # yet neighbouring users get unrelated seeds.
        return super().default_settings(user_id) | {"seed": (user_id * 2654435761) % (2**31)}

    @classmethod
    def prepare_workers(cls) -> None:
        # wearipedia takes ~1.5 s to import: once, before the fork, so every worker shares it.
        _generator()

    def settle_days_for(self, participant: Participant) -> int:
        lag = int(participant.settings.get("sync_lag_hours") or 0)
        return math.ceil((12 + lag) / 24) if lag else 0

    def fetch_day(self, participant: Participant, day: dt.date, fetch: Fetch) -> dict[str, Any]:
        import numpy as np

        create_syn_data = _generator()
        settings = participant.settings
        user_seed = int(settings["seed"])
        seed = stable_seed("day", user_seed, day.isoformat())
        random.seed(seed)
        np.random.seed(seed)
        generated = create_syn_data(seed, day.isoformat(), (day + dt.timedelta(days=1)).isoformat())
        payloads = {kind: generated[kind] for kind in PAYLOAD_KINDS}
        move_night_to_its_evening(payloads, day)
        if settings.get("wear_gaps", True):
            remove_non_wear(payloads, gaps_for(user_seed, day))
        lag = int(settings.get("sync_lag_hours") or 0)
        if lag:
            local_now = fetch.now.astimezone(ZoneInfo(participant.zone_on(day))).replace(tzinfo=None)
            keep_synced(payloads, day, local_now - dt.timedelta(hours=lag))
        return payloads
