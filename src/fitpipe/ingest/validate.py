"""The validation engine: records of one table in, typed column arrays out, checked against the catalogue.

A source's parsers (each source package's parse.py, named by Source.parsers) walk their payloads and feed records to a
RowBuilder per table. `finish()` validates them all at once. Records that cannot be loaded
(malformed, out of their metric's valid range, at a local time that does not exist, or outside
the day that owns them by fitpipe.days) go to quarantine with the reason; the rest of the day loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fitpipe.catalogue import DayWindow, Metric
from fitpipe.days import DayContext
from fitpipe.timezones import local_to_utc

# The precisions times are read at: a calendar day, or a second.
TimeUnit = Literal["D", "s"]

_NUMPY_TYPES = {
    "smallint": np.int16,
    "integer": np.int32,
    "bigint": np.int64,
    "real": np.float32,
    "double precision": np.float64,
    "boolean": np.bool_,
}


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


class RowBuilder:
    """Collects one table's records, then validates them all at once."""

    def __init__(self, ctx: DayContext, metric: Metric, parsed: ParsedDay):
        self.ctx, self.metric, self.parsed = ctx, metric, parsed
        # Lists filled record by record here (add, extend); a subclass may set whole numpy arrays and
        # a lazy raw view instead, which finish() reads the same way, by length and index: so Any.
        self.times: Any = []
        self.values: dict[str, Any] = {c.name: [] for c in metric.columns[2:]}
        self.raw: Any = []

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
            lo, hi = ctx.intraday_window(metric)
            reject(~((times >= lo) & (times < hi)) & ~np.isnat(times), f"outside local day {ctx.day} of this metric")
        elif n:
            reject(times != np.datetime64(ctx.day, "D"), f"not dated {ctx.day}")
        key = [times] + [arrays[c.name] for c in metric.extra_key]
        reject(_duplicates(key, keep), "duplicate key in the payload")

        for index, reason in sorted(reasons.items()):
            self.quarantine(self.raw[index], reason)
        if not keep.any():
            return
        columns = {"user_id": np.full(int(keep.sum()), ctx.user_id, dtype=np.int32), metric.time_column: times[keep]}
        columns.update({name: array[keep] for name, array in arrays.items()})
        self.parsed.rows[metric.table] = Rows(metric, columns)

    def _times(self, reject: Callable[[np.ndarray, str], None]) -> np.ndarray:
        unit: TimeUnit
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
                reject(
                    np.array([v is not None and str(v) not in column.allowed for v in values], dtype=bool),
                    f"{column.name} is not one of {', '.join(column.allowed)}",
                )
            return array
        if column.pg_type in ("timestamptz", "date"):
            unit: TimeUnit = "D" if column.pg_type == "date" else "s"
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
        reject(
            outside,
            f"{column.name} outside its valid range {column.low:g}..{column.high:g}"
            if column.low is not None
            else f"{column.name} out of range",
        )
        if column.nullable:
            return np.where(missing, np.nan, numbers)
        target = _NUMPY_TYPES[column.pg_type]
        if np.issubdtype(target, np.integer) or target is np.bool_:
            numbers = np.where(missing | outside, 0, numbers)
            if target is not np.bool_:
                numbers = np.round(numbers)
        return numbers.astype(target)


def _datetime_or_nat(value: Any, unit: TimeUnit) -> np.datetime64:
    try:
        return (
            np.datetime64(str(value)[:19] if unit == "s" else value, unit)
            if isinstance(value, str)
            else np.datetime64("NaT")
        )
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


def records_at(container: Any, *path: str) -> Iterable[Any]:
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


# A parser reads one day's payloads and adds rows (or quarantined records) to the day.
Parser = Callable[[Mapping[str, Any], DayContext, "ParsedDay"], None]


def parse_day(payloads: Mapping[str, Any], ctx: DayContext, parsers: Sequence[Parser]) -> ParsedDay:
    """Every table's rows of one day, by a source's parsers."""
    parsed = ParsedDay()
    for parser in parsers:
        parser(payloads, ctx, parsed)
    return parsed
