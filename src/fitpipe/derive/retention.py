"""Raw retention: drop whole chunks of the 1 Hz raw tables once their days are settled, rolled up
and older than N days (`fitpipe maintain --raw-retention-days N`), and remember which days lost them.

Which tables: the catalogue's 1-second tables (heart_rate, heart_rate_confidence). They are
about 98% of the raw bytes; the 1-minute, nightly and daily tables are small and stay.
heart_rate's rollups keep its minutes, hours and days; heart_rate_confidence has no rollup, and
its only use is to qualify the heart-rate samples that go with it.

A chunk is dropped only when its whole range lies before both now - N days and the *drop
horizon*: the settled horizon of the enrolled cohort (see maintain.py), or the start of an
earlier unsettled ledger day of any participant, withdrawn ones included (their provisional
days keep their raw rows). The drop, its checks and the ledger marks are one transaction, under
every affected participant's exclusive user lock and refresh lock: no load, imputation or
refresh of theirs runs meanwhile, and a load that committed just before leaves a pending
invalidation that makes the transaction roll the drop back.

Rollup-only days (ingested_days.raw_dropped_at): every ledger day with rows in a 1-second table
whose calendar window overlaps a dropped chunk. Both 1-second tables use the calendar window, so
a rollup-only day D is exactly rollup day D of heart_rate, and no other day's rollups read its
raw rows. The rollup refresh never rebuilds heart_rate rollups of such a day from raw (they would
come out empty or partial), and imputation leaves its heart rate alone.

Re-ingest: `backfill --force` (or an import with changed content) of a rollup-only day fetches
it again, writes its raw rows, clears the mark and so lets the refresh rebuild its rollups from
them. The day keeps its raw rows until the next `maintain` with the setting drops the chunk again.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from fitpipe.catalogue import METRICS, DayWindow
from fitpipe.db import one_row
from fitpipe.errors import BadInput
from fitpipe.ingest.ledger import SETTLED, settled_horizon
from fitpipe.locks import lock_refresh, lock_user_exclusive
from fitpipe.participants import User, list_users
from fitpipe.timezones import simulated_today

ENV_RAW_RETENTION_DAYS = "FITPIPE_RAW_RETENTION_DAYS"
RETAINED = tuple(m for m in METRICS if m.resolution == "1s")
# One ledger day <-> one rollup day only holds for calendar windows (a night spans two calendar days).
assert all(m.window is DayWindow.CALENDAR for m in RETAINED)
# A local day's window lies within a day of its UTC date, whatever the zone (offsets are under 15 h).
_SLACK = dt.timedelta(days=1)
MAX_DAYS = 36_500


def parse_retention_days(value: str | int | None) -> int | None:
    """N from the flag or FITPIPE_RAW_RETENTION_DAYS; None (keep everything) when neither is set."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = os.environ.get(ENV_RAW_RETENTION_DAYS)
        if value is None or not value.strip():
            return None
    try:
        days = int(str(value).strip())
    except ValueError:
        raise BadInput(
            f"--raw-retention-days ({ENV_RAW_RETENTION_DAYS}) must be a whole number of days, got {value!r}"
        ) from None
    if not 1 <= days <= MAX_DAYS:
        raise BadInput(
            f"--raw-retention-days ({ENV_RAW_RETENTION_DAYS}) must be between 1 and {MAX_DAYS:,}, got {days}"
        )
    return days


@dataclass
class RetentionReport:
    days: int
    cutoff: dt.datetime | None = None
    chunks_dropped: int = 0
    bytes_freed: int = 0
    days_marked: int = 0
    tables: list[str] = field(default_factory=list)
    # Chunks old enough but kept, and why (one line each).
    kept: list[str] = field(default_factory=list)


