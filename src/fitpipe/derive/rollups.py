"""Incremental rollups (1 min -> 1 h -> 1 day) for TimescaleDB's Apache edition.

The portable form of continuous aggregates: each load logs the time range it replaced in
rollup_invalidations (same transaction as the data). A refresh reads those rows, widens them to
whole local days of the participant, deletes the rollup buckets of those days and rebuilds them
level by level from the raw data, then deletes exactly the invalidation rows it read. A load
that commits meanwhile leaves its own invalidation row behind for the next refresh, so nothing
is lost; two refreshes of one participant take turns through an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Sequence

import psycopg

from fitpipe.catalogue import INTRADAY, Metric
from fitpipe.locks import lock_refresh
from fitpipe.participants import User, list_users

LEVELS = ("1min", "1h", "1d")
# Longest stretch rebuilt in one statement, to keep each statement's sort and WAL modest.
MAX_DAYS_PER_STATEMENT = 31


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
_LOCAL_HOUR = ("bucket - make_interval(secs => mod((extract(epoch FROM bucket) + extract(epoch FROM "
               "(bucket AT TIME ZONE %(tz)s) - (bucket AT TIME ZONE 'UTC')))::numeric, 3600)::float8)")


def _measured_minutes_sql(metric: Metric) -> str:
    unpivot = ", ".join(f"('{c.name}', t.{c.name})" for c in metric.values)
    return f"""
        SELECT f.field, time_bucket('1 minute', t.{metric.time_column}) AS bucket,
               count(*) AS n, sum(f.v) AS s, min(f.v) AS lo, max(f.v) AS hi
        FROM {metric.table} t CROSS JOIN LATERAL (VALUES {unpivot}) AS f(field, v)
        WHERE t.user_id = %(user_id)s AND t.{metric.time_column} >= %(lo)s AND t.{metric.time_column} < %(hi)s
        GROUP BY 1, 2
    """


def _rebuild(cur: psycopg.Cursor, user: User, metric: Metric, first: dt.date, last: dt.date,
             report: RefreshReport) -> None:
    """Rebuild local days first..last, which share one zone (runs are cut where the zone changes)."""
    lo, hi = user.day_start(first), user.day_start(last + dt.timedelta(days=1))
    # The last day of a run may end in the next zone (the day of a move): its buckets are
    # labelled with its own start instead of a midnight of the old zone.
    params = {"user_id": user.user_id, "metric": metric.name, "lo": lo, "hi": hi, "tz": user.zone_on(first),
              "last_start": user.day_start(last), "per_minute": metric.samples_per_minute}
    for level in LEVELS:
        cur.execute(f"DELETE FROM rollup_{level} WHERE user_id = %(user_id)s AND metric = %(metric)s "
                    "AND bucket >= %(lo)s AND bucket < %(hi)s", params)
    # Imputed minutes count only where nothing was measured, weighted as the samples they replace.
    cur.execute(
        f"""
        INSERT INTO rollup_1min
        SELECT %(user_id)s, %(metric)s, coalesce(m.field, i.field), coalesce(m.bucket, i.ts),
               coalesce(m.n, 0), coalesce(m.s, 0), m.lo, m.hi,
               CASE WHEN m.n IS NULL THEN %(per_minute)s ELSE 0 END,
               CASE WHEN m.n IS NULL THEN i.value::float8 * %(per_minute)s ELSE 0 END,
               CASE WHEN m.n IS NULL THEN i.value END,
               CASE WHEN m.n IS NULL THEN i.value END
        FROM ({_measured_minutes_sql(metric)}) m
        FULL JOIN (SELECT field, ts, value FROM imputed_values
                   WHERE user_id = %(user_id)s AND metric = %(metric)s AND ts >= %(lo)s AND ts < %(hi)s) i
          ON i.field = m.field AND i.ts = m.bucket
        """,
        params,
    )
    report.buckets["1min"] += cur.rowcount
    for level, source, bucket in (("1h", "1min", _LOCAL_HOUR), ("1d", "1h", "CASE WHEN bucket < %(last_start)s THEN time_bucket('1 day', bucket, %(tz)s) "
                                                     "ELSE %(last_start)s END")):
        cur.execute(
            f"""
            INSERT INTO rollup_{level}
            SELECT user_id, metric, field, {bucket},
                   sum(n_measured), sum(sum_measured), min(min_measured), max(max_measured),
                   sum(n_imputed), sum(sum_imputed), min(min_imputed), max(max_imputed)
            FROM rollup_{source}
            WHERE user_id = %(user_id)s AND metric = %(metric)s AND bucket >= %(lo)s AND bucket < %(hi)s
            GROUP BY user_id, metric, field, 4
            """,
            params,
        )
        report.buckets[level] += cur.rowcount


def _local_days(lo: dt.datetime, hi: dt.datetime, user: User) -> set[dt.date]:
    first = user.local_day_of(lo)
    last = user.local_day_of(hi - dt.timedelta(microseconds=1))
    return {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}


def _runs(days: set[dt.date], user: User) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days in one zone grouped into [first, last] runs of at most MAX_DAYS_PER_STATEMENT days."""
    runs: list[list[dt.date]] = []
    for day in sorted(days):
        if (runs and day - runs[-1][1] == dt.timedelta(days=1) and (day - runs[-1][0]).days < MAX_DAYS_PER_STATEMENT
                and user.zone_on(day) == user.zone_on(runs[-1][0])):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(a, b) for a, b in runs]


