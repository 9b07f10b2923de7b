"""Index a Takeout archive once: read every member one at a time, turn its times into instants,
cut its records into the participant's local days, and stage each day's records on disk.

The load then reads one staged day at a time (fitpipe.sources.takeout.source), so memory is
bounded by the largest file (or CSV chunk), never by the archive. The index itself keeps only
counts per (kind, day, family), which is what the import report lists and what the
one-copy-wins rule decides on.

One copy wins: for each kind of record and each local day, the records of one family (and one
layout tree) are used, the first by `winner_key`: time certainty first (UTC instants, then ISO
local times, then the disputed US-format JSON), then detail, then the newest layout tree. The
other copies for that day are dropped and counted, never added, so a metric present in two
folders (or in two trees of one archive) is counted once, and a day that only the older family
covers still loads from it. For records that are instants (heart rate, steps...), a winner covers
only the spans of its files on the day: a losing family's records outside them are real
measurements (a UTC-dated twin ends mid-day locally) and load with the winner's.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitpipe.catalogue import DayWindow
from fitpipe.days import DayCutter
from fitpipe.errors import BadInput
from fitpipe.sources.takeout.archive import Archive, Member
from fitpipe.sources.takeout.families import HEALTH_CONNECT, KINDS, METRIC_OF, Family, FileProblem, family_of, file_day
from fitpipe.timezones import local_to_utc

Key = tuple  # (preference, -generation, family id): lower wins

# Kinds whose records are instants (primary key (user_id, ts)): a family can cover part of a day.
# Nightly and daily records (sleep, summaries) stay all-or-nothing per day.
PER_INSTANT = frozenset({"heart_rate", "steps", "active_zone_minutes", "spo2", "hrv_intraday"})


def winner_key(family: Family, member: Member) -> Key:
    return (family.preference, -member.generation, family.id)


def metric_of(kind: str) -> str:
    return METRIC_OF.get(kind, kind)


@dataclass
class StagedBlock:
    """Records of one kind, from one file, owned by one local day."""

    kind: str
    key: Key
    origin: str
    file: str
    # "ts" (naive UTC datetime64[us]) and value columns; "data_source" (object) when the file names one.
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


@dataclass
class StagedProblem:
    """A record or file that cannot load, filed under a local day for the quarantine."""

    metric: str
    raw: str
    reason: str
    # The family whose record it is: reported only when that family wins the day. None for a file
    # that could not be read at all, which is always reported.
    kind: str | None = None
    key: Key | None = None


class Stage:
    """Per-day staged records in a folder this process made (mkdtemp, mode 0700), appended as
    files are read. Typed arrays go to .npz files read back with allow_pickle=False; everything
    else is JSON. Nothing is unpickled, so a staged file can hold data but never code.
    directory None: count only."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._blocks = 0

    def add(self, day: dt.date, item: StagedBlock | StagedProblem) -> None:
        if self.directory is None:
            return
        if isinstance(item, StagedProblem):
            entry = {"problem": dataclasses.asdict(item)}
        else:
            self._blocks += 1
            arrays = {n: a for n, a in item.columns.items() if a.dtype != object}
            name = f"block-{self._blocks}.npz"
            # allow_pickle is savez's default, named so that **arrays (column names) is not taken for it.
            np.savez(self.directory / name, allow_pickle=True, **arrays)
            entry = {
                "block": {
                    "kind": item.kind,
                    "key": list(item.key),
                    "origin": item.origin,
                    "file": item.file,
                    "arrays": name,
                    "order": list(item.columns),
                    "objects": {n: a.tolist() for n, a in item.columns.items() if a.dtype == object},
                }
            }
        with open(self.directory / f"{day.isoformat()}.jsonl", "a") as handle:
            handle.write(json.dumps(entry, default=_plain) + "\n")

    def replace(self, day: dt.date, items: list[StagedBlock | StagedProblem]) -> None:
        """Stage exactly these items for the day (the blocks' old arrays stay until the folder goes)."""
        if self.directory is None:
            return
        (self.directory / f"{day.isoformat()}.jsonl").unlink(missing_ok=True)
        for item in items:
            self.add(day, item)

    def read(self, day: dt.date) -> list[StagedBlock | StagedProblem]:
        if self.directory is None:
            return []
        path = self.directory / f"{day.isoformat()}.jsonl"
        if not path.exists():
            return []
        items: list[StagedBlock | StagedProblem] = []
        with open(path) as handle:
            for line in handle:
                entry = json.loads(line)
                if "problem" in entry:
                    problem = entry["problem"]
                    key = tuple(problem["key"]) if problem["key"] is not None else None
                    items.append(StagedProblem(**{**problem, "key": key}))
                    continue
                block = entry["block"]
                with np.load(self.directory / block["arrays"], allow_pickle=False) as arrays:
                    typed = {n: arrays[n] for n in arrays.files}
                objects = {n: _object_array(values) for n, values in block["objects"].items()}
                columns = {n: typed[n] if n in typed else objects[n] for n in block["order"]}
                items.append(StagedBlock(block["kind"], tuple(block["key"]), block["origin"], block["file"], columns))
        return items


