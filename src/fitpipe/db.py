"""Connections, and the database errors turned into one readable line."""

from __future__ import annotations

import contextlib
from typing import Iterator

import psycopg

from fitpipe.config import mask_secrets
from fitpipe.errors import DatabaseUnavailable, SchemaError, first_line

FIX_NO_TIMESCALEDB = (
    "start the local server with `scripts/dev-db.sh start`, "
    "or `docker compose -f docker-compose.timescale.yml up -d timescaledb`"
)


def connect(url: str, *, autocommit: bool = False, application_name: str = "fitpipe") -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=10)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(mask_secrets(f"cannot connect to {mask_secrets(url)}: {first_line(exc)}", url)) from None


@contextlib.contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(url, autocommit=autocommit)
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"lost the database connection: {mask_secrets(first_line(exc))}") from None
    finally:
        conn.close()


def require_schema(conn: psycopg.Connection) -> None:
    """Fail with a hint when init-db has not been run on this database."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        raise SchemaError("this database has no fitpipe schema; run `fitpipe init-db` first")
    conn.commit()


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return bool(row[0])

