"""Fixtures only (helpers live in tests/support/): the session's own database on the real
TimescaleDB, an emptied connection to it, and the real CLI bound to it."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.db import empty_database, scratch_database


@pytest.fixture(scope="session")
def database_url():
    with scratch_database(prefix="fitpipe_test") as url:
        result = CliRunner().invoke(app, ["--database-url", url, "init-db"])
        assert result.exit_code == 0, result.output
        yield url


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
