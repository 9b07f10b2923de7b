"""Which clock a Takeout file family writes, decided per archive from evidence in the archive.

A time without a zone (Global Export Data's MM/DD/YY HH:MM:SS) or with a zone that may not be
true (Google-era CSVs that wrote the local clock with a Z) is read in one of two clocks: "utc"
(the time is an instant) or "local" (the participant's wall time). Real exports differ: the
2018 fitbit.com heart-rate and steps JSON were UTC; later ones are read as local by most tools.
So each archive is surveyed before it is read, and each questioned family gets the clock its own
data supports, in this order:

1. an override (`--clock FAMILY=utc|local`) when given;
2. a twin: the same samples in a family with explicit UTC times (Physical Activity_GoogleData
   CSVs): the clock under which the two agree minute by minute;
3. the DST signature: people live by the local clock, so a day's rhythm (heart-rate trough,
   step-free hours) stays put on a local clock at a DST transition and jumps by the change of
   offset on a UTC clock;
4. agreement with sleep sessions (sleep-*.json, local by every account): heart rate is lowest
   and steps are absent inside them on the right clock. This one also works in zones without DST,
   as long as their offset is not zero;
5. otherwise the family's documented default, said to be undecided.

The survey reads the sleep logs and a bounded sample of each questioned family's files (those
near DST transitions, then files spread over the archive), reduced to per-minute values, so it
costs a small part of the import however large the archive.
"""

from __future__ import annotations

import datetime as dt
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from fitpipe.errors import BadInput
from fitpipe.sources.takeout.archive import Archive, Member
from fitpipe.sources.takeout.families import FAMILIES, Family, FileProblem, family_of, file_day

CLOCKS = ("utc", "local")
# Families whose clock is decided from evidence, and their clock when the evidence is silent.
QUESTIONED = {"heart-rate-json": "local", "steps-json": "local", "heart-rate-csv": "utc", "steps-csv": "utc"}
# A JSON family and its twin with explicit UTC times.
TWINS = {"heart-rate-json": "heart-rate-csv", "steps-json": "steps-csv"}
VALUE = {"heart_rate": "bpm", "steps": "steps"}

SAMPLE_FILES = 40  # spread over the archive, per family, besides those near DST transitions
DST_WINDOW_DAYS = 14  # days each side of a transition whose rhythm is compared
BIN_MINUTES = 10
DST_MARGIN_MINUTES = 30
MIN_RHYTHM_DAYS = 5  # days with data on each side of a transition
MIN_SLEEP_SESSIONS = 3
MIN_TWIN_MINUTES = 30


@dataclass
class ClockDecision:
    family: str
    clock: str
    by: str  # override, twin, dst, sleep, default
    figure: str  # the figure that decided it, in words

    def as_dict(self) -> dict:
        return {"clock": self.clock, "by": self.by, "figure": self.figure}


def parse_overrides(values: list[str] | None) -> dict[str, str]:
    """`--clock FAMILY=utc|local`, FAMILY a family id (heart-rate-json) or a kind (heart_rate)."""
    overrides: dict[str, str] = {}
    kinds = {QUESTIONED_KIND[f] for f in QUESTIONED}
    for value in values or []:
        name, sep, clock = value.partition("=")
        name, clock = name.strip(), clock.strip().lower()
        if not sep or clock not in CLOCKS:
            raise BadInput(f"--clock {value}: give FAMILY=utc or FAMILY=local")
        if name in QUESTIONED:
            overrides[name] = clock
        elif name in kinds:
            overrides.update({f: clock for f in QUESTIONED if QUESTIONED_KIND[f] == name})
        else:
            known = ", ".join(sorted(set(QUESTIONED) | kinds))
            raise BadInput(f"--clock {value}: no family {name!r} has a clock to decide; one of {known}")
    return overrides


QUESTIONED_KIND = {f.id: f.kind for f in FAMILIES if f.id in QUESTIONED}
_BY_ID = {f.id: f for f in FAMILIES}


@dataclass
class Survey:
    """Per-minute values per questioned family, read at the clock as written (naive), and the
    archive's sleep sessions as naive local (start, end)."""

    minutes: dict[str, pd.Series] = field(default_factory=dict)
    sessions: list[tuple[Any, Any]] = field(default_factory=list)  # naive local datetime64[s]


