"""init-db and the migrations: a brand-new database, re-runs that change nothing, tampered, failing,
badly named or non-UTF-8 migrations refused in one line, the schema version checked against the
code, and concurrent init-db runs that say who applied what.

Tests that need a database of their own create a scratch one (support.db) and drop it afterwards."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from support import ROOT
from support.cli import one_error_line, popen, run_fitpipe

MIGRATIONS = ROOT / "migrations"
NY = "America/New_York"


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def migrations_copy(tmp_path, monkeypatch):
    """A private copy of migrations/ that FITPIPE_MIGRATIONS_DIR points at (also for subprocesses)."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, directory)
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(directory))
    return directory


@pytest.fixture
def real_migrations(monkeypatch):
    monkeypatch.delenv("FITPIPE_MIGRATIONS_DIR", raising=False)
    return MIGRATIONS


def init_db(url: str) -> subprocess.CompletedProcess:
    return run_fitpipe(url, "--database-url", url, "init-db")


def migration_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.sql"))
    assert files, f"no migrations in {directory}"
    return files


def recorded_migrations(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()


def schema_fingerprint(url: str) -> list[tuple]:
    """Every relation and column of schema public, with types and comments."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                   obj_description(c.oid, 'pg_class'), col_description(c.oid, a.attnum)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public'
            ORDER BY 1, 3
            """
        ).fetchall()


