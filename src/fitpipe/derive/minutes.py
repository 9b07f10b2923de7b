"""The 1-minute rollup rows of a day being loaded, computed from the arrays the loader COPYs.

Why the loader writes them and not the refresh: grouping a night's raw rows by minute in SQL
(about 75,000 rows per participant-day) was nine tenths of `aggregate refresh`, on one server
connection. The loader holds those rows as numpy arrays in its worker process already, so it
groups them there, in parallel with the other workers, and COPYs about 8,000 rows per
participant-day into rollup_1min. The refresh then only rolls minutes up to hours and days.

These are the rows the refresh's SQL builds for a window without imputed values, which is every
window the loader replaces (it deletes the window's imputations with its rows): n_measured counts
the minute's rows (a NULL value counts, as count(*) does), the sum is in double precision, min
and max are real and NULL when every value is NULL. Values are rounded to float4 first, as the
server stores them. A minute of float4 samples within the catalogue's ranges sums exactly in
float64, so the sum equals the server's whatever the order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import psycopg

from fitpipe.copybin import encode_row_groups
from fitpipe.ingest.validate import Rows

_MINUTE_US = 60_000_000
_COLUMNS = (
    "user_id",
    "metric",
    "field",
    "bucket",
    "n_measured",
    "sum_measured",
    "min_measured",
    "max_measured",
    "n_imputed",
    "sum_imputed",
    "min_imputed",
    "max_imputed",
)
_TYPES = (
    "integer",
    "rollup_metric",
    "rollup_field",
    "timestamptz",
    "integer",
    "double precision",
    "real",
    "real",
    "integer",
    "double precision",
    "real",
    "real",
)


def _label(text: str, n: int) -> np.ndarray:
    return np.full(n, text.encode(), dtype=f"S{len(text.encode())}")


def minute_row_groups(rows: Rows) -> list[tuple[tuple[str, ...], list[np.ndarray | None]]]:
    """Row groups for encode_row_groups: per value column, minutes with a min/max and minutes without."""
    metric = rows.metric
    times = rows.columns[metric.time_column].astype("datetime64[us]").astype(np.int64)
    if not len(times):
        return []
    minutes = times // _MINUTE_US  # floor division: time_bucket('1 minute') of instants before 1970 too
    order = np.argsort(minutes, kind="stable")
    minutes = minutes[order]
    starts = np.flatnonzero(np.r_[True, minutes[1:] != minutes[:-1]])
    counts = np.diff(np.r_[starts, len(minutes)]).astype(np.int32)
    buckets = (minutes[starts] * _MINUTE_US).astype("datetime64[us]")
    users = np.full(len(starts), int(rows.columns["user_id"][0]), dtype=np.int32)
    zeros_n, zeros_s = np.zeros(len(starts), np.int32), np.zeros(len(starts), np.float64)
    groups: list[tuple[tuple[str, ...], list[np.ndarray | None]]] = []
    for column in metric.values:
        values = rows.columns[column.name][order].astype(np.float32).astype(np.float64)
        missing = np.isnan(values)
        sums = np.add.reduceat(np.where(missing, 0.0, values), starts)
        lows = np.fmin.reduceat(values, starts).astype(np.float32)
        highs = np.fmax.reduceat(values, starts).astype(np.float32)
        some = ~np.isnan(lows)
        for take, with_extremes in ((some, True), (~some, False)):
            if not take.any():
                continue
            n = int(take.sum())
            groups.append(
                (
                    _TYPES,
                    [
                        users[take],
                        _label(metric.name, n),
                        _label(column.name, n),
                        buckets[take],
                        counts[take],
                        sums[take],
                        lows[take] if with_extremes else None,
                        highs[take] if with_extremes else None,
                        zeros_n[take],
                        zeros_s[take],
                        None,
                        None,
                    ],
                )
            )
    return groups


def replace_minutes(
    cur: psycopg.Cursor, user_id: int, windows: Iterable[tuple[str, dt.datetime, dt.datetime]], loaded: Iterable[Rows]
) -> int:
    """Delete the 1-minute rows of each (metric, lo, hi) window and COPY those of the loaded rows."""
    for metric_name, lo, hi in windows:
        cur.execute(
            "DELETE FROM rollup_1min WHERE user_id = %s AND metric = %s AND bucket >= %s AND bucket < %s",
            (user_id, metric_name, lo, hi),
        )
    groups = [group for rows in loaded for group in minute_row_groups(rows)]
    if not groups:
        return 0
    with cur.copy(f"COPY rollup_1min ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        for block in encode_row_groups(groups):
            copy.write(block)
    return sum(next((len(c) for c in columns if c is not None), 0) for _, columns in groups)