def rollup_only_days(conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[int, set[dt.date]]:
    rows = conn.execute(
        "SELECT user_id, day FROM ingested_days WHERE user_id = ANY(%s) AND raw_dropped_at IS NOT NULL",
        (list(user_ids),),
    ).fetchall()
    found: dict[int, set[dt.date]] = {}
    for user_id, day in rows:
        found.setdefault(user_id, set()).add(day)
    return found


def without_rollup_only(metric_name: str, days: set[dt.date], rollup_only: set[dt.date]) -> set[dt.date]:
    """The days of `metric_name` a refresh may rebuild from raw rows."""
    return days - rollup_only if rollup_only and metric_name in {m.name for m in RETAINED} else days


def rollup_only_ranges(users: Sequence[User], rollup_only: dict[int, set[dt.date]]) -> dict[str, list]:
    """Parallel arrays (user, metric, lo, hi) of the rollup buckets a full refresh must keep."""
    arrays: dict[str, list] = {"k_user": [], "k_metric": [], "k_lo": [], "k_hi": []}
    for user in users:
        for day in sorted(rollup_only.get(user.user_id, ())):
            for metric in RETAINED:
                if metric.intraday:
                    arrays["k_user"].append(user.user_id)
                    arrays["k_metric"].append(metric.name)
                    arrays["k_lo"].append(user.day_start(day))
                    arrays["k_hi"].append(user.day_start(day + dt.timedelta(days=1)))
    return arrays


# For DELETE ... FROM rollup_x r: true for buckets of rollup-only days (parameters: rollup_only_ranges).
KEEP_ROLLUP_ONLY = """EXISTS (SELECT 1 FROM unnest(%(k_user)s::int[], %(k_metric)s::text[], %(k_lo)s::timestamptz[],
                                                 %(k_hi)s::timestamptz[]) AS k(user_id, metric, lo, hi)
                     WHERE k.user_id = r.user_id AND k.metric = r.metric::text
                       AND r.bucket >= k.lo AND r.bucket < k.hi)"""


def raw_runs(first: dt.date, last: dt.date, rollup_only: set[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """[first, last] cut into runs of days that still have raw rows."""
    runs: list[tuple[dt.date, dt.date]] = []
    day, start = first, None
    while day <= last:
        if day in rollup_only:
            if start is not None:
                runs.append((start, day - dt.timedelta(days=1)))
                start = None
        elif start is None:
            start = day
        day += dt.timedelta(days=1)
    if start is not None:
        runs.append((start, last))
    return runs


def _now() -> dt.datetime:
    simulated = simulated_today()
    if simulated:
        return dt.datetime.combine(simulated, dt.time(), dt.UTC)
    return dt.datetime.now(dt.UTC)


def drop_horizon(conn: psycopg.Connection) -> dt.datetime | None:
    """Before this instant every ledger day is settled: the cohort's settled horizon, or the start
    of an earlier unsettled day of a participant outside it (withdrawn)."""
    horizon = settled_horizon(conn)
    if horizon is None:
        return None
    users = {u.user_id: u for u in list_users(conn)}
    for user_id, day in conn.execute(
        "SELECT user_id, min(day) FROM ingested_days WHERE state <> ALL(%s) GROUP BY user_id", (list(SETTLED),)
    ).fetchall():
        horizon = min(horizon, users[user_id].day_start(day))
    return horizon


def _old_chunks(
    conn: psycopg.Connection, table: str, cutoff: dt.datetime
) -> list[tuple[str, dt.datetime, dt.datetime]]:
    return conn.execute(
        "SELECT format('%%I.%%I', chunk_schema, chunk_name), range_start, range_end "
        "FROM timescaledb_information.chunks WHERE hypertable_schema = 'public' AND hypertable_name = %s "
        "AND range_end <= %s ORDER BY range_start",
        (table, cutoff),
    ).fetchall()


class _KeepChunk(Exception):
    """Rolls the drop of one chunk back; the message says why."""


def _drop_chunk(
    conn: psycopg.Connection, table: str, metric_name: str, lo: dt.datetime, hi: dt.datetime, report: RetentionReport
) -> None:
    candidates = conn.execute(
        "SELECT DISTINCT user_id FROM ingested_days WHERE day BETWEEN %s AND %s ORDER BY 1",
        ((lo - _SLACK).date(), (hi + _SLACK).date()),
    ).fetchall()
    ids = sorted(row[0] for row in candidates)
    # Refresh locks first, then user locks, each in id order: the order refreshes and loads take theirs.
    for user_id in ids:
        lock_refresh(conn, user_id)
    for user_id in ids:
        lock_user_exclusive(conn, user_id)
    users = {u.user_id: u for u in list_users(conn, ids)}
    size_before = one_row(conn.execute("SELECT hypertable_size(%s::regclass)", (table,)))[0] or 0
    # Dropped first, checked after: the chunk's lock waits out anyone still writing or reading it,
    # so the checks see everything committed before the drop.
    dropped = one_row(
        conn.execute(
            "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s, newer_than => %s)", (table, hi, lo)
        )
    )[0]
    if not dropped:
        return
    # Any 1-second table's drop marks the day rollup-only, which stops heart_rate's refresh of it.
    pending = one_row(
        conn.execute(
            "SELECT count(*) FROM rollup_invalidations WHERE metric = ANY(%s) AND lo < %s AND hi > %s",
            ([m.name for m in RETAINED if m.intraday], hi, lo),
        )
    )[0]
    if pending:
        raise _KeepChunk(f"{table} [{lo}, {hi}): {pending} rollup change(s) pending; run `fitpipe aggregate refresh`")
    ledger = conn.execute(
        "SELECT user_id, day, state, coalesce((rows_by_metric ->> %s)::bigint, 0) FROM ingested_days "
        "WHERE user_id = ANY(%s) AND day BETWEEN %s AND %s",
        (metric_name, ids, (lo - _SLACK).date(), (hi + _SLACK).date()),
    ).fetchall()
    marks = []
    for user_id, day, state, rows in ledger:
        user = users[user_id]
        if not (user.day_start(day) < hi and user.day_start(day + dt.timedelta(days=1)) > lo):
            continue
        if state not in SETTLED:
            raise _KeepChunk(f"{table} [{lo}, {hi}): participant {user_id}'s day {day} is {state}")
        if rows:
            marks.append((user_id, day))
    if marks:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE ingested_days d SET raw_dropped_at = now() "
                "FROM unnest(%s::int[], %s::date[]) AS m(user_id, day) "
                "WHERE d.user_id = m.user_id AND d.day = m.day AND d.raw_dropped_at IS NULL",
                ([u for u, _ in marks], [d for _, d in marks]),
            )
            report.days_marked += cur.rowcount
    size_after = one_row(conn.execute("SELECT hypertable_size(%s::regclass)", (table,)))[0] or 0
    report.chunks_dropped += dropped
    report.bytes_freed += max(int(size_before) - int(size_after), 0)
    if table not in report.tables:
        report.tables.append(table)


def drop_raw(conn: psycopg.Connection, days: int) -> RetentionReport:
    """Drop the chunks of the 1-second raw tables that hold settled, rolled-up days older than `days`."""
    report = RetentionReport(days)
    horizon = drop_horizon(conn)
    conn.commit()
    if horizon is None:
        return report
    report.cutoff = min(_now() - dt.timedelta(days=days), horizon)
    for metric in RETAINED:
        for chunk, lo, hi in _old_chunks(conn, metric.table, report.cutoff):
            try:
                # One transaction per chunk: a stop leaves each chunk either there and unmarked, or gone and marked.
                with conn.transaction():
                    _drop_chunk(conn, metric.table, metric.name, lo, hi, report)
            except _KeepChunk as reason:
                report.kept.append(f"kept {chunk}: {reason}")
    conn.commit()
    return report
