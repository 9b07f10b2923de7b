"""reset: refused without --yes, then everything fitpipe made is gone; one line while another
session holds the tables."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.cli import one_error_line, run_fitpipe


@pytest.mark.slow
def test_reset_while_another_session_uses_the_tables_says_so(scratch_url, monkeypatch):
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.setenv("FITPIPE_LOCK_TIMEOUT", "1")
    with psycopg.connect(scratch_url) as reader:  # an open transaction that read a table, as an ingest has
        reader.execute("SELECT count(*) FROM users").fetchone()
        result = run_fitpipe(scratch_url, "reset", "--yes", timeout=60)
    line = one_error_line(result, code=1)
    assert "another session is using fitpipe's tables" in line and "lost the database connection" not in line
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone()[0], "reset dropped part of it"


def fitpipe_objects(url):
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        functions = {
            r[0]
            for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'fitpipe%'"
            )
        }
    return tables, functions


@pytest.mark.slow
def test_reset_refuses_without_yes_then_drops_everything(scratch_url):
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["--database-url", scratch_url, *args])

    assert run("init-db").exit_code == 0
    assert run("seed-users", "--count", "2").exit_code == 0
    before_tables, before_functions = fitpipe_objects(scratch_url)
    assert {"users", "heart_rate", "schema_migrations", "rollup_1min"} <= before_tables

    refused = run("reset")
    assert refused.exit_code == 2, refused.stderr
    assert "--yes" in refused.output and "heart_rate" in refused.output
    assert fitpipe_objects(scratch_url) == (before_tables, before_functions), "nothing dropped without --yes"

    dropped = run("reset", "--yes")
    assert dropped.exit_code == 0, dropped.output
    tables, functions = fitpipe_objects(scratch_url)
    assert tables == set() and functions == set()
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 1

    again = run("init-db")
    assert again.exit_code == 0 and "applied" in again.output
    assert run("seed-users", "--count", "1").exit_code == 0
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1
