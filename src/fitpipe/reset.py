"""`fitpipe reset`: drop everything fitpipe's migrations created, so init-db starts fresh.

The list comes from the migration files themselves (every CREATE TABLE and CREATE FUNCTION),
plus schema_migrations, so a new migration is covered without touching this file. The
timescaledb extension and the fitpipe_readonly role stay: they belong to the whole server, and
other databases may use them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from fitpipe.errors import FitpipeError
from fitpipe.migrate import discover

_CREATED = re.compile(
    r"^\s*CREATE\s+(TABLE|FUNCTION|VIEW|TYPE)\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)", re.I | re.M
)


@dataclass
class ResetPlan:
    tables: list[str]
    functions: list[str]
    views: list[str]
    types: list[str] = field(default_factory=list)


def plan(conn: psycopg.Connection) -> ResetPlan:
    tables: list[str] = ["schema_migrations"]
    functions: list[str] = []
    views: list[str] = []
    types: list[str] = []
    for migration in discover():
        for kind, name in _CREATED.findall(migration.sql):
            {"table": tables, "function": functions, "view": views, "type": types}[kind.lower()].append(name.lower())
    present = {
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "UNION SELECT viewname FROM pg_views WHERE schemaname = 'public'"
        )
    }
    present_functions = {
        r[0] for r in conn.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
    }
    present_types = {
        r[0] for r in conn.execute("SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace")
    }
    return ResetPlan(
        [t for t in tables if t in present],
        [f for f in functions if f in present_functions],
        [v for v in views if v in present],
        [t for t in types if t in present_types],
    )


def reset(conn: psycopg.Connection, what: ResetPlan) -> None:
    try:
        _drop(conn, what)
    except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
        raise FitpipeError(
            "another session is using fitpipe's tables (an ingest, an export, a dashboard?); "
            "nothing was dropped: try again when it has finished"
        ) from None


def _drop(conn: psycopg.Connection, what: ResetPlan) -> None:
    with conn.transaction():
        for view in what.views:
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(sql.Identifier(view)))
        # Reverse creation order, so dependants go first; CASCADE covers the rest.
        for table in reversed(what.tables):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
        for function in what.functions:
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {} CASCADE").format(sql.Identifier(function)))
        for type_name in what.types:
            conn.execute(sql.SQL("DROP TYPE IF EXISTS {} CASCADE").format(sql.Identifier(type_name)))