def _naive(family: Family, times: pd.Series) -> np.ndarray:
    text = times.astype("string").str.strip()
    if family.clock == "us-local":
        parsed = pd.to_datetime(text, format="%m/%d/%y %H:%M:%S", errors="coerce")
    else:
        parsed = pd.to_datetime(text.str.slice(0, 19), format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    return parsed.to_numpy(dtype="datetime64[s]")


def transitions(zone: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, int]]:
    """The days in [first, last] on which the zone's UTC offset changes, with the change in minutes."""
    tz = ZoneInfo(zone)
    found = []
    day, previous = first, None
    while day <= last + dt.timedelta(days=1):
        offset = dt.datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        if previous is not None and minutes != previous:
            found.append((day, minutes - previous))  # the change falls in the small hours of `day`
        previous, day = minutes, day + dt.timedelta(days=1)
    return found


def _sample(members: list[Member], zone_on: Callable[[dt.date], str]) -> list[Member]:
    """The files around the first and the last DST transition, and files spread evenly over the archive."""
    dated = sorted((d, m) for m in members if (d := file_day(m)) is not None)
    if len(dated) <= SAMPLE_FILES:
        return [m for _, m in dated] + [m for m in members if file_day(m) is None]
    first, last = dated[0][0], dated[-1][0]
    near = set()
    changes = transitions(zone_on(first), first, last)
    for day, _ in changes[:1] + changes[-1:]:
        lo, hi = day - dt.timedelta(days=DST_WINDOW_DAYS + 1), day + dt.timedelta(days=DST_WINDOW_DAYS + 1)
        inside = [m.path for file_day, m in dated if lo <= file_day <= hi]
        # A file of ~30 days (steps) that starts before the window covers its start.
        earlier = [m.path for file_day, m in dated if file_day < lo][-1:]
        near.update(inside + earlier)
    spread = {dated[int(i)][1].path for i in np.linspace(0, len(dated) - 1, SAMPLE_FILES)}
    chosen = near | spread
    return [m for _, m in dated if m.path in chosen]


def survey(archive: Archive, zone_on: Callable[[dt.date], str]) -> Survey:
    found = Survey()
    by_family: dict[str, list[Member]] = {}
    for member in archive.members:
        if not member.generation:
            continue
        family, _ = family_of(member)
        if family is None:
            continue
        if family.kind == "sleep_sessions":
            found.sessions.extend(_sessions(archive, member))
        elif family.id in QUESTIONED:
            by_family.setdefault(family.id, []).append(member)
    for family_id, members in by_family.items():
        family = _BY_ID[family_id]
        parts = []
        for member in _sample(members, zone_on):
            parts.extend(_minutes(archive, member, family))
        if parts:
            series = pd.concat(parts)
            found.minutes[family_id] = (
                series.groupby(level=0).mean() if family.kind == "heart_rate" else series.groupby(level=0).sum()
            )
    return found


class _Damaged:
    """A member that cannot be decompressed means a damaged archive: one clear line, nothing written."""

    def __init__(self, archive: Archive, member: Member):
        self.archive, self.member = archive, member

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:
        if isinstance(exc, (zipfile.BadZipFile, EOFError, zlib.error)):
            raise BadInput(f"{self.archive.path}: damaged archive: cannot read {self.member.path} ({exc})") from None


# Evidence comes from the wearable era only: a stray record dated year 1 or 9999 (which the index
# quarantines) would otherwise stretch the span the DST survey walks past what dates can hold.
SURVEY_FROM, SURVEY_UNTIL = np.datetime64("2000-01-01", "s"), np.datetime64("2100-01-01", "s")


def _minutes(archive: Archive, member: Member, family: Family) -> list[pd.Series]:
    column = VALUE[family.kind]
    parts = []
    try:
        with _Damaged(archive, member), archive.open(member) as stream:
            for frame in family.read(stream, member):
                naive = _naive(family, frame["time"])
                values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
                keep = ~np.isnat(naive) & ~np.isnan(values) & (naive >= SURVEY_FROM) & (naive < SURVEY_UNTIL)
                if keep.any():
                    minute = naive[keep].astype("datetime64[m]")
                    series = pd.Series(values[keep], index=pd.DatetimeIndex(minute))
                    grouped = series.groupby(level=0)
                    parts.append(grouped.mean() if family.kind == "heart_rate" else grouped.sum())
    except FileProblem:
        return []
    return parts


