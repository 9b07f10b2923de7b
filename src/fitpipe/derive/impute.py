"""`fitpipe impute`: fill missing minutes into imputed_values, never touching measurements.

Per participant, in one transaction under the participant's exclusive lock (so no
day of theirs is half-replaced while we read): read 1-minute means from the raw table, fill the
gaps (fitpipe.derive.imputation), replace the earlier imputations of the range, and log the range for
the rollups, which are refreshed at the end.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import psycopg

from fitpipe.catalogue import METRICS, Metric
from fitpipe.catalogue import metric as metric_named
from fitpipe.copybin import copy_rows
from fitpipe.db import one_row
from fitpipe.derive.imputation import METHODS
from fitpipe.derive.retention import RETAINED, raw_runs, rollup_only_days
from fitpipe.derive.uncertainty import impute_with_intervals
from fitpipe.errors import BadInput
from fitpipe.locks import lock_user_exclusive
from fitpipe.participants import User, list_users
from fitpipe.timezones import aware_utc

# Days either side of the range whose data shapes the participant's typical day.
PROFILE_CONTEXT_DAYS = 28
_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*(?:m|min))?\s*$", re.I)


def parse_duration_minutes(text: str) -> int:
    """'90min', '2h', '1h30m', '45m' -> minutes."""
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise BadInput(f"--max-gap must look like 30min, 2h or 1h30m, got {text!r}")
    minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if minutes < 1:
        raise BadInput("--max-gap must be at least one minute")
    return minutes


@dataclass
class ImputeReport:
    values: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    users: int = 0
    days: int = 0  # participant-days in the imputed ranges
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.values.values())


def minute_means(conn, user: User, metric: Metric, lo: dt.datetime, hi: dt.datetime):
    fields = ", ".join(f"avg({c.name})::float8" for c in metric.values)
    rows = conn.execute(
        f"SELECT time_bucket('1 minute', {metric.time_column}) AS minute, {fields} FROM {metric.table} "
        f"WHERE user_id = %s AND {metric.time_column} >= %s AND {metric.time_column} < %s GROUP BY 1 ORDER BY 1",
        (user.user_id, lo, hi),
    ).fetchall()
    return rows


def local_minute_of_day(user: User, grid) -> np.ndarray:
    """Each minute's minute-of-day on the participant's own clock at that minute (their zone
    history), so the days before a move line up with the days after it in the daily profile."""
    minute_of_day = np.empty(len(grid), dtype=np.int64)
    end = grid[-1].to_pydatetime() + dt.timedelta(minutes=1)
    for zone, lo, hi in user.zone_spans(grid[0].to_pydatetime(), end):
        inside = np.asarray((grid >= lo) & (grid < hi))
        local = grid[inside].tz_convert(zone)
        minute_of_day[inside] = local.hour * 60 + local.minute
    return minute_of_day


def _impute_metric(
    conn: psycopg.Connection,
    user: User,
    metric: Metric,
    first: dt.date,
    last: dt.date,
    method: str,
    max_gap: int,
    report: ImputeReport,
) -> None:
    import pandas as pd

    day_lo = user.day_context(first).intraday_window(metric)[0]
    day_hi = user.day_context(last).intraday_window(metric)[1]
    lo, hi = aware_utc(day_lo), aware_utc(day_hi)
    context = np.timedelta64(PROFILE_CONTEXT_DAYS, "D")
    rows = minute_means(conn, user, metric, aware_utc(day_lo - context), aware_utc(day_hi + context))
    conn.execute(
        "DELETE FROM imputed_values WHERE user_id = %s AND metric = %s AND ts >= %s AND ts < %s",
        (user.user_id, metric.name, lo, hi),
    )
    conn.execute(
        "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, %s, %s, %s)",
        (user.user_id, metric.name, lo, hi),
    )
    if not rows:
        return
    grid = pd.date_range(rows[0][0], rows[-1][0], freq="1min")
    measured = pd.DataFrame(
        [r[1:] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows]), columns=[c.name for c in metric.values]
    ).reindex(grid)
    minute_of_day = local_minute_of_day(user, grid)
    inside = np.asarray((grid >= pd.Timestamp(lo)) & (grid < pd.Timestamp(hi)))
    times = grid.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[us]")
    for column in metric.values:
        # Imputed values and their intervals stay inside the metric's valid range.
        result = impute_with_intervals(
            measured[column.name].to_numpy(dtype=float), minute_of_day, method, max_gap, column.low, column.high
        )
        values, gap_length = result.value, result.gap_length
        chosen = inside & ~np.isnan(values)
        count = int(chosen.sum())
        if not count:
            continue
        copy_rows(
            conn.cursor(),
            "imputed_values",
            ("user_id", "metric", "field", "ts", "value", "lower", "upper", "method", "gap_minutes"),
            ("integer", "text", "text", "timestamptz", "real", "real", "real", "text", "integer"),
            [
                np.full(count, user.user_id, dtype=np.int32),
                np.full(count, metric.name, dtype=object),
                np.full(count, column.name, dtype=object),
                times[chosen],
                values[chosen].astype(np.float32),
                result.lower[chosen].astype(np.float32),
                result.upper[chosen].astype(np.float32),
                np.full(count, method, dtype=object),
                gap_length[chosen],
            ],
        )
        report.values[metric.name] = report.values.get(metric.name, 0) + count
        starts = chosen & np.concatenate([[True], ~chosen[:-1]])
        report.gaps[metric.name] = report.gaps.get(metric.name, 0) + int(starts.sum())


def impute(
    conn: psycopg.Connection,
    user_ids: Sequence[int] = (),
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    metric_name: str | None = None,
    method: str = "profile",
    max_gap_minutes: int = 120,
    refresh_rollups: bool = True,
) -> ImputeReport:
    if method not in METHODS:
        raise BadInput(f"unknown --method {method!r}; choose from {', '.join(METHODS)}")
    if method == "statespace":
        from fitpipe.derive.statespace import require_statsmodels

        require_statsmodels()
    if start and end and end < start:
        raise BadInput(f"--end {end} is before --start {start}")
    if metric_name:
        chosen = metric_named(metric_name)
        if not chosen.imputable:
            imputable = ", ".join(m.name for m in METRICS if m.imputable)
            raise BadInput(f"metric {metric_name!r} is not imputed; imputable metrics: {imputable}")
        metrics = [chosen]
    else:
        metrics = [m for m in METRICS if m.imputable]
    started = time.perf_counter()
    report = ImputeReport()
    users = list_users(conn, user_ids)
    conn.commit()
    for user in users:
        # One transaction per participant: their lock is held only while their values are replaced.
        with conn.transaction():
            lock_user_exclusive(conn, user.user_id)
            span = one_row(
                conn.execute(
                    "SELECT min(day), max(day) FROM ingested_days WHERE user_id = %s AND day >= %s",
                    (user.user_id, user.study_start),
                )
            )
            if span[0] is None:
                continue
            first = max(start or user.study_start, user.study_start)
            last = min(end or span[1], span[1])
            if last < first:
                continue
            rollup_only = rollup_only_days(conn, [user.user_id]).get(user.user_id, set())
            for metric in metrics:
                # Raw retention dropped the raw rows of rollup-only days: their gaps cannot be found
                # again, so their imputations (already in their rollups) stay as they are.
                runs = raw_runs(first, last, rollup_only) if metric in RETAINED else [(first, last)]
                for run_first, run_last in runs:
                    _impute_metric(conn, user, metric, run_first, run_last, method, max_gap_minutes, report)
        report.users += 1
        report.days += (last - first).days + 1
    if refresh_rollups and report.users:
        from fitpipe.derive.rollups import refresh

        refresh(conn, [u.user_id for u in users])
    report.seconds = time.perf_counter() - started
    return report
