"""Connections, and the database errors turned into one readable line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TypeVar

import psycopg

from fitpipe.config import mask_secrets
from fitpipe.errors import BadInput, DatabaseUnavailable, first_line

FIX_NO_TIMESCALEDB = (
    "start the local server with `scripts/dev-db.sh start`, "
    "or `docker compose -f docker-compose.timescale.yml up -d timescaledb`"
)


# fitpipe's sessions never wait for ever: a lock another session holds too long (a stuck run,
# or anyone who can call pg_advisory_lock) fails that statement, and so that day, with a reason.
ENV_LOCK_TIMEOUT = "FITPIPE_LOCK_TIMEOUT"
ENV_STATEMENT_TIMEOUT = "FITPIPE_STATEMENT_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_STATEMENT_TIMEOUT = 3600.0


def _seconds_setting(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise BadInput(f"{name} must be a number of seconds (0: no limit), got {value[:40]!r}") from None
    if not 0 <= seconds <= 7 * 86400:
        raise BadInput(f"{name} must be between 0 (no limit) and 604800 seconds, got {value[:40]!r}")
    return seconds


def session_timeouts() -> dict[str, float]:
    """Seconds for lock_timeout and statement_timeout (0: no limit), from the environment."""
    return {
        "lock_timeout": _seconds_setting(ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT),
        "statement_timeout": _seconds_setting(ENV_STATEMENT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT),
    }


def _options(url: str) -> str:
    """The URL's own `options`, plus fitpipe's timeouts."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url).get("options") or ""
    except psycopg.Error:
        given = ""  # psycopg.connect reports the bad URL itself
    ours = " ".join(f"-c {name}={int(seconds * 1000)}" for name, seconds in session_timeouts().items())
    return f"{given} {ours}".strip()


RowT = TypeVar("RowT")


def one_row(cursor: psycopg.Cursor[RowT]) -> RowT:
    """The row of a statement that always returns exactly one (an aggregate, a function call,
    INSERT ... ON CONFLICT DO UPDATE RETURNING): none is a bug, said so instead of a TypeError."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"expected one row, got none: {cursor.statusmessage}")
    return row


def check_url(url: str) -> None:
    """Refuse a database URL that cannot be a connection string as bad input (exit 2), before any
    connection attempt would report it as an unreachable server (exit 3). libpq's parse errors
    quote the offending token, which may be the password, so the message never includes them."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise BadInput(
            "the database URL cannot be parsed; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
            "(percent-encode special characters in the password)"
        ) from None
    ports = str(info.get("port") or "")
    if ports and not all(port.isdigit() for port in ports.split(",")):
        raise BadInput(f"the database URL's port is not a number: {mask_secrets(url)}")


def connect(url: str, *, autocommit: bool = False, application_name: str = "fitpipe") -> psycopg.Connection:
    check_url(url)
    options = _options(url)
    try:
        return psycopg.connect(
            url, autocommit=autocommit, application_name=application_name, connect_timeout=10, options=options
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            mask_secrets(f"cannot connect to {mask_secrets(url)}: {first_line(exc)}", url)
        ) from None


@contextlib.contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    conn = connect(url, autocommit=autocommit)
    try:
        with conn:
            yield conn
    except psycopg.OperationalError as exc:
        # Deadlocks, lock timeouts and cancelled statements are OperationalErrors too, on a
        # connection that is still fine: they keep their own message.
        if not (conn.closed or conn.broken):
            raise
        raise DatabaseUnavailable(f"lost the database connection: {mask_secrets(first_line(exc))}") from None
    finally:
        conn.close()


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = one_row(conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"))
    return bool(row[0])