def _sessions(archive: Archive, member: Member) -> list[tuple[Any, Any]]:
    family, _ = family_of(member)
    assert family is not None
    sessions = []
    try:
        with _Damaged(archive, member), archive.open(member) as stream:
            for frame in family.read(stream, member):
                for log in frame["log"]:
                    try:
                        start = np.datetime64(str(log["startTime"])[:19], "s")
                        end = np.datetime64(str(log["endTime"])[:19], "s")
                    except (KeyError, TypeError, ValueError):
                        continue
                    if end > start and start >= SURVEY_FROM and end < SURVEY_UNTIL:
                        sessions.append((start, end))
    except FileProblem:
        return []
    return sessions


# --- the evidence ---------------------------------------------------------------------------------


def _offset_minutes(zone: str, naive: np.datetime64) -> int:
    moment = pd.Timestamp(naive).to_pydatetime().replace(tzinfo=ZoneInfo(zone))
    offset = moment.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def twin_evidence(json_minutes: pd.Series, twin_minutes: pd.Series, zone_on) -> tuple[str, str] | None:
    """Compare the JSON's per-minute values with its UTC twin's, reading the JSON either way."""
    if json_minutes.empty or twin_minutes.empty:
        return None
    naive = json_minutes.index.to_numpy(dtype="datetime64[m]")
    days = naive.astype("datetime64[D]")
    as_local = np.empty(len(naive), dtype="datetime64[m]")
    for day in np.unique(days):
        rows = days == day
        offset = _offset_minutes(zone_on(day.item()), np.datetime64(day, "s") + np.timedelta64(12, "h"))
        as_local[rows] = naive[rows] - np.timedelta64(offset, "m")
    counts = {}
    for clock, instants in (("utc", naive), ("local", as_local)):
        twin = twin_minutes.reindex(pd.DatetimeIndex(instants)).to_numpy()
        both = ~np.isnan(twin)
        counts[clock] = (int((np.abs(twin[both] - json_minutes.to_numpy()[both]) < 0.5).sum()), int(both.sum()))
    (best, (hits, common)), (other, (other_hits, _)) = sorted(counts.items(), key=lambda kv: -kv[1][0])
    if hits < MIN_TWIN_MINUTES or hits < 2 * max(other_hits, 1):
        return None
    return best, f"{hits:,} of {common:,} minutes equal its UTC twin read as {best} ({other_hits:,} read as {other})"


