"""Replace one (user, local day) in every table, atomically.

In one transaction: take the user-day lock, check the ledger, produce the rows (the caller's
fetch + parse), and unless their content hash equals the one on file, delete the day's old rows
from every metric table and quarantine, binary-COPY the new rows and their 1-minute rollup rows
(fitpipe.derive.minutes), record the day and its state in the ledger and log what the rollup
levels above must recompute. A crash at any point rolls all of it
back, so a day is either entirely as before or entirely new.

A source that says RetryLater leaves the day's rows as they were; the ledger records the
deferral (and when to ask again) in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from fitpipe import locks
from fitpipe.catalogue import METRICS, DayWindow
from fitpipe.copybin import copy_rows
from fitpipe.days import DayContext
from fitpipe.db import one_row
from fitpipe.derive.minutes import replace_minutes
from fitpipe.ingest.ledger import SETTLED
from fitpipe.ingest.validate import ParsedDay
from fitpipe.sources.contract import RetryLater


@dataclass
class DayOutcome:
    user_id: int
    day: dt.date
    # loaded | unchanged (same content as on file) | deferred (source said retry later)
    # | done (already settled) | busy (another run holds it) | withdrawn (the participant withdrew
    # after the run was planned) | failed
    status: str
    state: str | None = None  # the ledger state the day was left in
    retry_after: float | None = None  # deferred: seconds until the source may have it
    rows_by_metric: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # The participant's request times after this day, handed to its next day (see BudgetLedger).
    budget_spent: tuple[float, ...] = ()

    @property
    def rows(self) -> int:
        return sum(self.rows_by_metric.values())


def content_hash(parsed: ParsedDay) -> str:
    """SHA-256 of the rows and quarantined records a fetch produced, in a stable order."""
    digest = hashlib.sha256()
    for table in sorted(parsed.rows):
        rows = parsed.rows[table]
        digest.update(table.encode())
        for name in rows.metric.column_names:
            array = rows.columns[name]
            digest.update(name.encode())
            digest.update(array.tobytes() if array.dtype != object else "\x1f".join(map(str, array)).encode())
    for q in parsed.quarantined:
        digest.update(f"{q.metric}\x1f{q.raw_value}\x1f{q.reason}\x1e".encode())
    return digest.hexdigest()


def _defer(
    cur: psycopg.Cursor, ctx: DayContext, source: str, run_id: int | None, exc: RetryLater, outcome: DayOutcome
) -> DayOutcome:
    # A provisional day keeps its rows and state; a day never loaded is recorded as deferred.
    row = one_row(
        cur.execute(
            """
        INSERT INTO ingested_days (user_id, day, source, run_id, rows_loaded, quarantined, state, checked_at,
                                   retry_after, attempts, note)
        VALUES (%s, %s, %s, %s, 0, 0, 'deferred', now(), now() + make_interval(secs => %s), 1, %s)
        ON CONFLICT (user_id, day) DO UPDATE SET
            checked_at = now(), retry_after = excluded.retry_after, attempts = ingested_days.attempts + 1,
            note = excluded.note, run_id = excluded.run_id
        RETURNING state
        """,
            (ctx.user_id, ctx.day, source, run_id, exc.after, exc.reason),
        )
    )
    outcome.status, outcome.state, outcome.retry_after, outcome.error = "deferred", row[0], exc.after, exc.reason
    return outcome


def replace_day(
    conn: psycopg.Connection,
    ctx: DayContext,
    produce: Callable[[], ParsedDay],
    *,
    source: str,
    run_id: int | None,
    skip_if_done: bool,
    settled: bool = True,
    rewrite_unchanged: bool | None = None,
) -> DayOutcome:
    """Load the day `produce` returns; `settled` says whether the source can still change it.

    `rewrite_unchanged` (default: a forced run, skip_if_done off) rewrites a day whose content hash
    is unchanged; an import turns it off to replace settled days only where their content changed.
    """
    if rewrite_unchanged is None:
        rewrite_unchanged = not skip_if_done
    outcome = DayOutcome(ctx.user_id, ctx.day, "loaded")
    with conn.transaction():
        if not locks.try_lock_user_day(conn, ctx.user_id, ctx.day):
            outcome.status = "busy"
            return outcome
        locks.lock_user_shared(conn, ctx.user_id)
        # Withdrawal takes this lock exclusively: once it has committed, no further day of the
        # participant loads, whatever run planned it before.
        enrolled = conn.execute("SELECT withdrawn_at IS NULL FROM users WHERE user_id = %s", (ctx.user_id,)).fetchone()
        if not (enrolled and enrolled[0]):
            outcome.status = "withdrawn"
            return outcome
        on_file = conn.execute(
            "SELECT state, content_hash FROM ingested_days WHERE user_id = %s AND day = %s", (ctx.user_id, ctx.day)
        ).fetchone()
        if skip_if_done and on_file and on_file[0] in SETTLED:
            outcome.status, outcome.state = "done", on_file[0]
            return outcome

        try:
            parsed = produce()
        except RetryLater as exc:
            with conn.cursor() as cur:
                return _defer(cur, ctx, source, run_id, exc, outcome)
        started = time.perf_counter()
        digest = content_hash(parsed)
        state = ("complete" if parsed.row_count else "empty") if settled else "provisional"
        outcome.state = state
        if on_file and on_file[1] == digest and not rewrite_unchanged:
            # Same content: the rows stay as they are (no rewrite, no rollup work); only the state moves.
            # A forced run (skip_if_done off) rewrites anyway, to repair rows changed outside fitpipe.
            conn.execute(
                "UPDATE ingested_days SET state = %s, checked_at = now(), retry_after = NULL, attempts = 0, "
                "note = NULL, run_id = %s WHERE user_id = %s AND day = %s",
                (state, run_id, ctx.user_id, ctx.day),
            )
            outcome.status = "unchanged"
            return outcome
        # The loader rewrites the day's 1-minute rollup rows itself unless a refresh of this
        # participant is running (it could be rebuilding the same minutes); then it leaves them to
        # the next refresh, as the change record says. Tried only now, so a slow fetch never holds it.
        writes_minutes = locks.try_lock_refresh(conn, ctx.user_id)
        with conn.cursor() as cur:
            # One pass over the catalogue: each metric's owned window is computed once and used to
            # delete its old rows, drop the imputations made against them (impute again to refill)
            # and tell the rollups to recompute the whole window, so vanished rows leave them too.
            invalidations = []
            for metric in METRICS:
                column = metric.time_column
                if metric.window is DayWindow.DATE:
                    cur.execute(
                        f"DELETE FROM {metric.table} WHERE user_id = %s AND {column} = %s", (ctx.user_id, ctx.day)
                    )
                    continue
                lo, hi = ctx.bounds(metric.window)
                cur.execute(
                    f"DELETE FROM {metric.table} WHERE user_id = %s AND {column} >= %s AND {column} < %s",
                    (ctx.user_id, lo, hi),
                )
                if metric.imputable:
                    cur.execute(
                        "DELETE FROM imputed_values WHERE user_id = %s AND metric = %s AND ts >= %s AND ts < %s",
                        (ctx.user_id, metric.name, lo, hi),
                    )
                if metric.intraday:
                    invalidations.append((ctx.user_id, metric.name, lo, hi, writes_minutes))
            cur.execute("DELETE FROM quarantine WHERE user_id = %s AND day = %s", (ctx.user_id, ctx.day))
            for table, rows in parsed.rows.items():
                metric = rows.metric
                outcome.rows_by_metric[metric.name] = copy_rows(
                    cur,
                    table,
                    metric.column_names,
                    [c.pg_type for c in metric.columns],
                    [rows.columns[name] for name in metric.column_names],
                )
            if writes_minutes:
                replace_minutes(
                    cur,
                    ctx.user_id,
                    [(name, lo, hi) for _, name, lo, hi, _ in invalidations],
                    [rows for rows in parsed.rows.values() if rows.metric.intraday],
                )
            if parsed.quarantined:
                with cur.copy("COPY quarantine (user_id, day, metric, raw_value, reason, run_id) FROM STDIN") as copy:
                    for q in parsed.quarantined:
                        copy.write_row((ctx.user_id, ctx.day, q.metric, q.raw_value, q.reason, run_id))
            outcome.quarantined = len(parsed.quarantined)
            # raw_dropped_at: the day's raw rows are all there again (raw retention), so the refresh
            # rebuilds its rollups from them.
            cur.execute(
                """
                INSERT INTO ingested_days (user_id, day, source, run_id, rows_loaded, rows_by_metric, quarantined,
                                           state, content_hash, checked_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
                ON CONFLICT (user_id, day) DO UPDATE SET
                    source = excluded.source, run_id = excluded.run_id, rows_loaded = excluded.rows_loaded,
                    rows_by_metric = excluded.rows_by_metric, quarantined = excluded.quarantined,
                    state = excluded.state, content_hash = excluded.content_hash, checked_at = now(),
                    retry_after = NULL, attempts = 0, note = NULL, ingested_at = now(), raw_dropped_at = NULL
                """,
                (
                    ctx.user_id,
                    ctx.day,
                    source,
                    run_id,
                    outcome.rows,
                    json.dumps(outcome.rows_by_metric),
                    outcome.quarantined,
                    state,
                    digest,
                ),
            )
            cur.executemany(
                "INSERT INTO rollup_invalidations (user_id, metric, lo, hi, minutes_current) "
                "VALUES (%s, %s, %s, %s, %s)",
                invalidations,
            )
    # Measured after the commit, so the WAL flush counts as loading.
    outcome.seconds["load"] = time.perf_counter() - started
    return outcome
