"""ingest and backfill as a library: plan the user-days, run them in worker processes, keep the run log.

The parent plans and records; each worker process fetches, parses and loads whole user-days
(fitpipe.ingest.load.replace_day), so fetching in one process overlaps loading in another.
One participant's days run in order, one at a time, so a per-participant request budget holds;
different participants run in parallel. `run_plan` is quiet: it reports through a Progress
object and returns a RunSummary. The CLI renders, refreshes rollups and writes metrics.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import heapq
import itertools
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import psycopg

from fitpipe.config import mask_secrets
from fitpipe.db import ENV_LOCK_TIMEOUT, ENV_STATEMENT_TIMEOUT, connect, one_row
from fitpipe.errors import BadInput, first_line
from fitpipe.ingest.device_sync import record_devices
from fitpipe.ingest.ledger import cursors, day_states, days_between, is_due, last_complete_day
from fitpipe.ingest.load import DayOutcome
from fitpipe.participants import User, list_users
from fitpipe.sources.contract import DeviceSync, Source, synced_past
from fitpipe.timezones import now_in

# A source's RetryLater shorter than this is waited out within the run (rate limits);
# longer ones defer the day to a later run.
DEFAULT_MAX_WAIT = 60.0
MAX_ATTEMPTS_PER_RUN = 5
# A day whose participant must consent again is asked for again after this long (re-enrolment
# makes it due at once).
WAIT_FOR_RECONSENT = 24 * 3600.0


@dataclass(frozen=True)
class Task:
    user: User
    day: dt.date
    skip_if_done: bool
    # The participant's recent request times, carried from one of its days to the next.
    budget_spent: tuple[float, ...] = ()
    attempt: int = 1
    # None: as replace_day decides from skip_if_done (see there).
    rewrite_unchanged: bool | None = None
    # The source to fetch with, when a run made its own (an import's, holding its staged archive);
    # None: the participant's registered source.
    source: Source | None = None


@dataclass
class Plan:
    command: str
    tasks: list[Task]
    arguments: dict = field(default_factory=dict)


@dataclass
class RunSummary:
    run_id: int
    command: str
    planned: int
    outcomes: list[DayOutcome] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.outcomes)

    @property
    def quarantined(self) -> int:
        return sum(o.quarantined for o in self.outcomes)

    @property
    def failed(self) -> list[DayOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def rows_by_metric(self) -> dict[str, int]:
        totals: dict[str, int] = collections.Counter()
        for outcome in self.outcomes:
            totals.update(outcome.rows_by_metric)
        return dict(totals)

    def time_split(self) -> dict[str, float]:
        totals: dict[str, float] = collections.defaultdict(float)
        for outcome in self.outcomes:
            for part, seconds in outcome.seconds.items():
                totals[part] += seconds
        return dict(totals)


class Progress(Protocol):
    def start(self, run_id: int, total: int) -> None: ...
    def day_done(self, outcome: DayOutcome) -> None: ...
    def stop(self) -> None: ...


class _Silent:
    def start(self, run_id: int, total: int) -> None:
        pass

    def day_done(self, outcome: DayOutcome) -> None:
        pass

    def stop(self) -> None:
        pass


# --- planning -------------------------------------------------------------------------------


def _participants(conn: psycopg.Connection, user_ids: Sequence[int]) -> list[User]:
    users = list_users(conn, user_ids)
    withdrawn = [u.user_id for u in users if u.withdrawn_at]
    if user_ids and withdrawn:
        raise BadInput(f"participant(s) {', '.join(map(str, withdrawn))} withdrew; nothing is ingested for them")
    users = [u for u in users if not u.withdrawn_at]
    if not users:
        raise BadInput(
            "there are no enrolled participants; add them with `fitpipe participants add` "
            "or `fitpipe seed-users --count N`"
        )
    return users


def plan_ingest(conn: psycopg.Connection, user_ids: Sequence[int], days: int) -> Plan:
    """Per participant: every day after its cursor that is not settled and is due (provisional
    days, deferred days whose wait is over), plus up to `days` days never fetched, never past
    yesterday."""
    users = _participants(conn, user_ids)
    cursor_of = cursors(conn, [u.user_id for u in users])
    tasks = []
    for user in users:
        cursor = cursor_of[user.user_id]
        first = cursor + dt.timedelta(days=1) if cursor else user.study_start
        last = last_complete_day(user)
        if last < first:
            continue
        states = day_states(conn, [user.user_id], first, last)
        # retry_after is a real instant, even when FITPIPE_TODAY simulates the day.
        now = dt.datetime.now(dt.UTC)
        new_days = 0
        for day in days_between(first, last):
            state, retry_after = states.get((user.user_id, day), (None, None))
            if state is None:
                if new_days == days:
                    continue
                new_days += 1
            elif not is_due(state, retry_after, now):
                continue
            tasks.append(Task(user, day, True))
    return Plan("ingest", tasks, {"days": days, "users": list(user_ids)})


def plan_backfill(conn: psycopg.Connection, user_ids: Sequence[int], start: dt.date, end: dt.date, force: bool) -> Plan:
    users = _participants(conn, user_ids)
    latest = max(last_complete_day(u) for u in users)
    if end > latest:
        raise BadInput(f"--end {end} is not over yet for any participant; the latest complete day is {latest}")
    earliest = min(u.study_start for u in users)
    if end < earliest:
        raise BadInput(
            f"--end {end} is before the study start of every participant asked for (the earliest is {earliest}); "
            "nothing to load"
        )
    states = {} if force else day_states(conn, [u.user_id for u in users], start, end)
    tasks = []
    for user in users:
        first = max(start, user.study_start)
        last = min(end, last_complete_day(user))
        for day in days_between(first, last):
            state, _ = states.get((user.user_id, day), (None, None))
            if force or state not in ("complete", "empty"):
                tasks.append(Task(user, day, not force))
    return Plan("backfill", tasks, {"start": start, "end": end, "users": list(user_ids), "force": force})


# --- worker processes ---------------------------------------------------------------------------

_worker: dict = {}


def _init_worker(url: str, parent_pid: int) -> None:
    _worker["url"] = url
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive the run: after a `kill -9` of the parent it would go on
    committing queued days, then block for ever on the pool's pipe, holding a connection and
    the run's stdout. The kernel kills it when the parent dies (Linux's PR_SET_PDEATHSIG); its
    open transaction, if any, rolls back with its connection."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own checks are all there is
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _worker_connection() -> psycopg.Connection:
    conn = _worker.get("conn")
    if conn is None or conn.closed or conn.broken:
        conn = connect(_worker["url"], application_name="fitpipe-worker")
        _worker["conn"] = conn
    return conn


def _worker_source(name: str) -> Source:
    """One instance of each source per worker, kept for the run, so what a source caches (a
    participant's authorised session) serves all the days the worker loads."""
    from fitpipe.sources import source_for

    sources = _worker.setdefault("sources", {})
    if name not in sources:
        sources[name] = source_for(name)
    return sources[name]


def _secret_reader(conn: psycopg.Connection, user: User):
    def read() -> str | None:
        from fitpipe.secrets import Keyring, load_secret

        return load_secret(conn, Keyring.from_environment(), user.user_id, user.source)

    return read


def run_task(item: tuple[Task, int]) -> DayOutcome:
    task, run_id = item
    from fitpipe.ingest.load import replace_day
    from fitpipe.ingest.validate import parse_day
    from fitpipe.sources import RetryLater, SourceFailed
    from fitpipe.sources.contract import BudgetLedger, Fetch

    user = task.user
    ctx = user.day_context(task.day)
    seconds: dict[str, float] = {}
    budget = None
    try:
        source = task.source or _worker_source(user.source)
        budget = BudgetLedger(source.budget(), list(task.budget_spent))
        # Day D can change until settle_days after it; yesterday is the last day that is over.
        settled = task.day + dt.timedelta(days=source.settle_days_for(user)) <= last_complete_day(user)
        conn = _worker_connection()
        fetch = Fetch(
            now=now_in(user.timezone), budget=budget, secret=_secret_reader(conn, user), stop_requested=_stop_requested
        )
        # ...and, where the source can tell, not before the participant's device synced past it:
        # a day fetched before the phone synced would otherwise settle empty and never be fetched again.
        sync, sync_refused = _device_sync(conn, source, user, fetch)
        settled = settled and synced_past(sync, ctx)

        def produce():
            started = time.perf_counter()
            try:
                if sync_refused is not None:
                    raise sync_refused  # deferred or failed like the day's own fetch
                if sync is not None:
                    record_devices(conn, user.user_id, source.name, sync)  # in the day's transaction
                payloads = source.fetch_day(user, task.day, fetch)
            except SourceFailed as exc:
                if not exc.needs_reconsent:
                    raise
                # Revoked consent: the day waits for the participant (deferred, not failed), the
                # mark is committed with the deferral, and the run goes on for everyone else.
                _mark_needs_reconsent(user, exc.reason)
                raise RetryLater(exc.reason, after=WAIT_FOR_RECONSENT) from None
            seconds["fetch"] = time.perf_counter() - started
            started = time.perf_counter()
            parsed = parse_day(payloads, ctx, source.parsers())
            seconds["parse"] = time.perf_counter() - started
            return parsed

        outcome = replace_day(
            conn,
            ctx,
            produce,
            source=source.name,
            run_id=run_id,
            skip_if_done=task.skip_if_done,
            settled=settled,
            rewrite_unchanged=task.rewrite_unchanged,
        )
    except SourceFailed as exc:
        outcome = DayOutcome(ctx.user_id, ctx.day, "failed", error=mask_secrets(f"source failed: {exc.reason}"))
    except psycopg.errors.LockNotAvailable:
        outcome = DayOutcome(
            ctx.user_id,
            ctx.day,
            "failed",
            error=f"another session held participant {ctx.user_id}'s lock longer than the lock "
            f"timeout ({ENV_LOCK_TIMEOUT}); the day was left as it was",
        )
    except psycopg.errors.QueryCanceled:
        outcome = DayOutcome(
            ctx.user_id,
            ctx.day,
            "failed",
            error=f"a statement ran longer than the statement timeout ({ENV_STATEMENT_TIMEOUT}); "
            "the day was left as it was",
        )
    except Exception as exc:  # one bad day must not stop the others
        outcome = DayOutcome(
            ctx.user_id, ctx.day, "failed", error=mask_secrets(f"{type(exc).__name__}: {first_line(exc)}")
        )
    outcome.seconds.update(seconds)
    outcome.budget_spent = tuple(budget.spent) if budget else task.budget_spent
    return outcome


def _device_sync(
    conn: psycopg.Connection, source: Source, user: User, fetch
) -> tuple[DeviceSync | None, Exception | None]:
    """The source's sync evidence, asked before the day's transaction opens; what it raises is
    raised again inside the day's fetch, where RetryLater and SourceFailed are handled."""
    from fitpipe.sources import RetryLater, SourceFailed

    try:
        return source.device_sync(user, fetch), None
    except (RetryLater, SourceFailed) as exc:
        return None, exc
    finally:
        # Reading the grant (fetch.secret) began a transaction that wrote nothing: end it, so the
        # day's own transaction is the outermost one and commits.
        conn.rollback()


def _mark_needs_reconsent(user: User, reason: str) -> None:
    from fitpipe.secrets import set_credential_state

    conn = _worker_connection()
    with conn.transaction():
        set_credential_state(conn, user.user_id, user.source, "needs_reconsent", reason)


_run_stopping: dict[str, Any] = {}


def _stop_requested() -> bool:
    event = _run_stopping.get("event")
    return bool(event is not None and event.is_set())


def _tell_workers_to_stop() -> None:
    event = _run_stopping.get("event")
    if event is not None:
        event.set()


def _start_workers(url: str, workers: int, tasks: Sequence[Task]) -> ProcessPoolExecutor | None:
    """Fork the worker processes now, before this process opens its own connection, so no child
    inherits a live one; the sources' heavy modules are imported first so the children share them."""
    if not tasks:
        return None
    from fitpipe.sources import source_class

    for name in {t.user.source for t in tasks}:
        source_class(name).parsers()
        source_class(name).prepare_workers()
    participants = len({t.user.user_id for t in tasks})
    # Before the fork, so every worker shares it: set when the run is asked to stop.
    _run_stopping["event"] = multiprocessing.get_context("fork").Event()
    executor = ProcessPoolExecutor(
        min(workers, participants),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(url, os.getpid()),
    )
    executor.submit(int).result()  # with fork, the first submit starts every worker
    return executor


def _outcome_of(future, task: Task) -> DayOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        # A worker died (killed, out of memory): its day rolled back; this one was never done.
        return DayOutcome(
            task.user.user_id, task.day, "failed", error="a worker process died; the day was left as it was"
        )


# How often the scheduler looks for a stop request while it waits for days to finish.
_STOP_POLL_SECONDS = 0.2


@contextlib.contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """SIGTERM (systemd, `docker stop`) and Ctrl-C set a flag that the scheduler checks between
    waits and turns into KeyboardInterrupt there, so the run is recorded as interrupted.

    An exception raised by the signal handler itself could land anywhere, inside the process
    pool's own bookkeeping too, and leave its shutdown waiting for ever.
    """
    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _schedule(
    executor: ProcessPoolExecutor,
    tasks: Sequence[Task],
    run_id: int,
    summary: RunSummary,
    progress: Progress,
    max_wait: float,
    running: dict,
    stop: threading.Event,
) -> None:
    """Run each participant's days in order, one at a time; short RetryLater waits are waited out.

    `running` (future -> task) is the caller's, so that after an interrupt it can collect the
    days that were still running and finished while the pool shut down.
    """
    queues: dict[int, collections.deque[Task]] = collections.defaultdict(collections.deque)
    for task in sorted(tasks, key=lambda t: (t.user.user_id, t.day)):
        queues[task.user.user_id].append(task)
    waiting: list[tuple[float, int, Task]] = []
    order = itertools.count()

    def finish(outcome: DayOutcome) -> None:
        summary.outcomes.append(outcome)
        progress.day_done(outcome)

    def submit(task: Task) -> None:
        try:
            running[executor.submit(run_task, (task, run_id))] = task
        except BrokenProcessPool:
            # A worker died earlier: this participant's remaining days are left as they were.
            for left in (task, *queues.pop(task.user.user_id, ())):
                finish(
                    DayOutcome(
                        left.user.user_id, left.day, "failed", error="a worker process died; the day was left as it was"
                    )
                )

    for queue in list(queues.values()):
        submit(queue.popleft())
    while running or waiting:
        if stop.is_set():
            # The days still running stop at their next request (Fetch.stop_requested).
            _tell_workers_to_stop()
            raise KeyboardInterrupt
        while waiting and waiting[0][0] <= time.monotonic():
            submit(heapq.heappop(waiting)[2])
        timeout = max(waiting[0][0] - time.monotonic(), 0) if waiting else _STOP_POLL_SECONDS
        done, _ = wait(list(running), timeout=min(timeout, _STOP_POLL_SECONDS), return_when=FIRST_COMPLETED)
        for future in done:
            task = running.pop(future)
            outcome = _outcome_of(future, task)
            budget = outcome.budget_spent or task.budget_spent
            if (
                outcome.status == "deferred"
                and outcome.retry_after is not None
                and outcome.retry_after <= max_wait
                and task.attempt < MAX_ATTEMPTS_PER_RUN
            ):
                again = replace(task, budget_spent=budget, attempt=task.attempt + 1)
                heapq.heappush(waiting, (time.monotonic() + outcome.retry_after, next(order), again))
                continue
            finish(outcome)
            users_next = queues.get(task.user.user_id)
            if users_next:
                submit(replace(users_next.popleft(), budget_spent=budget))


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
        run_id = one_row(
            conn.execute(
                "INSERT INTO ingest_runs (command, arguments, host, pid) VALUES (%s, %s, %s, %s) RETURNING run_id",
                (command, json.dumps(arguments, default=str), socket.gethostname(), os.getpid()),
            )
        )[0]
        # Named in the same transaction, so no other run ever sees this one without its connection.
        conn.execute("SELECT set_config('application_name', %s, false)", (f"fitpipe-run-{int(run_id)}",))
    return run_id


def _finish_run(conn: psycopg.Connection, summary: RunSummary, status: str, error: str | None) -> None:
    with conn.transaction():
        conn.execute(
            """
            UPDATE ingest_runs SET status = %s, finished_at = now(), user_days = %s, rows_loaded = %s,
                   quarantined = %s, skipped = %s, failed = %s, deferred = %s, unchanged = %s, error = %s
            WHERE run_id = %s
            """,
            (
                status,
                summary.count("loaded"),
                summary.rows,
                summary.quarantined,
                summary.count("done") + summary.count("busy") + summary.count("withdrawn"),
                summary.count("failed"),
                summary.count("deferred"),
                summary.count("unchanged"),
                error,
                summary.run_id,
            ),
        )


def run_plan(
    conn: psycopg.Connection,
    plan: Plan,
    *,
    url: str,
    workers: int | None = None,
    progress: Progress | None = None,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> RunSummary:
    """Run a plan's user-days and record the run in ingest_runs; returns what happened to each day.

    `conn` keeps the run log; workers open their own connections to `url`. Deferred days are
    neither done nor failed. The caller decides what failed days mean for its exit code.
    """
    progress = progress or _Silent()
    workers = workers or os.cpu_count() or 1
    from fitpipe.secrets import check_secrets_readable
    from fitpipe.sources import source_class

    # Only the participants whose source reads a stored secret (an import reads its archive).
    needs_secret = {t.user.user_id for t in plan.tasks if source_class(t.user.source).credential_kind == "oauth"}
    check_secrets_readable(conn, sorted(needs_secret))
    conn.commit()
    arguments = {**plan.arguments, "workers": workers}
    started = time.perf_counter()
    executor = _start_workers(url, workers, plan.tasks)
    summary = None
    running: dict = {}
    try:
        run_id = _start_run(conn, plan.command, arguments)
        summary = RunSummary(run_id, plan.command, len(plan.tasks))
        progress.start(run_id, len(plan.tasks))
        error: str | None
        try:
            with _stop_requests() as stop:
                if executor:
                    _schedule(executor, plan.tasks, run_id, summary, progress, max_wait, running, stop)
                if stop.is_set():
                    raise KeyboardInterrupt
        except BaseException as exc:
            summary.status = "interrupted"
            error = (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else f"stopped by {type(exc).__name__}: {first_line(exc)}"
            )
            raise
        else:
            error = None
            if summary.failed:
                summary.status = "failed"
                error = "\n".join(f"user {o.user_id} day {o.day}: {o.error}" for o in summary.failed)
        finally:
            if executor:
                # Days already running finish (each is atomic); queued ones are dropped when stopping early.
                executor.shutdown(wait=True, cancel_futures=summary.status != "ok")
                executor = None
                # Those that finished meanwhile committed: the run log counts them as the ledger does.
                for future, task in running.items():
                    if future.done() and not future.cancelled():
                        outcome = _outcome_of(future, task)
                        summary.outcomes.append(outcome)
                        progress.day_done(outcome)
            progress.stop()
            summary.seconds = time.perf_counter() - started
            _finish_run(conn, summary, summary.status, error)
    finally:
        if executor:
            executor.shutdown(wait=True, cancel_futures=True)
    return summary
