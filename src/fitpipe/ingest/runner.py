"""ingest and backfill: plan the user-days, run them in worker processes, keep the run log.

The parent plans and records; each worker process generates, parses and loads whole user-days
(fitpipe.ingest.load.replace_day), so generation in one process overlaps loading in another.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import os
import signal
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import psycopg

from fitpipe.config import mask_secrets
from fitpipe.db import connect, require_schema
from fitpipe.errors import BadInput, PartialFailure, first_line
from fitpipe.ingest.ledger import cursors, days_between, ingested, last_complete_day
from fitpipe.ingest.load import DayOutcome
from fitpipe.participants import User, list_users


@dataclass(frozen=True)
class Task:
    user: User
    day: dt.date
    skip_if_done: bool


@dataclass
class RunSummary:
    run_id: int
    command: str
    planned: int
    outcomes: list[DayOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.outcomes)

    @property
    def quarantined(self) -> int:
        return sum(o.quarantined for o in self.outcomes)

    def rows_by_metric(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for outcome in self.outcomes:
            for name, rows in outcome.rows_by_metric.items():
                totals[name] = totals.get(name, 0) + rows
        return totals

    def time_split(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for outcome in self.outcomes:
            for part, seconds in outcome.seconds.items():
                totals[part] = totals.get(part, 0.0) + seconds
        return totals


# --- planning -------------------------------------------------------------------------------

def plan_ingest(conn: psycopg.Connection, users: Sequence[User], days: int) -> list[Task]:
    ids = [u.user_id for u in users]
    cursor_of = cursors(conn, ids)
    tasks = []
    for user in users:
        cursor = cursor_of[user.user_id]
        first = cursor + dt.timedelta(days=1) if cursor else user.study_start
        last = min(first + dt.timedelta(days=days - 1), last_complete_day(user))
        tasks += [Task(user, day, True) for day in days_between(first, last)] if last >= first else []
    return tasks


def plan_backfill(conn: psycopg.Connection, users: Sequence[User], start: dt.date, end: dt.date,
                  force: bool) -> list[Task]:
    latest = max(last_complete_day(u) for u in users)
    if end > latest:
        raise BadInput(f"--end {end} is not over yet for any participant; the latest complete day is {latest}")
    done = set() if force else ingested(conn, [u.user_id for u in users], start, end)
    tasks = []
    for user in users:
        first = max(start, user.study_start)
        last = min(end, last_complete_day(user))
        tasks += [Task(user, day, not force) for day in days_between(first, last) if (user.user_id, day) not in done]
    return tasks


# --- worker processes ---------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(url: str) -> None:
    _worker["url"] = url


def _worker_connection() -> psycopg.Connection:
    conn = _worker.get("conn")
    if conn is None or conn.closed or conn.broken:
        conn = connect(_worker["url"], application_name="fitpipe-worker")
        _worker["conn"] = conn
    return conn


def run_task(item: tuple[Task, int]) -> DayOutcome:
    task, run_id = item
    from fitpipe.ingest.load import replace_day
    from fitpipe.days import DayContext
    from fitpipe.ingest.validate import parse_day
    from fitpipe.ingest.sources import source_for

    ctx = DayContext(task.user.user_id, task.day, task.user.timezone)
    seconds: dict[str, float] = {}
    try:
        source = source_for(task.user.source)

        def produce():
            started = time.perf_counter()
            payloads = source.fetch_day(task.user, task.day)
            seconds["generate"] = time.perf_counter() - started
            started = time.perf_counter()
            parsed = parse_day(payloads, ctx, source.payload_format)
            seconds["parse"] = time.perf_counter() - started
            return parsed

        outcome = replace_day(_worker_connection(), ctx, produce, source=source.name,
                              run_id=run_id, skip_if_done=task.skip_if_done)
    except Exception as exc:  # one bad day must not stop the others
        return DayOutcome(ctx.user_id, ctx.day, "failed", error=mask_secrets(f"{type(exc).__name__}: {first_line(exc)}"))
    outcome.seconds.update(seconds)
    return outcome


def _start_workers(url: str, workers: int, tasks: Sequence[Task]) -> ProcessPoolExecutor | None:
    """Fork the worker processes now, before this process opens its own connection, so no child
    inherits a live one; the source's heavy modules are imported first so the children share them."""
    if not tasks:
        return None
    from fitpipe.ingest.sources import source_for

    for name in {t.user.source for t in tasks}:
        source_for(name)
    executor = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("fork"),
                                   initializer=_init_worker, initargs=(url,))
    executor.submit(int).result()  # with fork, the first submit starts every worker
    return executor


