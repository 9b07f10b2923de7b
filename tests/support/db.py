"""The test servers and scratch databases: every test session, and every test that needs a database
of its own (fresh migrations, a second edition), creates one and drops it afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from typer.testing import CliRunner

from fitpipe.catalogue import METRICS
from fitpipe.cli import app
from fitpipe.config import DEFAULT_DATABASE_URL
from fitpipe.derive.maintain import edition

ADMIN_URL = os.environ.get("FITPIPE_TEST_ADMIN_URL", DEFAULT_DATABASE_URL)
APACHE_ADMIN_URL = os.environ.get("FITPIPE_TEST_APACHE_ADMIN_URL")
STATE_TABLES = ("quarantine", "ingested_days", "rollup_invalidations", "ingest_runs")


def url_for(database: str, admin_url: str = ADMIN_URL) -> str:
    """The URL of another database on the server of admin_url."""
    return admin_url.rsplit("/", 1)[0] + "/" + database


@contextlib.contextmanager
def scratch_database(admin_url: str = ADMIN_URL, prefix: str = "fitpipe_scratch") -> Iterator[str]:
    """An empty database (no init-db) on the server of admin_url, dropped afterwards even when
    sessions are still connected; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name, admin_url)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_database(conn: psycopg.Connection) -> None:
    """Remove every row fitpipe wrote, keeping the schema (autocommit connection)."""
    tables = [m.table for m in METRICS] + list(STATE_TABLES) + ["users"]
    extra = conn.execute(
        "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename LIKE ANY (ARRAY['rollup\\_%', 'imputed%'])"
    ).fetchone()[0]
    conn.execute(f"TRUNCATE {', '.join(tables)}{', ' + extra if extra else ''} CASCADE")


def emptied(url: str) -> str:
    """The database of url with every row fitpipe wrote removed; returns url."""
    with psycopg.connect(url, autocommit=True) as conn:
        empty_database(conn)
    return url


@contextlib.contextmanager
def initialised_database(admin_url: str = ADMIN_URL, prefix: str = "fitpipe_initialised") -> Iterator[str]:
    """A scratch database on the server of admin_url after `fitpipe init-db`; yields its URL."""
    with scratch_database(admin_url, prefix=prefix) as url:
        result = CliRunner().invoke(app, ["--database-url", url, "init-db"])
        assert result.exit_code == 0, result.output
        yield url


def server_edition(admin_url: str) -> str:
    """The TimescaleDB edition of the server of admin_url: "community" or "apache"."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return edition(conn)
