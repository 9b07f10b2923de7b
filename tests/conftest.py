"""Fixtures only (helpers live in tests/support/): the session's own database on the real
TimescaleDB, an emptied connection to it, the real CLI bound to it, and
the Apache-edition server."""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.db import (
    ADMIN_URL,
    APACHE_ADMIN_URL,
    empty_database,
    initialised_database,
    scratch_database,
    server_edition,
)
from support.sources import one_participant_store, three_participant_week


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
def scratch_url():
    """A brand-new empty database of this test's own (no init-db yet), dropped afterwards."""
    with scratch_database() as url:
        yield url


@pytest.fixture(scope="module")
def seeded(database_url):
    """The test database emptied, with synthetic participant 1 (from 2024-01-01) and no data."""
    return one_participant_store(database_url)


@pytest.fixture(scope="module")
def loaded(database_url):
    """The test database emptied, with synthetic participant 1 and its days 2024-01-01..02 loaded."""
    return one_participant_store(database_url, "2024-01-02")


@pytest.fixture(scope="session")
def cohort():
    """A database of its own, built once per session, that tests only read: three UTC participants
    with a week (2024-01-01..07) loaded, user 3 without wear gaps."""
    with initialised_database(prefix="fitpipe_cohort") as url:
        yield three_participant_week(url)


@pytest.fixture
def cli(database_url):
    """Run the real CLI against the test database; returns typer's Result."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, ["--database-url", database_url, *args], input=input)

    return invoke


@pytest.fixture(scope="session")
def apache_admin_url():
    """An admin URL of an Apache-2 edition server; skips without one (fails under .ci/run, which
    sets FITPIPE_TEST_REQUIRE_EDITIONS=1 and starts one)."""
    for url in (u for u in (APACHE_ADMIN_URL, ADMIN_URL) if u):
        if server_edition(url) == "apache":
            return url
    message = "no Apache-edition server: set FITPIPE_TEST_APACHE_ADMIN_URL (.ci/run starts one)"
    if os.environ.get("FITPIPE_TEST_REQUIRE_EDITIONS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server():
    """The local Google Health API, one per test module."""
    from fitpipe.sources.google_health.standin import HealthApiServer

    with HealthApiServer() as running:
        yield running


@pytest.fixture
def health(server, tmp_path, monkeypatch, db):
    """The server with no accounts or faults left from other tests, and fitpipe pointed at it."""
    api = server.api
    with api.lock:
        api.accounts.clear()
        api.faults.clear()
        api.requests.clear()
        api._days.clear()
        api._answers.clear()
        api.served.clear()
    from fitpipe.secrets import new_key

    secrets_file = tmp_path / "client_secret.json"
    secrets_file.write_text(json.dumps(api.client_secrets()))
    monkeypatch.setenv("FITPIPE_SECRET_KEY", new_key())
    monkeypatch.setenv("FITPIPE_HEALTH_API_URL", server.url)
    monkeypatch.setenv("FITPIPE_GOOGLE_CLIENT_SECRETS", str(secrets_file))
    # Generous: on a loaded machine the stand-in can take seconds to generate a day, and a client
    # timeout would retry the request and change the counts these tests assert.
    monkeypatch.setenv("FITPIPE_HEALTH_TIMEOUT", "60")
    return server
