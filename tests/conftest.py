"""Tests run against a real TimescaleDB: each session creates its own database and drops it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.catalogue import METRICS
from fitpipe.cli import app
from fitpipe.config import DEFAULT_DATABASE_URL
from fitpipe.participants import User
from fitpipe.sources.contract import BudgetLedger, Fetch

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("FITPIPE_TEST_ADMIN_URL", DEFAULT_DATABASE_URL)
STATE_TABLES = ("quarantine", "ingested_days", "rollup_invalidations", "ingest_runs")


def url_for(database: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def database_url():
    name = f"fitpipe_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = url_for(name)
    try:
        result = CliRunner().invoke(app, ["--database-url", url, "init-db"])
        assert result.exit_code == 0, result.output
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_database(conn: psycopg.Connection) -> None:
    """Remove every row fitpipe wrote, keeping the schema (autocommit connection)."""
    tables = [m.table for m in METRICS] + list(STATE_TABLES) + ["users"]
    extra = conn.execute(
        "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename LIKE ANY (ARRAY['rollup\\_%', 'imputed%'])"
    ).fetchone()[0]
    conn.execute(f"TRUNCATE {', '.join(tables)}{', ' + extra if extra else ''} CASCADE")


@pytest.fixture
def db(database_url):
    """A connection to an emptied test database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        yield conn


@pytest.fixture
def cli(database_url):
    """Run the real CLI against the test database; returns typer's Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["--database-url", database_url, *args], input=input)

    return invoke


def fitpipe(url: str, *args: str, ok: bool = True):
    """The real CLI in-process (CliRunner); with ok, a non-zero exit fails the test with its output."""
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    if ok:
        assert result.exit_code == 0, (
            f"fitpipe {' '.join(args)} -> exit {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
    return result


def one_participant_store(url: str, backfill_through: str | None = None) -> str:
    """The test database emptied, with synthetic participant 1 from 2024-01-01, and with its days
    up to `backfill_through` (YYYY-MM-DD) loaded when given."""
    with psycopg.connect(url, autocommit=True) as conn:
        empty_database(conn)
    fitpipe(url, "seed-users", "--count", "1", "--start-date", "2024-01-01")
    if backfill_through:
        fitpipe(url, "backfill", "--start", "2024-01-01", "--end", backfill_through, "--workers", "1")
    return url


def one_error_line(result) -> str:
    """The single `error: ...` line a refused command writes to stderr, with no traceback anywhere."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def popen(url: str, *args: str) -> subprocess.Popen:
    """fitpipe started in the background, as a second cron run would be."""
    return subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", *args],
        env={**os.environ, "FITPIPE_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_fitpipe(database_url: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run fitpipe in a subprocess, as cron would."""
    env = {**os.environ, "FITPIPE_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", *args], env=env, capture_output=True, text=True, **kwargs
    )


def synthetic_user(
    user_id: int,
    timezone: str = "UTC",
    study_start: dt.date = dt.date(2024, 1, 1),
    *,
    wear_gaps: bool = True,
    display_name: str | None = None,
    **settings,
) -> User:
    """A synthetic participant as list_users would return it, without a database: the source's
    default settings for the id (its seed), with wear_gaps and any other setting overridden."""
    from fitpipe.sources.synthetic.source import SyntheticSource

    return User(
        user_id,
        display_name or f"participant-{user_id:04d}",
        timezone,
        "synthetic",
        study_start,
        settings=SyntheticSource.default_settings(user_id) | {"wear_gaps": wear_gaps} | settings,
        zones=((study_start, timezone),),
    )


def fetch_now(now: dt.datetime | None = None) -> Fetch:
    """What a source's fetch_day gets from the runner: the instant of the fetch and no request budget."""
    return Fetch(now=now or dt.datetime.now(dt.UTC), budget=BudgetLedger(None))