def _plain(value: Any) -> Any:
    """JSON for what object columns hold besides str, int, float, bool and None."""
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    raise TypeError(f"cannot stage a {type(value).__name__}")


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@dataclass
class Index:
    layout: str
    trees: list[str]
    files_used: list[str] = field(default_factory=list)
    files_skipped: list[dict] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)  # (kind, day, key) -> records
    origins: dict = field(default_factory=dict)  # key -> origin
    problem_days: collections.Counter = field(default_factory=collections.Counter)
    health_connect: collections.Counter = field(default_factory=collections.Counter)  # kind -> records dropped
    no_value: collections.Counter = field(default_factory=collections.Counter)  # kind -> Fitbit placeholders skipped
    # kind -> records dropped because an earlier file of the same family held the same record
    repeated: collections.Counter = field(default_factory=collections.Counter)
    profile_timezone: str | None = None
    files_by_key: collections.Counter = field(default_factory=collections.Counter)
    # (kind, day, losing key) -> its records kept because no better family covers their instants
    uncovered: collections.Counter = field(default_factory=collections.Counter)

    def winners(self) -> dict[tuple[str, dt.date], Key]:
        best: dict[tuple[str, dt.date], Key] = {}
        for kind, day, key in self.counts:
            if (kind, day) not in best or key < best[(kind, day)]:
                best[(kind, day)] = key
        return best

    @property
    def days(self) -> list[dt.date]:
        return sorted({day for _, day, _ in self.counts} | set(self.problem_days))

    def per_kind(self) -> dict[str, dict]:
        """Per kind: records used, first and last day, families used and records dropped as copies."""
        winners = self.winners()
        report: dict[str, dict] = {}
        for (kind, day, key), n in sorted(self.counts.items()):
            entry = report.setdefault(
                kind,
                {
                    "records": 0,
                    "first": day,
                    "last": day,
                    "used": collections.Counter(),
                    "copies_dropped": collections.Counter(),
                },
            )
            if winners[(kind, day)] == key:
                entry["records"] += n
                entry["used"][self.origins[key]] += n
                entry["first"], entry["last"] = min(entry["first"], day), max(entry["last"], day)
            else:
                kept = self.uncovered[(kind, day, key)]
                if kept:
                    entry["records"] += kept
                    entry["used"][self.origins[key]] += kept
                    entry["first"], entry["last"] = min(entry["first"], day), max(entry["last"], day)
                if n > kept:
                    entry["copies_dropped"][self.origins[key]] += n - kept
        return report


# Times outside these years are no reading of a wearable (a year-1 or year-9999 record): read as
# malformed, so the day arithmetic around them never leaves the calendar.
_EARLIEST, _LATEST = np.datetime64("1800-01-01"), np.datetime64("2200-01-01")


def _within_range(times: np.ndarray) -> np.ndarray:
    """The times, with those outside [_EARLIEST, _LATEST) made NaT."""
    outside = (times < _EARLIEST) | (times >= _LATEST)
    if not outside.any():
        return times
    times = times.copy()
    times[outside] = np.datetime64("NaT")
    return times


