"""Replace one (user, local day) in every table, atomically.

In one transaction: take the user-day lock, check the ledger, produce the rows (the caller's
fetch + parse), delete the day's old rows from every metric table and quarantine, binary-COPY
the new rows, record the day in the ledger and log what the rollups must recompute. A crash at
any point rolls all of it back, so a day is either entirely as before or entirely new.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from fitpipe import locks
from fitpipe.catalogue import METRICS, DayWindow
from fitpipe.copybin import copy_rows
from fitpipe.days import DayContext
from fitpipe.ingest.validate import ParsedDay
from fitpipe.timezones import aware_utc


@dataclass
class DayOutcome:
    user_id: int
    day: dt.date
    status: str  # loaded | done (already in the ledger) | busy (another run holds it) | failed
    rows_by_metric: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_metric.values())


def replace_day(
    conn: psycopg.Connection,
    ctx: DayContext,
    produce: Callable[[], ParsedDay],
    *,
    source: str,
    run_id: int | None,
    skip_if_done: bool,
) -> DayOutcome:
    outcome = DayOutcome(ctx.user_id, ctx.day, "loaded")
    with conn.transaction():
        if not locks.try_lock_user_day(conn, ctx.user_id, ctx.day):
            outcome.status = "busy"
            return outcome
        locks.lock_user_shared(conn, ctx.user_id)
        if skip_if_done and conn.execute(
            "SELECT 1 FROM ingested_days WHERE user_id = %s AND day = %s", (ctx.user_id, ctx.day)
        ).fetchone():
            outcome.status = "done"
            return outcome

        parsed = produce()
        started = time.perf_counter()
        with conn.cursor() as cur:
            # One pass over the catalogue: each metric's owned window is computed once and used to
            # delete its old rows, drop the imputations made against them (impute again to refill)
            # and tell the rollups to recompute the whole window, so vanished rows leave them too.
            invalidations = []
            for metric in METRICS:
                column = metric.time_column
                if metric.window is DayWindow.DATE:
                    cur.execute(f"DELETE FROM {metric.table} WHERE user_id = %s AND {column} = %s",
                                (ctx.user_id, ctx.day))
                    continue
                lo, hi = (aware_utc(bound) for bound in ctx.window(metric))
                cur.execute(f"DELETE FROM {metric.table} WHERE user_id = %s AND {column} >= %s AND {column} < %s",
                            (ctx.user_id, lo, hi))
                if metric.imputable:
                    cur.execute("DELETE FROM imputed_values WHERE user_id = %s AND metric = %s AND ts >= %s AND ts < %s",
                                (ctx.user_id, metric.name, lo, hi))
                if metric.intraday:
                    invalidations.append((ctx.user_id, metric.name, lo, hi))
            cur.execute("DELETE FROM quarantine WHERE user_id = %s AND day = %s", (ctx.user_id, ctx.day))
            for table, rows in parsed.rows.items():
                metric = rows.metric
                outcome.rows_by_metric[metric.name] = copy_rows(
                    cur, table, metric.column_names, [c.pg_type for c in metric.columns],
                    [rows.columns[name] for name in metric.column_names],
                )
            if parsed.quarantined:
                with cur.copy("COPY quarantine (user_id, day, metric, raw_value, reason, run_id) FROM STDIN") as copy:
                    for q in parsed.quarantined:
                        copy.write_row((ctx.user_id, ctx.day, q.metric, q.raw_value, q.reason, run_id))
            outcome.quarantined = len(parsed.quarantined)
            cur.execute(
                """
                INSERT INTO ingested_days (user_id, day, source, run_id, rows_loaded, rows_by_metric, quarantined)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (user_id, day) DO UPDATE SET
                    source = excluded.source, run_id = excluded.run_id, rows_loaded = excluded.rows_loaded,
                    rows_by_metric = excluded.rows_by_metric, quarantined = excluded.quarantined,
                    ingested_at = now()
                """,
                (ctx.user_id, ctx.day, source, run_id, outcome.rows, json.dumps(outcome.rows_by_metric),
                 outcome.quarantined),
            )
            cur.executemany("INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, %s, %s, %s)",
                            invalidations)
    # Measured after the commit, so the WAL flush counts as loading.
    outcome.seconds["load"] = time.perf_counter() - started
    return outcome
