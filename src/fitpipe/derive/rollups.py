"""Incremental rollups (1 min -> 1 h -> 1 day) for TimescaleDB's Apache edition.

The portable form of continuous aggregates: each write logs the time range it changed in
rollup_invalidations (same transaction as the data). A refresh reads those rows, widens them to
whole local days of the participant, deletes the rollup buckets of those days and rebuilds them
level by level, then deletes exactly the invalidation rows it read. The loader writes a day's
1-minute rows itself (fitpipe.derive.minutes) and says so in its change record
(minutes_current), so for a night's loads the refresh starts at the hourly level; other changes
(imputation, a full refresh) rebuild the minutes from the raw data too. A load
that commits meanwhile leaves its own invalidation row behind for the next refresh, so nothing
is lost; two refreshes of one participant take turns through an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import psycopg

from fitpipe.catalogue import INTRADAY, Metric
from fitpipe.db import one_row
from fitpipe.derive.adherence import rebuild_wear_days
from fitpipe.derive.batches import BATCH_BOUNDS, MAX_DAYS_PER_STATEMENT, day_runs
from fitpipe.derive.retention import KEEP_ROLLUP_ONLY, rollup_only_days, rollup_only_ranges, without_rollup_only
from fitpipe.locks import lock_refresh
from fitpipe.participants import User, list_users

LEVELS = ("1min", "1h", "1d")
# Participants refreshed in one transaction: a night's refresh of 1,000 is ten transactions, each
# holding 100 advisory locks (well under max_locks_per_transaction x max_connections).
USERS_PER_TRANSACTION = 100


@dataclass
class RefreshReport:
    users: int = 0
    day_ranges: int = 0
    days: int = 0  # distinct (participant, local day) pairs rebuilt
    buckets: dict[str, int] = field(default_factory=lambda: {level: 0 for level in LEVELS})
    invalidations: int = 0
    seconds: float = 0.0


# The start of the local clock hour holding `bucket`, using the UTC offset in force at that
# instant: zones like Asia/Kolkata (+05:30) or Lord Howe (half-hour DST) start their hours at :30.
# Not time_bucket('1 hour', bucket, tz): that would merge the two repeated hours of a fall-back night.
_LOCAL_HOUR = (
    "bucket - make_interval(secs => mod((extract(epoch FROM bucket) + extract(epoch FROM "
    "(bucket AT TIME ZONE %(tz)s) - (bucket AT TIME ZONE 'UTC')))::numeric, 3600)::float8)"
)


# A refresh works on *windows*: (participant, metric, [lo, hi) of whole local days in one zone).
# Each statement handles a whole batch of windows (unnest of parallel arrays), so a night's
# refresh of 1,000 participants is a handful of statements instead of six per participant and metric.
_WINDOW_ROWS = """
    SELECT * FROM unnest(%(w_user)s::int[], %(w_metric)s::rollup_metric[], %(w_lo)s::timestamptz[],
                         %(w_hi)s::timestamptz[], %(w_tz)s::text[], %(w_last_start)s::timestamptz[],
                         %(w_whole_hours)s::boolean[])
                  AS w(user_id, metric, lo, hi, tz, last_start, whole_hours)"""
_WINDOWS = f"windows AS ({_WINDOW_ROWS})"


_COLUMNS = (
    "user_id, metric, field, bucket, n_measured, sum_measured, min_measured, max_measured, "
    "n_imputed, sum_imputed, min_imputed, max_imputed"
)


def _measured_minutes_sql(metric: Metric) -> str:
    unpivot = ", ".join(f"('{c.name}', t.{c.name})" for c in metric.values)
    # Sums accumulate in double precision: sum(real) would round every partial sum to float4, so
    # the result would depend on the order rows arrive in (plan, re-ingest). float4 values carry
    # 24 significant bits, so these sums are exact, and thus the same in any order.
    return f"""
        SELECT w.user_id, f.field, time_bucket('1 minute', t.{metric.time_column}) AS bucket,
               count(*) AS n, sum(f.v::float8) AS s, min(f.v) AS lo, max(f.v) AS hi
        FROM windows w
        JOIN {metric.table} t ON t.user_id = w.user_id AND t.{metric.time_column} >= w.lo
                             AND t.{metric.time_column} < w.hi
        CROSS JOIN LATERAL (VALUES {unpivot}) AS f(field, v)
        WHERE w.metric = '{metric.name}' AND {BATCH_BOUNDS.format(col="t." + metric.time_column)}
        GROUP BY 1, 2, 3
    """


@dataclass(frozen=True)
class _Window:
    user_id: int
    metric: str
    lo: dt.datetime
    hi: dt.datetime
    tz: str
    # The last day of a run may end in the next zone (the day of a move): its buckets are
    # labelled with its own start instead of a midnight of the old zone.
    last_start: dt.datetime
    days: int
    # Rebuild the 1-minute level from the raw rows too (not only the levels above it).
    minutes: bool
    # Every UTC offset in the window is a whole number of hours, so local hours are UTC hours.
    whole_hours: bool


def _whole_hours(user: User, first: dt.date, last: dt.date) -> bool:
    # Checked at each local midnight of the run (one zone) and at its end: zones change offset at
    # most twice a year, never twice within a day.
    zone = ZoneInfo(user.zone_on(first))
    instants = [user.day_start(first + dt.timedelta(days=i)) for i in range((last - first).days + 2)]
    offsets = [instant.astimezone(zone).utcoffset() or dt.timedelta(0) for instant in instants]  # never None here
    return all(offset.total_seconds() % 3600 == 0 for offset in offsets)


def _window(user: User, metric: Metric, first: dt.date, last: dt.date, minutes: bool) -> _Window:
    """Local days first..last of one participant, which share one zone (runs are cut where it changes)."""
    return _Window(
        user.user_id,
        metric.name,
        user.day_start(first),
        user.day_start(last + dt.timedelta(days=1)),
        user.zone_on(first),
        user.day_start(last),
        (last - first).days + 1,
        minutes,
        _whole_hours(user, first, last),
    )


def _window_params(windows: list[_Window]) -> dict:
    return {
        "w_user": [w.user_id for w in windows],
        "w_metric": [w.metric for w in windows],
        "w_lo": [w.lo for w in windows],
        "w_hi": [w.hi for w in windows],
        "w_tz": [w.tz for w in windows],
        "w_last_start": [w.last_start for w in windows],
        "w_whole_hours": [w.whole_hours for w in windows],
        "batch_lo": min(w.lo for w in windows),
        "batch_hi": max(w.hi for w in windows),
    }


def _rebuild(cur: psycopg.Cursor, windows: list[_Window], report: RefreshReport) -> None:
    """Delete the rollup buckets of the windows and rebuild them level by level, set-based."""
    params = _window_params(windows)
    from_raw = [w for w in windows if w.minutes]
    # The 1-minute level only for windows rebuilt from raw rows: the loader wrote the others.
    raw_params = (params if len(from_raw) == len(windows) else _window_params(from_raw)) if from_raw else None
    for level in LEVELS:
        level_params = raw_params if level == "1min" else params
        if level_params:
            cur.execute(
                f"DELETE FROM rollup_{level} r USING ({_WINDOW_ROWS}) w "
                "WHERE r.user_id = w.user_id AND r.metric = w.metric AND r.bucket >= w.lo AND r.bucket < w.hi "
                f"AND {BATCH_BOUNDS.format(col='r.bucket')}",
                level_params,
            )
    if raw_params:
        _rebuild_minutes(cur, raw_params, report)
    _rebuild_upper_levels(cur, params, report)


def _rebuild_minutes(cur: psycopg.Cursor, params: dict, report: RefreshReport) -> None:
    """rollup_1min of the windows in `params` from the raw tables and imputed_values."""
    # Imputed minutes count only where nothing was measured, weighted as the samples they replace.
    for metric in INTRADAY:
        if metric.name not in params["w_metric"]:
            continue
        per_minute = metric.samples_per_minute
        cur.execute(
            f"""
            WITH {_WINDOWS}
            INSERT INTO rollup_1min ({_COLUMNS})
            SELECT coalesce(m.user_id, i.user_id), '{metric.name}', coalesce(m.field, i.field)::rollup_field,
                   coalesce(m.bucket, i.ts),
                   coalesce(m.n, 0), coalesce(m.s, 0), m.lo, m.hi,
                   CASE WHEN m.n IS NULL THEN {per_minute} ELSE 0 END,
                   CASE WHEN m.n IS NULL THEN i.value::float8 * {per_minute} ELSE 0 END,
                   CASE WHEN m.n IS NULL THEN i.value END,
                   CASE WHEN m.n IS NULL THEN i.value END
            FROM ({_measured_minutes_sql(metric)}) m
            FULL JOIN (SELECT i.user_id, i.field, i.ts, i.value
                       FROM windows w JOIN imputed_values i ON i.user_id = w.user_id AND i.metric = w.metric::text
                                                           AND i.ts >= w.lo AND i.ts < w.hi
                       WHERE w.metric = '{metric.name}' AND {BATCH_BOUNDS.format(col="i.ts")}) i
              ON i.user_id = m.user_id AND i.field = m.field AND i.ts = m.bucket
            """,
            params,
        )
        report.buckets["1min"] += cur.rowcount


def _rebuild_upper_levels(cur: psycopg.Cursor, params: dict, report: RefreshReport) -> None:
    # A zone whose offsets are whole hours starts its local hours on UTC hours: a plain
    # time_bucket, far cheaper than converting every minute to local time.
    exact_hour = _LOCAL_HOUR.replace("%(tz)s", "w.tz").replace("bucket", "r.bucket")
    local_hour = f"CASE WHEN w.whole_hours THEN time_bucket('1 hour', r.bucket) ELSE {exact_hour} END"
    local_day = "CASE WHEN r.bucket < w.last_start THEN time_bucket('1 day', r.bucket, w.tz) ELSE w.last_start END"
    for level, source, bucket in (("1h", "1min", local_hour), ("1d", "1h", local_day)):
        cur.execute(
            f"""
            WITH {_WINDOWS}
            INSERT INTO rollup_{level} ({_COLUMNS})
            SELECT r.user_id, r.metric, r.field, {bucket},
                   sum(r.n_measured), sum(r.sum_measured), min(r.min_measured), max(r.max_measured),
                   sum(r.n_imputed), sum(r.sum_imputed), min(r.min_imputed), max(r.max_imputed)
            FROM windows w
            JOIN rollup_{source} r ON r.user_id = w.user_id AND r.metric = w.metric
                                   AND r.bucket >= w.lo AND r.bucket < w.hi
            WHERE {BATCH_BOUNDS.format(col="r.bucket")}
            GROUP BY r.user_id, r.metric, r.field, 4
            """,
            params,
        )
        report.buckets[level] += cur.rowcount


def _local_days(lo: dt.datetime, hi: dt.datetime, user: User) -> set[dt.date]:
    first = user.local_day_of(lo)
    last = user.local_day_of(hi - dt.timedelta(microseconds=1))
    return {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}


def _days_to_rebuild(
    conn: psycopg.Connection, user: User, full: bool, pending: list[tuple]
) -> tuple[dict[str, set[dt.date]], dict[str, set[dt.date]]]:
    """Per metric: the local days to rebuild from the raw rows, and those whose minutes are current."""
    days_by_metric: dict[str, set[dt.date]] = {m.name: set() for m in INTRADAY}
    minutes_current: dict[str, set[dt.date]] = {m.name: set() for m in INTRADAY}
    if full:
        span = one_row(conn.execute("SELECT min(day), max(day) FROM ingested_days WHERE user_id = %s", (user.user_id,)))
        if span[0]:
            for metric in INTRADAY:
                # Night metrics of the last day reach into the next morning.
                days_by_metric[metric.name] = {
                    span[0] + dt.timedelta(days=i) for i in range((span[1] - span[0]).days + 2)
                }
    else:
        for _, user_id, metric_name, lo, hi, current in pending:
            if user_id == user.user_id and metric_name in days_by_metric:
                (minutes_current if current else days_by_metric)[metric_name] |= _local_days(lo, hi, user)
    for name, days in days_by_metric.items():
        minutes_current[name] -= days
    return days_by_metric, minutes_current


def _refresh_users(conn: psycopg.Connection, users: list[User], full: bool, report: RefreshReport) -> None:
    """One transaction for a batch of participants: lock them, read their invalidations, rebuild, consume."""
    ids = [u.user_id for u in users]
    with conn.transaction():
        # Sorted, so two refreshes locking overlapping batches cannot deadlock.
        for user_id in sorted(ids):
            lock_refresh(conn, user_id)
        # Big batches aggregate tens of millions of rows; sort in memory rather than on disk.
        conn.execute("SET LOCAL work_mem = '256MB'")
        pending = conn.execute(
            "SELECT invalidation_id, user_id, metric, lo, hi, minutes_current FROM rollup_invalidations "
            "WHERE user_id = ANY(%s)",
            (ids,),
        ).fetchall()
        # Raw retention: days whose raw rows were dropped keep the rollups they have.
        rollup_only = rollup_only_days(conn, ids)
        if full:
            keep = rollup_only_ranges(users, rollup_only)
            for level in LEVELS:
                conn.execute(
                    f"DELETE FROM rollup_{level} r WHERE r.user_id = ANY(%(ids)s) AND NOT {KEEP_ROLLUP_ONLY}",
                    {"ids": ids, **keep},
                )
            conn.execute("DELETE FROM wear_days WHERE user_id = ANY(%s)", (ids,))
        windows: list[_Window] = []
        touched: dict[int, tuple[User, set[dt.date]]] = {}
        for user in users:
            from_raw, upper_only = _days_to_rebuild(conn, user, full, pending)
            from_raw = {
                name: without_rollup_only(name, days, rollup_only.get(user.user_id, set()))
                for name, days in from_raw.items()
            }
            days = set().union(*from_raw.values(), *upper_only.values())
            report.days += len(days)
            if days:
                touched[user.user_id] = (user, days)
            for metric in INTRADAY:
                for minutes, days_of_metric in ((True, from_raw), (False, upper_only)):
                    windows += [
                        _window(user, metric, first, last, minutes)
                        for first, last in day_runs(days_of_metric[metric.name], user)
                    ]
        report.day_ranges += len(windows)
        with conn.cursor() as cur:
            # Statements of bounded size: their sorts and WAL stay modest on a full rebuild.
            batch: list[_Window] = []
            for window in windows:
                batch.append(window)
                if sum(w.days for w in batch) >= MAX_DAYS_PER_STATEMENT * 4:
                    _rebuild(cur, batch, report)
                    batch = []
            if batch:
                _rebuild(cur, batch, report)
            rebuild_wear_days(cur, touched)
            if pending:
                cur.execute(
                    "DELETE FROM rollup_invalidations WHERE invalidation_id = ANY(%s)", ([row[0] for row in pending],)
                )
        report.invalidations += len(pending)


def refresh(conn: psycopg.Connection, user_ids: Sequence[int] = (), *, full: bool = False) -> RefreshReport:
    """Bring the rollups of the given users (all when empty) up to date with their raw data."""
    started = time.perf_counter()
    report = RefreshReport()
    if full:
        users = list_users(conn, user_ids)
    else:
        # Only users with pending work: a refresh with nothing to do is one query.
        pending = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT user_id FROM rollup_invalidations" + (" WHERE user_id = ANY(%s)" if user_ids else ""),
                (list(user_ids),) if user_ids else None,
            ).fetchall()
        ]
        users = list_users(conn, sorted(pending)) if pending else []
        if user_ids:
            list_users(conn, user_ids)  # unknown ids are still an error
    conn.commit()
    for i in range(0, len(users), USERS_PER_TRANSACTION):
        batch = users[i : i + USERS_PER_TRANSACTION]
        _refresh_users(conn, batch, full, report)
        report.users += len(batch)
    report.seconds = time.perf_counter() - started
    return report