class Indexer:
    """Reads an archive into an Index and (unless counting only) a Stage."""

    def __init__(
        self,
        archive: Archive,
        user: Any,
        stage: Stage,
        timezone: str | None = None,
        clocks: dict[str, str] | None = None,
    ):
        self.archive, self.user, self.stage, self.timezone = archive, user, stage, timezone
        # family id -> "utc" or "local", as decided for this archive (fitpipe.sources.takeout.clocks)
        self.clocks = clocks or {}
        self.cutters = {window: DayCutter(user, window) for window in (DayWindow.CALENDAR, DayWindow.NIGHT)}
        self.index = Index(archive.layout, [tree for _, tree in archive.trees])
        self._sleep_logs: dict[Key, set[int]] = collections.defaultdict(set)
        # (kind, day, key) -> (file, first, last instant) of each block staged: files whose spans
        # overlap on a day may repeat records, and only those days are compared row by row.
        self._spans: dict[tuple, list[tuple[str, np.datetime64, np.datetime64]]] = collections.defaultdict(list)
        self._overlapping: set[tuple] = set()

    def zone_on(self, day: dt.date) -> str:
        return self.timezone or self.user.zone_on(day)

    # --- times ----------------------------------------------------------------------------------

    def _localise(self, local: np.ndarray) -> np.ndarray:
        """Naive local datetime64 -> naive UTC datetime64[us]; NaT stays NaT, a DST-gap time becomes NaT."""
        out = np.full(len(local), np.datetime64("NaT"), dtype="datetime64[us]")
        valid = ~np.isnat(local)
        if not valid.any():
            return out
        days = local[valid].astype("datetime64[D]")
        unique_days = np.unique(days)
        zones = {day: self.zone_on(day.item()) for day in unique_days}
        positions = np.flatnonzero(valid)
        for zone in set(zones.values()):
            in_zone = np.isin(days, [d for d, z in zones.items() if z == zone])
            out[positions[in_zone]] = local_to_utc(local[valid][in_zone], zone)
        return out

    def clock_of(self, family: Family) -> str:
        """The clock the family's times are read in: decided for this archive, else as documented."""
        return self.clocks.get(family.id, "utc" if family.clock == "utc" else "local")

    def instants(self, family: Family, times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(naive UTC instants, whether each time was readable at all)."""
        text = times.astype("string").str.strip()
        clock = self.clock_of(family)
        if family.clock == "utc" and clock == "utc":
            aware = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            utc = _within_range(aware.dt.tz_localize(None).to_numpy(dtype="datetime64[us]", copy=True))
            readable = ~np.isnat(utc)
            if family.daily:
                # A daily value stamped at midnight UTC names a date; read it as that date's local midnight.
                midnight = readable & (utc == utc.astype("datetime64[D]"))
                if midnight.any():
                    utc[midnight] = self._localise(utc[midnight].astype("datetime64[s]"))
            return utc, readable
        # As written, without any zone: a wall time on the file's clock.
        pattern = "%m/%d/%y %H:%M:%S" if family.clock == "us-local" else "%Y-%m-%dT%H:%M:%S"
        naive = pd.to_datetime(
            text.str.slice(0, 19) if family.clock != "us-local" else text, format=pattern, errors="coerce"
        ).to_numpy(dtype="datetime64[s]")
        naive = _within_range(naive)
        if clock == "utc":
            return naive.astype("datetime64[us]"), ~np.isnat(naive)
        return self._localise(naive), ~np.isnat(naive)

    # --- reading --------------------------------------------------------------------------------

    def run(self, on_file: Callable[[int, int, Member], None] | None = None) -> Index:
        members = self.archive.members
        for number, member in enumerate(members, 1):
            if on_file:
                on_file(number, len(members), member)
            if not member.generation:
                self.index.files_skipped.append({"file": member.path, "reason": "outside the Fitbit folders"})
                continue
            if member.name.lower() == "profile.csv":
                self._read_profile(member)
                continue
            family, reason = family_of(member)
            if family is None:
                self.index.files_skipped.append({"file": member.path, "reason": reason})
                continue
            self._read(member, family)
        self._drop_repeats()
        self._keep_uncovered()
        return self.index

    def _drop_repeats(self) -> None:
        """Drop records that an earlier file of the same family already staged for the day (real
        monthly files overlap), counting them as repeats: the same record twice is not bad data."""
        for day in sorted({day for _, day, _ in self._overlapping}):
            items = self.stage.read(day)
            seen: dict[tuple, np.ndarray] = {}
            kept: list[StagedBlock | StagedProblem] = []
            for item in items:
                target = (item.kind, day, item.key)
                if not isinstance(item, StagedBlock) or target not in self._overlapping:
                    kept.append(item)
                    continue
                hashes = pd.util.hash_pandas_object(pd.DataFrame(item.columns), index=False).to_numpy()
                earlier = seen.get(target)
                repeat = np.isin(hashes, earlier) if earlier is not None else np.zeros(len(hashes), dtype=bool)
                seen[target] = hashes if earlier is None else np.concatenate([earlier, hashes])
                if repeat.any():
                    self.index.repeated[item.kind] += int(repeat.sum())
                    self.index.counts[target] -= int(repeat.sum())
                    item = StagedBlock(
                        item.kind, item.key, item.origin, item.file, {n: a[~repeat] for n, a in item.columns.items()}
                    )
                if len(item):
                    kept.append(item)
            self.stage.replace(day, kept)

    def _keep_uncovered(self) -> None:
        """Per instant kind and day, keep a losing family's records outside the spans of every better
        family's files (re-keyed to the winner, so the load takes them); the rest stay copies."""
        keys: dict[tuple[str, dt.date], set] = collections.defaultdict(set)
        for kind, day, key in self.index.counts:
            if kind in PER_INSTANT and self.index.counts[(kind, day, key)]:
                keys[(kind, day)].add(key)
        contested = {target for target, found in keys.items() if len(found) > 1}
        for day in sorted({day for _, day in contested}):
            items = self.stage.read(day)
            kept: list[StagedBlock | StagedProblem] = []
            blocks: list[StagedBlock] = []
            for item in items:
                if isinstance(item, StagedBlock) and (item.kind, day) in contested:
                    blocks.append(item)
                else:
                    kept.append(item)
            blocks.sort(key=lambda block: block.key)
            spans: dict[str, list[tuple[Key, np.datetime64, np.datetime64]]] = collections.defaultdict(list)
            winner: dict[str, Key] = {}
            for block in blocks:
                best = winner.setdefault(block.kind, block.key)
                ts = block.columns["ts"]
                covered = np.zeros(len(ts), dtype=bool)
                for key, start, end in spans[block.kind]:
                    if key < block.key:
                        covered |= (ts >= start) & (ts <= end)
                if covered.all():
                    continue
                if block.key != best:
                    self.index.uncovered[(block.kind, day, block.key)] += int((~covered).sum())
                    spans[block.kind].append((block.key, ts[~covered].min(), ts[~covered].max()))
                    block = StagedBlock(
                        block.kind, best, block.origin, block.file, {n: a[~covered] for n, a in block.columns.items()}
                    )
                else:
                    spans[block.kind].append((block.key, ts.min(), ts.max()))
                kept.append(block)
            self.stage.replace(day, kept)

    def _open(self, member: Member):
        return self.archive.open(member)

    def _read_profile(self, member: Member) -> None:
        self.index.files_used.append(member.path)
        try:
            with self._guard(member), self._open(member) as stream:
                frame = pd.read_csv(stream, dtype=str, keep_default_na=False)
        except (FileProblem, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            return
        columns = {c.strip().lower(): c for c in frame.columns}
        if "timezone" in columns and len(frame):
            self.index.profile_timezone = frame[columns["timezone"]].iloc[0].strip() or None

    def _guard(self, member: Member):
        archive = self.archive

        class Guard:
            def __enter__(self):
                return self

            def __exit__(self, kind, exc, tb):
                # A damaged member means a damaged archive: stop before anything is loaded.
                if isinstance(exc, (zipfile.BadZipFile, EOFError, zlib_error())):
                    raise BadInput(f"{archive.path}: damaged archive: cannot read {member.path} ({exc})") from None
                return False

        return Guard()

    def _read(self, member: Member, family: Family) -> None:
        key = winner_key(family, member)
        self.index.origins[key] = family.origin
        used = False
        try:
            with self._guard(member), self._open(member) as stream:
                for frame in family.read(stream, member):
                    used = True
                    if family.kind == "sleep_sessions":
                        self._stage_sleep(member, family, key, frame)
                    else:
                        self._stage_frame(member, family, key, frame)
        except FileProblem as exc:
            reason = f"{member.name}: {exc}"
            self.index.files_skipped.append({"file": member.path, "reason": str(exc)})
            day = file_day(member)
            if day is not None:
                self._problem(day, StagedProblem(metric_of(family.kind), member.path, reason))
            return
        if used:
            self.index.files_used.append(member.path)
            self.index.files_by_key[key] += 1

    def _problem(self, day: dt.date, problem: StagedProblem) -> None:
        self.index.problem_days[day] += 1
        self.stage.add(day, problem)

    def _stage_frame(self, member: Member, family: Family, key: Key, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        if "data_source" in frame:
            foreign = frame["data_source"].astype(str).str.contains(HEALTH_CONNECT, na=False).to_numpy()
            if foreign.any():
                self.index.health_connect[family.kind] += int(foreign.sum())
                frame = frame[~foreign]
        if family.placeholder is not None:
            marker = family.placeholder(frame).to_numpy(dtype=bool)
            if marker.any():
                self.index.no_value[family.kind] += int(marker.sum())
                frame = frame[~marker]
            frame = frame.drop(columns=["error"], errors="ignore")
        utc, readable = self.instants(family, frame["time"])
        bad = np.isnat(utc)
        if bad.any():
            self._time_problems(member, family, key, frame, readable, bad)
        keep = ~bad
        columns: dict[str, np.ndarray] = {"ts": utc[keep]}
        for name in frame.columns:
            if name == "time":
                continue
            values = frame[name].to_numpy()[keep]
            if name == "data_source" or name == "zone":
                columns[name] = values.astype(object)
            else:
                columns[name] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
        for name in [n for n in columns if n.startswith("milli_")]:
            # respiratory_rate_sleep_summary_ gives milli-breaths per minute.
            columns[name.removeprefix("milli_")] = columns.pop(name) / 1000.0
        self._stage_by_day(member, family, key, family.kind, columns)

    def _stage_by_day(
        self, member: Member, family: Family, key: Key, kind: str, columns: dict[str, np.ndarray]
    ) -> None:
        ts = columns["ts"]
        if not len(ts):
            return
        window = DayWindow.NIGHT if KINDS[kind] == "night" else DayWindow.CALENDAR
        days = self.cutters[window].days(ts)
        order = np.argsort(days, kind="stable")
        sorted_days = days[order]
        unique, starts = np.unique(sorted_days, return_index=True)
        bounds = [*starts, len(order)]
        for i, day in enumerate(unique):
            rows = order[bounds[i] : bounds[i + 1]]
            block = StagedBlock(kind, key, family.origin, member.path, {n: a[rows] for n, a in columns.items()})
            day = day.item()
            self._note_span((kind, day, key), member.path, block.columns["ts"])
            self.index.counts[(kind, day, key)] += len(rows)
            self.stage.add(day, block)

    def _note_span(self, target: tuple, file: str, ts: np.ndarray) -> None:
        first, last = ts.min(), ts.max()
        spans = self._spans[target]
        if any(other != file and first <= end and start <= last for other, start, end in spans):
            self._overlapping.add(target)
        spans.append((file, first, last))

    def _time_problems(self, member, family, key, frame, readable, bad) -> None:
        dated = file_day(member)
        local_days = pd.to_datetime(
            frame["time"].astype("string").str.slice(0, 19),
            format="%m/%d/%y %H:%M:%S" if family.clock == "us-local" else "ISO8601",
            errors="coerce",
            utc=family.clock == "utc",
        )
        for position in np.flatnonzero(bad):
            record = {"file": member.path, **{k: v for k, v in frame.iloc[position].items() if k != "log"}}
            if readable[position]:
                day = local_days.iloc[position].date()
                reason = f"local time does not exist in {self.zone_on(day)} (DST gap)"
            else:
                day, reason = dated, "malformed time"
            if day is not None:
                self._problem(day, StagedProblem(metric_of(family.kind), repr(record), reason, family.kind, key))

    # --- sleep ----------------------------------------------------------------------------------

    def _stage_sleep(self, member: Member, family: Family, key: Key, frame: pd.DataFrame) -> None:
        """Sleep logs keep the UTC offset in force when the session started for all of its times
        (a DST change in the night does not move them), so each session is read at that offset."""
        sessions = collections.defaultdict(list)
        stages = collections.defaultdict(list)
        for log in frame["log"]:
            try:
                start = dt.datetime.fromisoformat(str(log["startTime"])[:19])
                if not _EARLIEST <= np.datetime64(start) < _LATEST:
                    raise ValueError(f"start time {start} is out of range")
                zone = _zone(self.zone_on(start.date()))
                aware = start.replace(tzinfo=zone, fold=0)
                if aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != start:
                    day = start.date()
                    self._problem(
                        day,
                        StagedProblem(
                            "sleep_sessions",
                            repr(_brief(log)),
                            f"start time does not exist in {zone.key} (DST gap)",
                            "sleep_sessions",
                            key,
                        ),
                    )
                    continue
                offset = aware.utcoffset() or dt.timedelta(0)
                main = log.get("mainSleep", log.get("isMainSleep"))
                row = {
                    "ts": _at_offset_to_utc(log["startTime"], offset),
                    "end_ts": _at_offset_to_utc(log["endTime"], offset),
                    "date_of_sleep": np.datetime64(str(log["dateOfSleep"])[:10], "D"),
                    "log_id": int(log["logId"]),
                    "is_main_sleep": bool(main) if main is not None else None,
                    "duration_s": (log["duration"] / 1000) if log.get("duration") is not None else None,
                    **{column: log.get(field) for column, field in _SLEEP_FIELDS},
                }
                segments = []
                levels = log.get("levels") or {}
                for is_short, name in ((False, "data"), (True, "shortData")):
                    for segment in levels.get(name) or []:
                        segments.append(
                            {
                                "ts": _at_offset_to_utc(segment["dateTime"], offset),
                                "is_short": is_short,
                                "stage": segment["level"],
                                "seconds": segment["seconds"],
                            }
                        )
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                dated = file_day(member)
                if dated is not None:
                    self._problem(
                        dated,
                        StagedProblem(
                            "sleep_sessions",
                            repr(_brief(log)),
                            f"malformed sleep log ({type(exc).__name__}: {exc})",
                            "sleep_sessions",
                            key,
                        ),
                    )
                continue
            if row["log_id"] in self._sleep_logs[key]:
                # The same log in two monthly files (only its 30-day averages differ): one copy loads.
                self.index.repeated["sleep_sessions"] += 1
                self.index.repeated["sleep_stages"] += len(segments)
                continue
            self._sleep_logs[key].add(row["log_id"])
            sessions["all"].append(row)
            stages["all"].extend(segments)
        for kind, rows in (("sleep_sessions", sessions["all"]), ("sleep_stages", stages["all"])):
            if rows:
                columns = {
                    name: np.array([r[name] for r in rows], dtype=_SLEEP_DTYPES.get(name, object)) for name in rows[0]
                }
                self._stage_by_day(member, family, key, kind, columns)


_SLEEP_FIELDS = (
    ("efficiency", "efficiency"),
    ("minutes_asleep", "minutesAsleep"),
    ("minutes_awake", "minutesAwake"),
    ("minutes_to_fall_asleep", "minutesToFallAsleep"),
    ("minutes_after_wakeup", "minutesAfterWakeup"),
    ("time_in_bed", "timeInBed"),
)
_SLEEP_DTYPES = {"ts": "datetime64[us]", "end_ts": "datetime64[us]", "date_of_sleep": "datetime64[D]"}


def _at_offset_to_utc(text: Any, offset: dt.timedelta) -> np.datetime64:
    """A sleep log's local wall time (its first 19 characters), read at `offset` from UTC."""
    return np.datetime64(dt.datetime.fromisoformat(str(text)[:19]) - offset, "us")


def _brief(log: Any) -> Any:
    """A sleep log without its (long) stage lists, for a quarantine row."""
    return {k: v for k, v in log.items() if k != "levels"} if isinstance(log, dict) else log


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def zlib_error():
    import zlib

    return zlib.error
