"""What a run is, as a library: plan the user-days, run them, refresh the rollups they changed,
count what needs attention, and judge the outcome with its exit code.

`fitpipe ingest`, `backfill` and `import` are this module behind flags; an orchestrator (cron,
Airflow, Dagster, a notebook) runs the same night through fitpipe.api.Store or these functions.
The result says what happened; `result.problem()` is the error the CLI would exit with, or None.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from fitpipe.errors import BadInput, FitpipeError, HeldByAnotherRun, PartialFailure
from fitpipe.ingest.runner import Plan, Progress, RunSummary, plan_backfill, plan_ingest, run_plan

# A failed day's listing names this many days, then says how many more.
_LISTED = 10


@dataclass
class RunResult:
    """One run's outcome: the runner's summary, the participants whose rollups were refreshed,
    and (when asked for) the counts the metrics file's alerts read."""

    summary: RunSummary
    refreshed_users: list[int] = field(default_factory=list)
    deferred_days: int | None = None
    needing_reconsent: int | None = None
    # What to do about failed days, said in the failure's message.
    retry_hint: str = "see ingest_runs.error"

    @property
    def run_id(self) -> int:
        return self.summary.run_id

    def problem(self) -> FitpipeError | None:
        """The error this run ends with: failed days (exit 5), or every day held by another run
        (exit 7). None when the run did what it could (deferred days included)."""
        summary = self.summary
        failed = summary.failed
        if failed:
            names = ", ".join(f"user {o.user_id} day {o.day}" for o in failed[:_LISTED])
            more = f" and {len(failed) - _LISTED} more" if len(failed) > _LISTED else ""
            return PartialFailure(
                f"{len(failed)} user-day(s) failed and were left as they were: {names}{more} "
                f"(run {summary.run_id}; {self.retry_hint})"
            )
        busy = summary.count("busy")
        if busy and busy == len(summary.outcomes):
            # Overlapping runs are normal once; a run that only ever skips means a lock is stuck.
            return HeldByAnotherRun(
                f"all {busy} planned user-day(s) were skipped: another run holds them "
                f"(run {summary.run_id}); if no other fitpipe run is going, a session holds a "
                "stuck lock"
            )
        return None

    @property
    def exit_code(self) -> int:
        problem = self.problem()
        return problem.exit_code if problem else 0


def run(
    conn: psycopg.Connection,
    plan: Plan,
    *,
    url: str,
    workers: int | None = None,
    refresh: bool = True,
    max_wait: float = 60.0,
    progress: Progress | None = None,
    count_attention: bool = False,
    retry_hint: str | None = None,
) -> RunResult:
    """Run a plan, then refresh the rollups of the participants it loaded days for."""
    summary = run_plan(conn, plan, url=url, workers=workers, max_wait=max_wait, progress=progress)
    result = RunResult(summary, retry_hint=retry_hint or RunResult.retry_hint)
    if refresh and summary.count("loaded"):
        from fitpipe.derive.rollups import refresh as refresh_rollups

        result.refreshed_users = sorted({o.user_id for o in summary.outcomes if o.status == "loaded"})
        refresh_rollups(conn, result.refreshed_users)
    if count_attention:
        from fitpipe.output.status import attention_counts

        result.deferred_days, result.needing_reconsent = attention_counts(conn)
    return result


def ingest(
    conn: psycopg.Connection,
    days: int,
    users: Sequence[int] = (),
    *,
    url: str,
    on_plan: Callable[[Plan], Progress | None] | None = None,
    **options,
) -> RunResult:
    """The nightly run: each participant's unsettled days again and up to `days` new ones."""
    plan = plan_ingest(conn, list(users), days)
    return run(conn, plan, url=url, progress=on_plan(plan) if on_plan else None, **options)


def backfill(
    conn: psycopg.Connection,
    start: dt.date,
    end: dt.date,
    users: Sequence[int] = (),
    *,
    url: str,
    force: bool = False,
    on_plan: Callable[[Plan], Progress | None] | None = None,
    **options,
) -> RunResult:
    """A bounded range of days; settled days are skipped unless `force`. Never moves a cursor past
    what is settled: the cursor is derived from the ledger, not set by the range."""
    if end < start:
        raise BadInput(f"--end {end} is before --start {start}")
    plan = plan_backfill(conn, list(users), start, end, force)
    return run(conn, plan, url=url, progress=on_plan(plan) if on_plan else None, **options)
