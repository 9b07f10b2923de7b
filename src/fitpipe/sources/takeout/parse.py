"""The "takeout" payload format: one local day of records staged from a Google Takeout archive
(fitpipe.sources.takeout.index), turned into rows through the validation engine.

The staged times are already instants (the index applied the Takeout time rules), so the rows
are built by UtcRowBuilder, which takes them as they are; ranges, day ownership, duplicates and
quarantine are the engine's. For each kind of record, only the day's winning copy is used
(see fitpipe.sources.takeout.index: one copy wins).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np
import pandas as pd

from fitpipe.catalogue import BY_NAME, DayWindow
from fitpipe.days import DayContext
from fitpipe.ingest.validate import ParsedDay, Quarantined, RowBuilder
from fitpipe.sources.takeout.index import StagedBlock, metric_of

# Fitbit's minute SpO2 files write 50.0 where the reading was invalid (about 15 % of rows).
SPO2_INVALID_FLOOR = 50.0
NOT_GIVEN = "(not given)"
# Far above any human cadence (about 250 a minute at a sprint); Takeout's steps files are per minute.
MAX_STEPS_PER_MINUTE = 1000


class UtcRowBuilder(RowBuilder):
    """A RowBuilder for records whose times are already naive-UTC instants (or dates, for dated
    metrics), given as whole column arrays."""

    def __init__(
        self, ctx: DayContext, metric, parsed: ParsedDay, times: np.ndarray, columns: Mapping[str, Any], raw: LazyRaw
    ):
        super().__init__(ctx, metric, parsed)
        n = len(times)
        self.times = times
        self.values = {
            name: columns[name] if name in columns else np.full(n, None, dtype=object) for name in self.values
        }
        self.raw = raw

    def _times(self, reject) -> np.ndarray:
        unit = "D" if self.metric.window is DayWindow.DATE else "us"
        times = np.asarray(self.times, dtype=f"datetime64[{unit}]")
        reject(np.isnat(times), "malformed date" if unit == "D" else "malformed time")
        return times

    def _column(self, column, values, reject) -> np.ndarray:
        if column.pg_type in ("timestamptz", "date"):
            unit = "D" if column.pg_type == "date" else "us"
            array = np.asarray(values, dtype=f"datetime64[{unit}]")
            reject(np.isnat(array), f"{column.name} is malformed")
            return array
        return super()._column(column, values, reject)


class LazyRaw:
    """The raw record behind row i, built only for the rows that are quarantined."""

    def __init__(self, columns: Mapping[str, np.ndarray], files: np.ndarray):
        self.columns, self.files = columns, files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int | np.integer) -> dict:
        record = {"file": self.files[i]}
        for name, array in self.columns.items():
            value = array[i]
            record[name] = str(value) if isinstance(value, np.datetime64) else value
        return record


def _choose(payloads: MutableMapping[str, Any]) -> dict[str, list[StagedBlock]]:
    """The day's winning blocks per kind (computed once per day, kept in the day's payloads dict)."""
    if "_winning" in payloads:
        return payloads["_winning"]
    items = payloads.get("items", [])
    best: dict[str, tuple] = {}
    for item in items:
        kind = item.kind
        if kind is not None and (kind not in best or item.key < best[kind]):
            best[kind] = item.key
    winning: dict[str, list[StagedBlock]] = collections.defaultdict(list)
    problems = []
    for item in items:
        if isinstance(item, StagedBlock):
            if item.key == best[item.kind]:
                winning[item.kind].append(item)
        elif item.key is None or item.key == best.get(item.kind):
            problems.append(item)
    payloads["_winning"], payloads["_problems"] = winning, problems
    return winning


def _merged(blocks: list[StagedBlock]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    names = collections.OrderedDict()
    for block in blocks:
        for name in block.columns:
            names[name] = True
    columns = {}
    for name in names:
        parts = [
            block.columns[name] if name in block.columns else np.full(len(block), None, dtype=object)
            for block in blocks
        ]
        columns[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    files = np.repeat(np.array([b.file for b in blocks], dtype=object), [len(b) for b in blocks])
    return columns, files


def _winning_columns(payloads: MutableMapping[str, Any], kind: str) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """The day's winning records of one kind as merged columns and their file per row; None when none."""
    blocks = _choose(payloads).get(kind)
    return _merged(blocks) if blocks else None