def _outcome_of(future, task: Task) -> DayOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        # A worker died (killed, out of memory): its day rolled back; this one was never done.
        return DayOutcome(task.user.user_id, task.day, "failed", error="a worker process died; the day was left as it was")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """systemd and `docker stop` send SIGTERM: stop like Ctrl-C, so the run is recorded as interrupted."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the run --------------------------------------------------------------------------------------

def _start_run(conn: psycopg.Connection, command: str, arguments: dict) -> int:
    with conn.transaction():
        # Runs whose process died never finished; their connection (named after the run) is gone.
        conn.execute(
            """
            UPDATE ingest_runs SET status = 'interrupted', finished_at = now()
            WHERE status = 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'fitpipe-run-' || ingest_runs.run_id)
            """
        )
        run_id = conn.execute(
            "INSERT INTO ingest_runs (command, arguments, host, pid) VALUES (%s, %s, %s, %s) RETURNING run_id",
            (command, json.dumps(arguments, default=str), socket.gethostname(), os.getpid()),
        ).fetchone()[0]
        # Named in the same transaction, so no other run ever sees this one without its connection.
        conn.execute("SELECT set_config('application_name', %s, false)", (f"fitpipe-run-{int(run_id)}",))
    return run_id


def _finish_run(conn: psycopg.Connection, summary: RunSummary, status: str, error: str | None) -> None:
    with conn.transaction():
        conn.execute(
            """
            UPDATE ingest_runs SET status = %s, finished_at = now(), user_days = %s, rows_loaded = %s,
                   quarantined = %s, skipped = %s, failed = %s, error = %s
            WHERE run_id = %s
            """,
            (status, summary.count("loaded"), summary.rows, summary.quarantined,
             summary.count("done") + summary.count("busy"), summary.count("failed"), error, summary.run_id),
        )


def run_ingest(
    url: str,
    *,
    command: str,
    user_ids: Sequence[int],
    days: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    force: bool = False,
    workers: int | None = None,
    refresh: bool = True,
    quiet: bool = False,
    metrics_file: Path | None = None,
) -> RunSummary:
    from fitpipe.output.progress import Reporter

    workers = workers or os.cpu_count() or 1
    with connect(url) as conn:
        require_schema(conn)
        users = list_users(conn, user_ids)
        if not users:
            raise BadInput("there are no participants; create them with `fitpipe seed-users --count N`")
        tasks = (plan_ingest(conn, users, days) if command == "ingest"
                 else plan_backfill(conn, users, start, end, force))
    tasks.sort(key=lambda t: (t.day, t.user.user_id))
    arguments = {"days": days, "start": start, "end": end, "users": list(user_ids), "force": force, "workers": workers}

    reporter = Reporter(command, quiet=quiet)
    started = time.perf_counter()
    executor = _start_workers(url, workers, tasks)
    status, error = "ok", None
    conn = None
    try:
        conn = connect(url)
        run_id = _start_run(conn, command, arguments)
        summary = RunSummary(run_id, command, len(tasks))
        reporter.start(run_id, len(tasks))
        try:
            with _sigterm_as_interrupt():
                futures = {executor.submit(run_task, (task, run_id)): task for task in tasks} if executor else {}
                for future in as_completed(futures):
                    outcome = _outcome_of(future, futures[future])
                    summary.outcomes.append(outcome)
                    reporter.day_done(outcome)
        except BaseException as exc:
            status = "interrupted"
            error = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                     else f"stopped by {type(exc).__name__}: {first_line(exc)}")
            raise
        finally:
            reporter.stop()
            if executor:
                # Days already running finish (each is atomic); queued ones are dropped when stopping early.
                executor.shutdown(wait=True, cancel_futures=status != "ok")
                executor = None
            summary.seconds = time.perf_counter() - started
            failed = [o for o in summary.outcomes if o.status == "failed"]
            if failed and status == "ok":
                status = "failed"
                error = "\n".join(f"user {o.user_id} day {o.day}: {o.error}" for o in failed)
            _finish_run(conn, summary, status, error)
        if refresh and summary.count("loaded"):
            from fitpipe.derive.rollups import refresh as refresh_rollups

            refresh_rollups(conn, [u.user_id for u in users])
        reporter.summary(summary)
        if metrics_file:
            from fitpipe.output.metrics_file import write_run_metrics

            write_run_metrics(metrics_file, command, summary, status)
    finally:
        if executor:
            executor.shutdown(wait=True, cancel_futures=True)
        if conn is not None:
            conn.close()
    failed = [o for o in summary.outcomes if o.status == "failed"]
    if failed:
        names = ", ".join(f"user {o.user_id} day {o.day}" for o in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        raise PartialFailure(f"{len(failed)} user-day(s) failed and were left as they were: {names}{more} "
                             f"(run {summary.run_id}; see ingest_runs.error)")
    return summary