def _profile(minutes: pd.Series, lo: dt.date, hi: dt.date) -> np.ndarray:
    """Mean value per 10-minute bin of the naive clock, over the days [lo, hi); all NaN when fewer
    than MIN_RHYTHM_DAYS days have data (one day's rhythm says little)."""
    index = pd.DatetimeIndex(minutes.index)
    chosen = minutes[(index >= pd.Timestamp(lo)) & (index < pd.Timestamp(hi))]
    bins = np.full(24 * 60 // BIN_MINUTES, np.nan)
    if len(np.unique(pd.DatetimeIndex(chosen.index).normalize())) < MIN_RHYTHM_DAYS:
        return bins
    times = pd.DatetimeIndex(chosen.index)
    of_day = (times.hour * 60 + times.minute) // BIN_MINUTES
    means = chosen.groupby(np.asarray(of_day)).mean()
    bins[means.index.to_numpy()] = means.to_numpy()
    return bins


def _shift(before: np.ndarray, after: np.ndarray) -> int | None:
    """The shift in minutes (later positive) that best lays `after` over `before`."""
    best, best_cost = None, np.inf
    n = len(before)
    for step in range(-12, 13):
        moved = np.roll(after, -step)
        both = ~np.isnan(before) & ~np.isnan(moved)
        if both.sum() < n * 2 // 3:
            continue
        a, b = before[both], moved[both]
        cost = np.mean(np.abs((a - a.mean()) - (b - b.mean())))
        if cost < best_cost:
            best, best_cost = step * BIN_MINUTES, cost
    return best


def dst_evidence(minutes: pd.Series, zone_on) -> tuple[str, str] | None:
    """At each DST transition the data spans, how far its daily rhythm moved on the file's clock."""
    if minutes.empty:
        return None
    first, last = minutes.index.min().date(), minutes.index.max().date()
    seen = []
    for day, change in transitions(zone_on(first), first, last):
        window = dt.timedelta(days=DST_WINDOW_DAYS)
        before = _profile(minutes, day - window, day)
        after = _profile(minutes, day + dt.timedelta(days=1), day + dt.timedelta(days=1) + window)
        moved = _shift(before, after)
        if moved is not None:
            seen.append((day, change, moved))
    votes = {"utc": 0, "local": 0}
    for _, change, moved in seen:
        # People drift too (a later bedtime after the change): the clock whose expected move (0 on a
        # local clock, minus the change of offset on a UTC clock) is nearer wins, by a clear margin.
        to_local, to_utc = abs(moved), abs(moved + change)
        if abs(to_local - to_utc) >= DST_MARGIN_MINUTES:
            votes["local" if to_local < to_utc else "utc"] += 1
    if not seen or votes["utc"] == votes["local"]:
        return None
    clock = "utc" if votes["utc"] > votes["local"] else "local"
    detail = "; ".join(f"{moved:+d} min at {day} (offset {change:+d} min)" for day, change, moved in seen[:4]) + (
        f"; {len(seen) - 4} more" if len(seen) > 4 else ""
    )
    return clock, (
        f"daily rhythm on the file's clock moved {detail}: {votes[clock]} of {len(seen)} transition(s) fit a "
        f"{clock} clock"
    )


def sleep_evidence(minutes: pd.Series, kind: str, sessions: list, zone_on) -> tuple[str, str] | None:
    """Heart rate lowest (steps fewest) inside the archive's sleep sessions: on which clock?"""
    if minutes.empty or len(sessions) < MIN_SLEEP_SESSIONS:
        return None
    index = minutes.index.to_numpy(dtype="datetime64[m]")
    values = minutes.to_numpy()
    inside: dict[str, np.ndarray] = {}
    used = 0
    for clock in CLOCKS:
        mask = np.zeros(len(index), dtype=bool)
        for start, end in sessions:
            shift = 0
            if clock == "utc":
                shift = _offset_minutes(zone_on(start.astype("datetime64[D]").item()), start)
            lo = np.searchsorted(index, (start - np.timedelta64(shift, "m")).astype("datetime64[m]"))
            hi = np.searchsorted(index, (end - np.timedelta64(shift, "m")).astype("datetime64[m]"))
            mask[lo:hi] = True
            used += clock == "utc" and hi > lo
        inside[clock] = values[mask]
    if used < MIN_SLEEP_SESSIONS or min(len(v) for v in inside.values()) < 60:
        return None
    mean = {clock: float(np.mean(v)) for clock, v in inside.items()}
    unit = "bpm" if kind == "heart_rate" else "steps a minute"
    low, high = sorted(CLOCKS, key=lambda c: mean[c])
    if mean[low] == mean[high]:
        return None
    if kind == "heart_rate" and mean[high] - mean[low] < 3:
        return None
    if kind == "steps" and not (mean[low] <= 0.5 * mean[high] and mean[high] - mean[low] >= 0.2):
        return None
    return low, (
        f"inside {used} sleep session(s) the mean is {mean[low]:.1f} {unit} read as {low}, "
        f"{mean[high]:.1f} read as {high}"
    )


def decide(
    archive: Archive, zone_on: Callable[[dt.date], str], overrides: dict[str, str] | None = None
) -> dict[str, ClockDecision]:
    """The clock of each questioned family present in the archive."""
    overrides = overrides or {}
    found = survey(archive, zone_on)
    decisions: dict[str, ClockDecision] = {}
    for family_id, minutes in sorted(found.minutes.items()):
        kind = QUESTIONED_KIND[family_id]
        if family_id in overrides:
            decisions[family_id] = ClockDecision(family_id, overrides[family_id], "override", "--clock")
            continue
        twin = TWINS.get(family_id)
        evidence = [
            ("twin", twin_evidence(minutes, found.minutes[twin], zone_on) if twin in found.minutes else None),
            ("dst", dst_evidence(minutes, zone_on)),
            ("sleep", sleep_evidence(minutes, kind, found.sessions, zone_on)),
        ]
        for by, result in evidence:
            if result is not None:
                decisions[family_id] = ClockDecision(family_id, result[0], by, result[1])
                break
        else:
            decisions[family_id] = ClockDecision(
                family_id,
                QUESTIONED[family_id],
                "default",
                "undecided: no UTC twin, no DST transition with data on both sides, and no sleep sessions that "
                "tell the clocks apart; read by the documented default (give --clock to choose)",
            )
    return decisions