def _build(
    ctx: DayContext, parsed: ParsedDay, metric_name: str, times: np.ndarray, columns: Mapping[str, Any], raw: LazyRaw
) -> None:
    UtcRowBuilder(ctx, BY_NAME[metric_name], parsed, times, columns, raw).finish()


def _dated(ctx: DayContext, n: int) -> np.ndarray:
    return np.full(n, np.datetime64(ctx.day, "D"))


def _quarantine(parsed: ParsedDay, metric: str, raw: Any, reason: str) -> None:
    text = repr(raw)
    parsed.quarantined.append(Quarantined(metric, text if len(text) <= 2000 else text[:2000] + "...", reason))


def parse_problems(payloads, ctx, parsed) -> None:
    _choose(payloads)
    for problem in payloads["_problems"]:
        parsed.quarantined.append(Quarantined(problem.metric, problem.raw, problem.reason))


def parse_heart_rate(payloads, ctx, parsed) -> None:
    found = _winning_columns(payloads, "heart_rate")
    if found is None:
        return
    columns, files = found
    raw = LazyRaw(columns, files)
    _build(ctx, parsed, "heart_rate", columns["ts"], {"bpm": columns["bpm"]}, raw)
    confidence = columns.get("confidence")
    if confidence is None or "heart_rate" not in parsed.rows:
        return
    # A confidence row only for a sample that loaded: the sample's own problems are quarantined once.
    loaded = parsed.rows["heart_rate"].columns["ts"]
    given = ~pd.isna(confidence.astype(float)) & np.isin(columns["ts"], loaded)
    if given.any():
        _, first = np.unique(columns["ts"][given], return_index=True)
        rows = np.flatnonzero(given)[first]
        _build(
            ctx,
            parsed,
            "heart_rate_confidence",
            columns["ts"][rows],
            {"confidence": confidence[rows]},
            LazyRaw({n: a[rows] for n, a in columns.items()}, files[rows]),
        )


def parse_spo2(payloads, ctx, parsed) -> None:
    found = _winning_columns(payloads, "spo2")
    if found is None:
        return
    columns, files = found
    floor = columns["spo2_pct"] == SPO2_INVALID_FLOOR
    raw = LazyRaw(columns, files)
    for i in np.flatnonzero(floor):
        _quarantine(parsed, "spo2", raw[i], "SpO2 50.0 is the device's invalid-reading floor, not a measurement")
    keep = ~floor
    kept = {n: a[keep] for n, a in columns.items()}
    _build(ctx, parsed, "spo2", kept["ts"], kept, LazyRaw(kept, files[keep]))


def _simple(kind: str, metric: str, dated: bool = False):
    def parse(payloads, ctx, parsed) -> None:
        found = _winning_columns(payloads, kind)
        if found is None:
            return
        columns, files = found
        times = _dated(ctx, len(files)) if dated else columns["ts"]
        _build(ctx, parsed, metric, times, columns, LazyRaw(columns, files))

    parse.__name__ = f"parse_{metric}"
    return parse


parse_hrv_intraday = _simple("hrv_intraday", "hrv_intraday")
parse_hrv_daily = _simple("hrv_daily", "hrv_daily", dated=True)
parse_breathing_rate = _simple("breathing_rate", "breathing_rate", dated=True)


def parse_resting_heart_rate(payloads, ctx, parsed) -> None:
    found = _winning_columns(payloads, "resting_heart_rate")
    if found is None:
        return
    columns, files = found
    _build(
        ctx,
        parsed,
        "heart_rate_daily",
        _dated(ctx, len(files)),
        {"resting_bpm": columns["bpm"]},
        LazyRaw(columns, files),
    )


def parse_sleep(payloads, ctx, parsed) -> None:
    for kind in ("sleep_sessions", "sleep_stages"):
        found = _winning_columns(payloads, kind)
        if found is not None:
            columns, files = found
            _build(ctx, parsed, kind, columns["ts"], columns, LazyRaw(columns, files))


_ZONES = {
    "fat burn": "fat_burn_minutes",
    "fat_burn": "fat_burn_minutes",
    "cardio": "cardio_minutes",
    "peak": "peak_minutes",
}


