"""Issue 13, findings 2 and 7: a run that is killed or told to stop, with worker processes.

- `kill -9` of the parent: its workers die with it (no orphan commits a day afterwards), and
  the next run records the dead run as interrupted.
- SIGTERM: the days that finish while the pool shuts down are counted in the run log, so
  ingest_runs agrees with the ledger rows that carry the run id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from support.cli import fitpipe, popen, wait_for_loaded_days
from support.db import empty_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

BACKFILL = ("backfill", "--start", "2024-01-01", "--end", "2024-01-12", "--force", "--workers", "2", "--no-refresh")


@pytest.fixture
def two_participants(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
    fitpipe(database_url, "seed-users", "--count", "2", "--start-date", "2024-01-01")
    return database_url


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent's wait is missing


def run_of(conn, pid: int):
    return conn.execute("SELECT run_id, status, user_days FROM ingest_runs WHERE pid = %s", (pid,)).fetchone()


def test_kill_9_of_the_parent_takes_its_workers_with_it(two_participants):
    url = two_participants
    run = popen(url, *BACKFILL)
    workers: list[int] = []
    try:
        wait_for_loaded_days(run, 1)
        workers = children_of(run.pid)
        assert len(workers) >= 2, workers
        run.kill()
        run.wait(30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "worker processes outlived the killed run"
    finally:
        run.kill()
        for pid in workers:  # orphans of the unfixed runner must not outlive the test
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    with psycopg.connect(url, autocommit=True) as conn:
        run_id = run_of(conn, run.pid)[0]
        ledger = "SELECT count(*) FROM ingested_days WHERE run_id = %s"
        settled = conn.execute(ledger, (run_id,)).fetchone()[0]
        time.sleep(3)
        assert conn.execute(ledger, (run_id,)).fetchone()[0] == settled, "days were committed after the kill"
        assert settled < 24
        fitpipe(url, "backfill", "--start", "2024-01-01", "--end", "2024-01-01", "--no-refresh")
        assert run_of(conn, run.pid)[1] == "interrupted"


def test_sigterm_counts_the_days_that_finish_during_shutdown(two_participants):
    url = two_participants
    run = popen(url, *BACKFILL)
    try:
        wait_for_loaded_days(run, 2)
        run.send_signal(signal.SIGTERM)
        try:
            _, stderr = run.communicate(timeout=30)
        except subprocess.TimeoutExpired as hang:  # show where it hangs (faulthandler with PYTHONFAULTHANDLER=1)
            run.send_signal(signal.SIGABRT)
            _, stderr = run.communicate(timeout=30)
            raise AssertionError(stderr[-8000:]) from hang
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    with psycopg.connect(url, autocommit=True) as conn:
        run_id, status, user_days = run_of(conn, run.pid)
        in_ledger = conn.execute("SELECT count(*) FROM ingested_days WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert status == "interrupted"
    assert user_days == in_ledger, f"ingest_runs.user_days {user_days}, ledger rows of the run {in_ledger}"
