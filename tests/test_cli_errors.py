"""Issue 13: the smaller findings of the adversarial probe, each against the real CLI and database.

Every bad input must give one line on stderr, a non-zero exit and no traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from conftest import ADMIN_URL, ROOT, fitpipe, one_error_line, one_participant_store, popen, run_fitpipe, url_for

MIGRATIONS = ROOT / "migrations"


@pytest.fixture(scope="module")
def seeded(database_url):
    return one_participant_store(database_url)


# --- finding 4: create-reader must not take over a role fitpipe did not create ----------------


def can_log_in(url: str, login: str, password: str) -> bool:
    try:
        with psycopg.connect(url.replace("fitpipe:fitpipe@", f"{login}:{password}@", 1)):
            return True
    except psycopg.OperationalError:
        return False


def test_create_reader_refuses_an_existing_role_with_write_grants(seeded, monkeypatch):
    url = seeded
    writer = f"writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {writer} LOGIN PASSWORD 'writer-password-1'")
        conn.execute(f"GRANT INSERT, UPDATE ON users TO {writer}")
    try:
        monkeypatch.setenv("FITPIPE_READER_PASSWORD", "hijacked-password")
        result = run_fitpipe(url, "create-reader", writer)
        assert result.returncode == 2
        line = one_error_line(result)
        assert "not created by fitpipe" in line and "users" in line
        assert "hijacked-password" not in result.stderr + result.stdout
        assert can_log_in(url, writer, "writer-password-1"), "the role's password was reset"
        assert not can_log_in(url, writer, "hijacked-password")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {writer}")
            conn.execute(f"DROP ROLE {writer}")


def test_create_reader_adopts_a_pure_reader_and_renews_its_own(seeded, monkeypatch):
    url = seeded
    plain, own = f"plain_{uuid.uuid4().hex[:8]}", f"own_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {plain} LOGIN PASSWORD 'plain-password-1'")  # e.g. made by an older fitpipe
        conn.execute(f"GRANT fitpipe_readonly TO {plain}")
    try:
        monkeypatch.setenv("FITPIPE_READER_PASSWORD", "renewed-password")
        for login, verb in ((plain, "updated"), (own, "created"), (own, "updated")):
            result = run_fitpipe(url, "create-reader", login)
            assert result.returncode == 0, result.stderr
            assert f"{verb} read-only login {login}" in result.stdout
            assert can_log_in(url, login, "renewed-password")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for login in (plain, own):
                conn.execute(f"DROP ROLE IF EXISTS {login}")


# --- findings 6, 11 (migration not UTF-8), 17 (init-db race, reset under load) --------------


@pytest.fixture
def scratch_url():
    name = f"fitpipe_h13_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield url_for(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrations_copy(tmp_path, name: str, *, without: tuple[str, ...] = (), extra: dict[str, bytes] | None = None):
    folder = tmp_path / name
    folder.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if not path.name.startswith(without):
            shutil.copy(path, folder / path.name)
    for file_name, content in (extra or {}).items():
        (folder / file_name).write_bytes(content)
    return folder


def test_the_schema_version_is_checked_against_the_code(scratch_url, tmp_path, monkeypatch):
    newest = sorted(MIGRATIONS.glob("*.sql"))[-1].name
    older = migrations_copy(tmp_path, "older", without=(newest[:4],))
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(older))
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.delenv("FITPIPE_MIGRATIONS_DIR")
    # Partly migrated: every command but init-db refuses, naming what is missing.
    result = run_fitpipe(scratch_url, "status")
    assert result.returncode == 4 and f"lacks migration(s) {newest}" in one_error_line(result)
    # An applied migration whose file is gone.
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(migrations_copy(tmp_path, "gone", without=("0006",))))
    for command in ("status", "init-db"):
        result = run_fitpipe(scratch_url, command)
        assert result.returncode == 4 and "0006_sources.sql was applied" in one_error_line(result)
    # The database ahead of the code.
    ahead = migrations_copy(tmp_path, "ahead", extra={"0099_future.sql": b"CREATE TABLE future_thing (x int);"})
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(ahead))
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.delenv("FITPIPE_MIGRATIONS_DIR")
    for command in ("status", "init-db"):
        result = run_fitpipe(scratch_url, command)
        assert result.returncode == 4
        assert "at migration 0099_future.sql, newer than this fitpipe" in one_error_line(result)


def test_a_migration_that_is_not_utf8_is_one_line(scratch_url, tmp_path, monkeypatch):
    broken = migrations_copy(tmp_path, "broken", extra={"0098_latin1.sql": "-- caf\xe9\n".encode("latin-1")})
    monkeypatch.setenv("FITPIPE_MIGRATIONS_DIR", str(broken))
    result = run_fitpipe(scratch_url, "init-db")
    assert result.returncode == 4
    assert "0098_latin1.sql is not UTF-8" in one_error_line(result)


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


def test_reset_while_another_session_uses_the_tables_says_so(scratch_url, monkeypatch):
    assert run_fitpipe(scratch_url, "init-db").returncode == 0
    monkeypatch.setenv("FITPIPE_LOCK_TIMEOUT", "1")
    with psycopg.connect(scratch_url) as reader:  # an open transaction that read a table, as an ingest has
        reader.execute("SELECT count(*) FROM users").fetchone()
        result = run_fitpipe(scratch_url, "reset", "--yes", timeout=60)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "another session is using fitpipe's tables" in line and "lost the database connection" not in line
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT to_regclass('users') IS NOT NULL").fetchone()[0], "reset dropped part of it"


# --- findings 10 and 18: database URLs ----------------------------------------------------------


def test_a_raw_at_sign_in_the_password_never_shows(monkeypatch):
    result = run_fitpipe("postgresql://fitpipe:S3cret@Passw0rd@127.0.0.1:5432/nowhere", "status")
    assert result.returncode == 3
    line = one_error_line(result)
    assert "S3cret" not in line and "Passw0rd" not in line and "***" in line


def test_an_empty_database_url_is_an_error(monkeypatch):
    result = run_fitpipe("", "status")  # FITPIPE_DATABASE_URL set, but empty
    assert result.returncode == 2
    assert "FITPIPE_DATABASE_URL is set but empty" in one_error_line(result)
    monkeypatch.delenv("FITPIPE_DATABASE_URL", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", "--database-url", "", "status"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "--database-url is empty" in one_error_line(result)


# --- findings 11, 12, 15, 16, 9: bad input is one line ----------------------------------------


def test_a_huge_days_count_is_not_a_traceback(seeded, monkeypatch):
    # The reshaped planner no longer adds --days to a date (the OverflowError): it means "every
    # new day up to yesterday".
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-02")
    result = run_fitpipe(seeded, "ingest", "--days", "3000000", "--workers", "1", "--no-refresh", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("zone", ["Europe/" + "x" * 100_000, "localtime", "posixrules", "Factory"])
def test_timezones_that_are_not_a_place_are_refused(seeded, zone):
    result = run_fitpipe(
        seeded, "participants", "add", "90", "--source", "synthetic", "--timezone", zone, "--study-start", "2024-01-01"
    )
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("error: unknown timezone") and len(line) < 200 and "site-packages" not in line


def test_seed_users_count_is_bounded(seeded):
    started = time.monotonic()
    result = run_fitpipe(seeded, "seed-users", "--count", "2000000000", timeout=60)
    assert result.returncode == 2 and "--count must be between 1 and" in one_error_line(result)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--min-wear", "nan"], "--min-wear"),
        (["--min-wear", "-0.1"], "--min-wear"),
        (["--max-silence-hours", "-1"], "--max-silence-hours"),
        (["--max-silence-hours", "inf"], "--max-silence-hours"),
        (["--max-silence-hours", "1e308"], "--max-silence-hours"),
        (["--max-silence-hours", "nan"], "--max-silence-hours"),
        (["--min-sleep-minutes", "-5"], "--min-sleep-minutes"),
        (["--min-sleep-minutes", "100000"], "--min-sleep-minutes"),
        (["--json", "--csv"], "exclude each other"),
    ],
)
def test_adherence_thresholds_are_checked(seeded, flags, message):
    result = run_fitpipe(seeded, "adherence", "--as-of", "2024-01-02", *flags)
    assert result.returncode == 2, result.stdout
    assert message in one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [
        ("participants", "add", "91", "--source", "synthetic", "--timezone", "UTC", "--study-start", "1969-12-31"),
        ("seed-users", "--count", "92", "--start-date", "1960-01-01"),
        ("participants", "set-timezone", "1", "UTC", "--from", "1969-07-20"),
    ],
)
def test_study_days_before_1970_are_refused(seeded, command):
    # The hourly rollups bucket by the epoch (finding 9); days before it are refused where they enter.
    result = run_fitpipe(seeded, *command)
    assert result.returncode == 2
    assert "fitpipe keeps study days from 1970 on" in one_error_line(result)
    with psycopg.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


# --- finding 8: a night metric exports the nights its days own -------------------------------


def test_night_metrics_export_the_night_each_day_owns(seeded, tmp_path):
    fitpipe(seeded, "backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--workers", "1")
    with psycopg.connect(seeded) as conn:
        # A night with SpO2 between two nights with SpO2, so a calendar-day cut would take halves.
        day, owned = conn.execute(
            "SELECT day, (rows_by_metric ->> 'spo2')::int FROM ingested_days d WHERE user_id = 1 "
            "AND (rows_by_metric ->> 'spo2')::int > 0 AND day > '2024-01-01' AND day < '2024-01-05' "
            "ORDER BY day LIMIT 1"
        ).fetchone()
    out = tmp_path / "spo2.csv"
    result = fitpipe(
        seeded,
        "export",
        "--metric",
        "spo2",
        "--resolution",
        "raw",
        "--start",
        str(day),
        "--end",
        str(day),
        "-o",
        str(out),
    )
    rows = list(csv.DictReader(out.open()))
    assert owned and len(rows) == owned, (len(rows), owned)
    times = [dt.datetime.fromisoformat(r["ts"]) for r in rows]
    noon = dt.datetime.combine(day, dt.time(12), dt.UTC)  # the participant is in UTC
    night = (noon, noon + dt.timedelta(days=1))
    assert all(night[0] <= t < night[1] for t in times)
    assert f"wrote {owned:,} rows" in result.stderr