def parse_active_zone_minutes(payloads, ctx, parsed) -> None:
    """Takeout gives one row per minute and zone; fitpipe keeps one row per minute."""
    found = _winning_columns(payloads, "active_zone_minutes")
    if found is None:
        return
    columns, files = found
    raw = LazyRaw(columns, files)
    zone = pd.Series(columns["zone"]).astype(str).str.strip().str.lower().map(_ZONES)
    unknown = zone.isna().to_numpy()
    for i in np.flatnonzero(unknown):
        _quarantine(parsed, "active_zone_minutes", raw[i], "heart rate zone is not one of fat burn, cardio, peak")
    frame = pd.DataFrame({"minute": columns["ts"].astype("datetime64[m]"), "zone": zone, "total": columns["total"]})[
        ~unknown
    ]
    if frame.empty:
        return
    flags = pd.get_dummies(frame["zone"]).reindex(columns=sorted(set(_ZONES.values())), fill_value=0).astype(int)
    frame = pd.concat([frame[["minute", "total"]], flags], axis=1)
    # min_count: a minute with an unreadable total stays NaN, so the engine quarantines it.
    per_minute = frame.groupby("minute", sort=True).agg(
        total=("total", lambda s: s.sum(min_count=len(s))), **{name: (name, "sum") for name in flags.columns}
    )
    # A minute's row is built from several records: name the day's files rather than one.
    grouped_files = np.full(len(per_minute), ", ".join(dict.fromkeys(files)), dtype=object)
    minute_columns = {
        "active_zone_minutes": per_minute["total"].to_numpy(dtype=float),
        **{name: per_minute[name].to_numpy(dtype=float) for name in flags.columns},
    }
    times = per_minute.index.to_numpy(dtype="datetime64[us]")
    _build(
        ctx,
        parsed,
        "active_zone_minutes",
        times,
        minute_columns,
        LazyRaw({"minute": times, **minute_columns}, grouped_files),
    )


def parse_daily_activity(payloads, ctx, parsed) -> None:
    """Takeout gives steps per minute; fitpipe keeps the local day's total."""
    found = _winning_columns(payloads, "steps")
    if found is None:
        return
    columns, files = found
    steps = columns["steps"]
    unreadable = np.isnan(steps)
    # One minute's count out of range is that minute's problem, not the day's: it is quarantined
    # and the day's total is the sum of the readable minutes (a negative count never subtracts).
    with np.errstate(invalid="ignore"):
        impossible = ~unreadable & ((steps < 0) | (steps > MAX_STEPS_PER_MINUTE) | (steps != np.floor(steps)))
    raw = LazyRaw(columns, files)
    for i in np.flatnonzero(unreadable):
        _quarantine(parsed, "daily_activity", raw[i], "steps is not a number")
    for i in np.flatnonzero(impossible):
        _quarantine(
            parsed,
            "daily_activity",
            raw[i],
            f"steps in one minute must be a whole number from 0 to {MAX_STEPS_PER_MINUTE}",
        )
    counted = ~unreadable & ~impossible
    total = float(steps[counted].sum()) if counted.any() else np.nan
    _build(
        ctx,
        parsed,
        "daily_activity",
        _dated(ctx, 1),
        {"steps": np.array([total])},
        LazyRaw({"day": np.array([str(ctx.day)]), "steps": np.array([total])}, np.array([files[0]], dtype=object)),
    )


def parse_data_sources(payloads, ctx, parsed) -> None:
    """Provenance: per metric, the records read per file family and named device or app."""
    counts: collections.Counter = collections.Counter()
    for kind, blocks in _choose(payloads).items():
        for block in blocks:
            sources = block.columns.get("data_source")
            if sources is None:
                counts[(metric_of(kind), block.origin, NOT_GIVEN)] += len(block)
            else:
                for source, n in collections.Counter(str(s).strip() or NOT_GIVEN for s in sources).items():
                    counts[(metric_of(kind), block.origin, source)] += n
    if not counts:
        return
    keys = sorted(counts)
    columns = {
        "metric": np.array([k[0] for k in keys], dtype=object),
        "origin": np.array([k[1] for k in keys], dtype=object),
        "data_source": np.array([k[2] for k in keys], dtype=object),
        "samples": np.array([counts[k] for k in keys], dtype=float),
    }
    _build(
        ctx,
        parsed,
        "data_sources",
        _dated(ctx, len(keys)),
        columns,
        LazyRaw(columns, np.array(["(summary)"] * len(keys), dtype=object)),
    )


PARSERS = (
    parse_problems,
    parse_heart_rate,
    parse_active_zone_minutes,
    parse_spo2,
    parse_hrv_intraday,
    parse_breathing_rate,
    parse_sleep,
    parse_resting_heart_rate,
    parse_daily_activity,
    parse_hrv_daily,
    parse_data_sources,
)
