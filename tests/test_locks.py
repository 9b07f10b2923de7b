"""Advisory locks cannot stall ingestion.

- A read-only login cannot call the advisory-lock functions (migration 0041).
- A lock held too long by another session fails the day with a reason after FITPIPE_LOCK_TIMEOUT
  instead of hanging.
- A run that only skips days held by another session says so in its exit status (7)."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import psycopg
import pytest

from fitpipe import locks
from support.cli import fitpipe, run_fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

DAY = dt.date(2024, 1, 2)


def test_a_reader_login_cannot_take_advisory_locks(seeded, monkeypatch):
    url = seeded
    login = f"reader_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FITPIPE_READER_PASSWORD", "reader-password-1")
    created = run_fitpipe(url, "create-reader", login)
    assert created.returncode == 0, created.stderr
    try:
        reader_url = url.replace("fitpipe:fitpipe@", f"{login}:reader-password-1@", 1)
        with psycopg.connect(reader_url, autocommit=True) as reader:
            assert reader.execute("SELECT count(*) FROM users").fetchone()[0] == 1
            for call in ("pg_advisory_lock(%s)", "pg_try_advisory_lock(%s)", "pg_advisory_lock_shared(%s)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(f"SELECT {call}", (locks.user_key(1),))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute("SELECT pg_advisory_lock(1, %s)", (DAY.toordinal(),))
        with psycopg.connect(url, autocommit=True) as conn:  # fitpipe's own role keeps them
            assert conn.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{login}"')


def force_the_day(url: str):
    """Re-load DAY for everyone in one worker, as a second run would while the lock is held."""
    return run_fitpipe(
        url, "backfill", "--start", str(DAY), "--end", str(DAY), "--force", "--workers", "1", "--no-refresh", timeout=90
    )


def test_a_lock_held_elsewhere_fails_the_day_after_the_lock_timeout(seeded, monkeypatch):
    url = seeded
    monkeypatch.setenv("FITPIPE_LOCK_TIMEOUT", "1")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (locks.user_key(1),))  # a stuck session
        started = time.monotonic()
        result = force_the_day(url)
        elapsed = time.monotonic() - started
    assert result.returncode == 5, result.stderr
    assert "lock" in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert elapsed < 60
    with psycopg.connect(url) as conn:
        error = conn.execute("SELECT error FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
    assert "lock timeout" in error and "FITPIPE_LOCK_TIMEOUT" in error


def test_a_bad_timeout_setting_is_one_line(seeded, monkeypatch):
    monkeypatch.setenv("FITPIPE_LOCK_TIMEOUT", "soon")
    result = run_fitpipe(seeded, "status")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: FITPIPE_LOCK_TIMEOUT must be a number of seconds (0: no limit), got 'soon'"
    ]


def test_a_run_that_only_skips_held_days_exits_7(seeded):
    url = seeded
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(1, %s)", (DAY.toordinal(),))
        result = force_the_day(url)
    assert result.returncode == 7, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "another run holds them" in lines[0]
    # The same day alone, once the lock is gone, loads and exits 0.
    fitpipe(url, "backfill", "--start", str(DAY), "--end", str(DAY), "--force", "--workers", "1", "--no-refresh")
