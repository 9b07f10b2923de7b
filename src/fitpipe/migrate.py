"""Apply migrations/NNNN_name.sql in order, once each, and refuse edited ones."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg

from fitpipe.db import FIX_NO_TIMESCALEDB, one_row, timescaledb_available
from fitpipe.errors import SchemaError, first_line

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `init-db` runs; any constant works as long as it is fitpipe's own.
_MIGRATION_LOCK_KEY = 0x66697470_00000001

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schema_migrations IS 'One row per migrations/NNNN_name.sql applied by fitpipe init-db.';
COMMENT ON COLUMN schema_migrations.version IS 'The NNNN prefix of the migration file.';
COMMENT ON COLUMN schema_migrations.name IS 'The file name, e.g. 0001_core.sql.';
COMMENT ON COLUMN schema_migrations.checksum IS 'SHA-256 of the file as applied; init-db refuses a file '
    'whose content changed since.';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When the migration was applied.';
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str]
    already_applied: int
    # Applied by another init-db while this one waited for the migration lock.
    applied_elsewhere: list[str] = field(default_factory=list)


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    return {
        version: (name, checksum)
        for version, name, checksum in conn.execute("SELECT version, name, checksum FROM schema_migrations")
    }


def schema_mismatch(
    applied: dict[int, tuple[str, str]], known: list[Migration], *, pending_is_mismatch: bool
) -> str | None:
    """Why the database's migrations do not match this fitpipe's files, or None.

    A database ahead of the code, an applied migration whose file is gone, or an edited file
    would fail later with confusing errors (UndefinedColumn on every command); pending
    migrations are a mismatch for every command but init-db, which applies them.
    """
    by_version = {m.version: m for m in known}
    newest = max(by_version, default=0)
    ahead = sorted(v for v in applied if v > newest)
    if ahead:
        return (
            f"the database is at migration {applied[ahead[-1]][0]}, newer than this fitpipe knows "
            f"({by_version[newest].name if newest else 'none'}); upgrade fitpipe"
        )
    gone = sorted(v for v in applied if v not in by_version)
    if gone:
        return (
            f"migration {applied[gone[0]][0]} was applied to the database but its file is missing from "
            f"{migrations_dir()}; restore it"
        )
    for migration in known:
        recorded = applied.get(migration.version)
        if recorded and recorded[1] != migration.checksum:
            return (
                f"migration {migration.name} was edited after it was applied; "
                "restore it and put the change in a new migration file"
            )
    pending = [m.name for m in known if m.version not in applied]
    if pending and pending_is_mismatch:
        return f"the database lacks migration(s) {', '.join(pending)}; run `fitpipe init-db`"
    return None


def check_schema_version(conn: psycopg.Connection) -> None:
    """Refuse a database whose migrations differ from the code's (see schema_mismatch)."""
    problem = schema_mismatch(_applied(conn), discover(), pending_is_mismatch=True)
    if problem:
        raise SchemaError(problem)


def migrations_dir() -> Traversable:
    """The migrations shipped in the package; FITPIPE_MIGRATIONS_DIR overrides them (tests, hotfixes)."""
    override = os.environ.get("FITPIPE_MIGRATIONS_DIR")
    if override:
        return Path(override)
    return resources.files("fitpipe.migrations")


def discover(directory: Traversable | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise SchemaError(f"migrations folder not found: {directory}")
    found = []
    for path in sorted((p for p in directory.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise SchemaError(f"migration file name must look like 0001_name.sql: {path.name}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"migration {path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        found.append(Migration(int(match.group(1)), path.name, text))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError("two migration files share a version number")
    return found


def apply_migrations(conn: psycopg.Connection, directory: Path | None = None) -> MigrationReport:
    migrations = discover(directory)
    if not timescaledb_available(conn):
        raise SchemaError(f"this PostgreSQL server has no TimescaleDB extension; {FIX_NO_TIMESCALEDB}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(_BOOTSTRAP)
    applied_before = _applied(conn)
    # End the read's implicit transaction, so each migration below gets a transaction of its own.
    conn.commit()
    problem = schema_mismatch(applied_before, migrations, pending_is_mismatch=False)
    if problem:
        raise SchemaError(problem)
    report = MigrationReport(applied=[], already_applied=len(applied_before))
    for migration in migrations:
        if migration.version in applied_before:
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            # Another init-db may have applied it while we waited for the lock.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                report.applied_elsewhere.append(migration.name)
                continue
            try:
                conn.execute(migration.sql)
            except psycopg.Error as exc:
                raise SchemaError(f"migration {migration.name} failed: {first_line(exc)}") from None
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        report.applied.append(migration.name)
    return report


def require_schema(conn: psycopg.Connection) -> None:
    """Fail with a hint when init-db has not been run on this database."""
    row = one_row(conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL"))
    if not row[0]:
        raise SchemaError("this database has no fitpipe schema; run `fitpipe init-db` first")
    check_schema_version(conn)
    conn.commit()