def _refresh_user(conn: psycopg.Connection, user: User, full: bool, report: RefreshReport) -> None:
    with conn.transaction():
        lock_refresh(conn, user.user_id)
        pending = conn.execute(
            "SELECT invalidation_id, metric, lo, hi FROM rollup_invalidations WHERE user_id = %s",
            (user.user_id,),
        ).fetchall()
        days_by_metric: dict[str, set[dt.date]] = {m.name: set() for m in INTRADAY}
        if full:
            span = conn.execute("SELECT min(day), max(day) FROM ingested_days WHERE user_id = %s",
                                (user.user_id,)).fetchone()
            for level in LEVELS:
                conn.execute(f"DELETE FROM rollup_{level} WHERE user_id = %s", (user.user_id,))
            for metric in INTRADAY:
                if span[0]:
                    # Night metrics of the last day reach into the next morning.
                    days_by_metric[metric.name] = {span[0] + dt.timedelta(days=i)
                                                   for i in range((span[1] - span[0]).days + 2)}
        else:
            for _, metric_name, lo, hi in pending:
                if metric_name in days_by_metric:
                    days_by_metric[metric_name] |= _local_days(lo, hi, user)
        report.days += len(set().union(*days_by_metric.values()))
        with conn.cursor() as cur:
            for metric in INTRADAY:
                for first, last in _runs(days_by_metric[metric.name], user):
                    _rebuild(cur, user, metric, first, last, report)
                    report.day_ranges += 1
            if pending:
                cur.execute("DELETE FROM rollup_invalidations WHERE invalidation_id = ANY(%s)",
                            ([row[0] for row in pending],))
        report.invalidations += len(pending)


def refresh(conn: psycopg.Connection, user_ids: Sequence[int] = (), *, full: bool = False) -> RefreshReport:
    """Bring the rollups of the given users (all when empty) up to date with their raw data."""
    started = time.perf_counter()
    report = RefreshReport()
    if full:
        users = list_users(conn, user_ids)
    else:
        # Only users with pending work: a refresh with nothing to do is one query.
        pending = [r[0] for r in conn.execute(
            "SELECT DISTINCT user_id FROM rollup_invalidations" + (" WHERE user_id = ANY(%s)" if user_ids else ""),
            (list(user_ids),) if user_ids else None).fetchall()]
        users = list_users(conn, sorted(pending)) if pending else []
        if user_ids:
            list_users(conn, user_ids)  # unknown ids are still an error
    conn.commit()
    for user in users:
        _refresh_user(conn, user, full, report)
        report.users += 1
    report.seconds = time.perf_counter() - started
    return report