def table_exists(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def next_version(directory: Path) -> int:
    return max(int(p.name[:4]) for p in migration_files(directory)) + 1


# --------------------------------------------------------------------------------------------
# migrations


def migrations_folder(tmp_path, name: str, *, without: tuple[str, ...] = (), extra: dict[str, bytes] | None = None):
    """A copy of migrations/ in tmp_path/name, leaving out files starting with `without`, plus `extra`."""
    folder = tmp_path / name
    folder.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if not path.name.startswith(without):
            shutil.copy(path, folder / path.name)
    for file_name, content in (extra or {}).items():
        (folder / file_name).write_bytes(content)
    return folder


def test_init_db_on_a_brand_new_database(scratch_url, real_migrations):
    proc = init_db(scratch_url)
    assert proc.returncode == 0, proc.stderr
    files = migration_files(real_migrations)
    for path in files:
        assert f"applied {path.name}" in proc.stdout
    assert f"database is at migration {files[-1].name}" in proc.stdout

    recorded = recorded_migrations(scratch_url)
    assert [(v, n, c) for v, n, c, _ in recorded] == [(int(p.name[:4]), p.name, sha256(p)) for p in files]
    with psycopg.connect(scratch_url) as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert ext is not None, "timescaledb extension was not created"
        for table in ("users", "ingest_runs", "ingested_days", "quarantine", "rollup_invalidations", "heart_rate"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None, table


@pytest.mark.slow
def test_init_db_again_changes_nothing(scratch_url, real_migrations):
    assert init_db(scratch_url).returncode == 0
    before_rows, before_schema = recorded_migrations(scratch_url), schema_fingerprint(scratch_url)

    proc = init_db(scratch_url)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout
    assert "applied " not in proc.stdout
    assert f"({len(before_rows)} migrations applied)" in proc.stdout
    assert recorded_migrations(scratch_url) == before_rows  # applied_at included: nothing re-run
    assert schema_fingerprint(scratch_url) == before_schema


@pytest.mark.slow
def test_tampered_migration_is_refused(scratch_url, migrations_copy):
    assert init_db(scratch_url).returncode == 0
    before = recorded_migrations(scratch_url)
    target = migration_files(migrations_copy)[0]
    original = target.read_bytes()
    target.write_bytes(original + b"\n-- an innocent-looking edit\n")
    # A pending new file must not be applied either: the check runs before anything is applied.
    pending = migrations_copy / f"{next_version(migrations_copy):04d}_after_tamper.sql"
    pending.write_text("CREATE TABLE after_tamper_probe (id integer);\n")

    proc = init_db(scratch_url)
    line = one_error_line(proc, target.name, code=4)
    assert "edited" in line
    assert recorded_migrations(scratch_url) == before
    assert not table_exists(scratch_url, "after_tamper_probe")

    # Restoring the file makes init-db work again.
    target.write_bytes(original)
    pending.unlink()
    proc = init_db(scratch_url)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout


@pytest.mark.slow
def test_new_migration_is_applied_alone(scratch_url, migrations_copy):
    assert init_db(scratch_url).returncode == 0
    before = recorded_migrations(scratch_url)
    new = migrations_copy / f"{next_version(migrations_copy):04d}_added_later.sql"
    new.write_text(
        "CREATE TABLE added_later_probe (id integer PRIMARY KEY);\n"
        "COMMENT ON TABLE added_later_probe IS 'test';\n"
        "COMMENT ON COLUMN added_later_probe.id IS 'test';\n"
    )

    proc = init_db(scratch_url)
    assert proc.returncode == 0, proc.stderr
    applied = [line for line in proc.stdout.splitlines() if line.startswith("applied ")]
    assert applied == [f"applied {new.name}"]
    after = recorded_migrations(scratch_url)
    assert after[:-1] == before  # the old rows, applied_at included, are untouched
    assert after[-1][:3] == (int(new.name[:4]), new.name, sha256(new))
    assert table_exists(scratch_url, "added_later_probe")


@pytest.mark.slow
def test_failing_migration_rolls_back_and_is_not_recorded(scratch_url, migrations_copy):
    assert init_db(scratch_url).returncode == 0
    before = recorded_migrations(scratch_url)
    broken = migrations_copy / f"{next_version(migrations_copy):04d}_broken.sql"
    broken.write_text("CREATE TABLE broken_probe (id integer);\nSELECT 1 / 0;\n")

    one_error_line(
        init_db(scratch_url), broken.name, code=4
    )  # a migration that fails is a schema problem (4), rolled back
    assert recorded_migrations(scratch_url) == before
    assert not table_exists(scratch_url, "broken_probe")

    # Never recorded, so fixing it is not "editing an applied migration".
    broken.write_text("CREATE TABLE broken_probe (id integer);\n")
    proc = init_db(scratch_url)
    assert proc.returncode == 0, proc.stderr
    assert f"applied {broken.name}" in proc.stdout
    assert table_exists(scratch_url, "broken_probe")


def test_badly_named_migration_file_is_refused(scratch_url, migrations_copy):
    (migrations_copy / "7_no_padding.sql").write_text("SELECT 1;\n")
    one_error_line(init_db(scratch_url), "7_no_padding.sql", code=4)
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone()[0] is None


# --------------------------------------------------------------------------------------------
# seed-users


# --------------------------------------------------------------------------------------------
# timezone mapping


# --------------------------------------------------------------------------------------------
# connection errors and secrets

# Every command that connects to the database.


# --------------------------------------------------------------------------------------------
# help, version, startup


@pytest.mark.slow
def test_the_schema_version_is_checked_against_the_code(scratch_url, tmp_path, monkeypatch):
    newest = sorted(MIGRATIONS.glob("*.sql"))[-1].name
    older = migrations_folder(tmp_path, "older", without=(newest[:4],))
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(older))
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.delenv("FITPIPE_MIGRATIONS_DIR")
    # Partly migrated: every command but init-db refuses, naming what is missing.
    result = run_fitpipe(scratch_url, "status")
    one_error_line(result, f"lacks migration(s) {newest}", code=4)
    # An applied migration whose file is gone.
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(migrations_folder(tmp_path, "gone", without=("0006",))))
    for command in ("status", "init-db"):
        result = run_fitpipe(scratch_url, command)
        one_error_line(result, "0006_sources.sql was applied", code=4)
    # The database ahead of the code.
    ahead = migrations_folder(tmp_path, "ahead", extra={"0099_future.sql": b"CREATE TABLE future_thing (x int);"})
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(ahead))
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.delenv("FITPIPE_MIGRATIONS_DIR")
    for command in ("status", "init-db"):
        result = run_fitpipe(scratch_url, command)
        assert result.returncode == 4
        one_error_line(result, "at migration 0099_future.sql, newer than this fitpipe", code=4)


def test_a_migration_that_is_not_utf8_is_one_line(scratch_url, tmp_path, monkeypatch):
    broken = migrations_folder(tmp_path, "broken", extra={"0098_latin1.sql": "-- caf\xe9\n".encode("latin-1")})
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(broken))
    result = run_fitpipe(scratch_url, "init-db")
    assert result.returncode == 4
    one_error_line(result, "0098_latin1.sql is not UTF-8", code=4)


@pytest.mark.slow
def test_concurrent_init_db_runs_say_who_applied_the_migrations(scratch_url):
    runs = [popen(scratch_url, "init-db") for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    applied_here = [
        line.split()[1] for stdout, _ in outputs for line in stdout.splitlines() if line.startswith("applied ")
    ]
    assert sorted(applied_here) == sorted(p.name for p in MIGRATIONS.glob("*.sql"))  # each once
    for stdout, _ in outputs:
        # A run that applied nothing says another one did, or counts what it found.
        assert "(0 migrations applied)" not in stdout, stdout
        assert stdout.startswith("applied ") or "another init-db applied" in stdout or "up to date (" in stdout


def test_init_db_is_idempotent(cli, db):
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    applied = db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert applied >= 2
