"""The app's connections: a bounded pool of read-only sessions, each with a statement timeout,
so a slow query or a burst of requests cannot hold the server or the database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from fitpipe.config import mask_secrets
from fitpipe.errors import DatabaseUnavailable, first_line


@dataclass(frozen=True)
class PoolSettings:
    max_connections: int = 4
    statement_timeout_s: float = 10.0
    # How long a request waits for a free connection before it is answered 503.
    wait_s: float = 10.0


class Busy(Exception):
    """Every connection stayed busy for the whole wait: answered 503."""


def _options(url: str, settings: PoolSettings) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url).get("options") or ""
    except psycopg.Error:
        given = ""
    ours = (
        f"-c statement_timeout={int(settings.statement_timeout_s * 1000)} "
        "-c lock_timeout=5000 -c default_transaction_read_only=on"
    )
    return f"{given} {ours}".strip()


class Database:
    def __init__(self, url: str, settings: PoolSettings):
        self.url = url
        self.settings = settings
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=settings.max_connections,
            timeout=settings.wait_s,
            open=False,
            name="fitpipe-serve",
            kwargs={
                "autocommit": True,
                "application_name": "fitpipe serve",
                "connect_timeout": 10,
                "options": _options(url, settings),
            },
        )

    def open(self) -> None:
        self.check()
        self.pool.open(wait=False)

    def check(self) -> None:
        """Connect once, so a wrong URL or a database without the schema fails at start, in one line."""
        try:
            with psycopg.connect(self.url, connect_timeout=10, options=_options(self.url, self.settings)) as conn:
                from fitpipe.migrate import require_schema

                require_schema(conn)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                mask_secrets(f"cannot connect to {mask_secrets(self.url)}: {first_line(exc)}", self.url)
            ) from None

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise Busy("every database connection is busy; try again in a moment") from None
