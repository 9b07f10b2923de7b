"""The foundation: migrations, seed-users, timezone mapping, error handling, secrets, help, startup.

Everything that touches a database runs against the real TimescaleDB of tests/conftest.py; tests
that need a database of their own (fresh migrations) create one and drop it afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import click
import numpy as np
import psycopg
import pytest
import typer
from psycopg.conninfo import conninfo_to_dict
from typer.testing import CliRunner

from conftest import ADMIN_URL, ROOT, run_fitpipe, url_for
from fitpipe import __version__
from fitpipe.cli import app
from fitpipe.config import mask_secrets
from fitpipe.timezones import local_instant, local_to_utc

MIGRATIONS = ROOT / "migrations"
NY = "America/New_York"
SECRET = "s3cr3t-pw"


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def fresh_url():
    """A brand-new empty database (no init-db yet), dropped after the test."""
    name = f"fitpipe_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def assert_one_line_error(proc: subprocess.CompletedProcess, *, contains: str | None = None) -> str:
    """Non-zero exit, exactly one non-empty line on stderr, no traceback anywhere."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got: {proc.stderr!r}"
    if contains is not None:
        assert contains in lines[0], lines[0]
    return lines[0]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_rows(db) -> list[tuple]:
    """(user_id, timezone, study_start, seed, wear_gaps, source); the synthetic source's seed and
    wear_gaps live in participant_sources.settings."""
    return db.execute(
        "SELECT u.user_id, u.timezone, u.study_start, (s.settings->>'seed')::bigint, (s.settings->'wear_gaps')::boolean, "
        "u.source FROM users u LEFT JOIN participant_sources s ON s.user_id = u.user_id AND s.source = u.source "
        "ORDER BY u.user_id"
    ).fetchall()


# --------------------------------------------------------------------------------------------
# migrations


def test_init_db_on_a_brand_new_database(fresh_url, real_migrations):
    proc = init_db(fresh_url)
    assert proc.returncode == 0, proc.stderr
    files = migration_files(real_migrations)
    for path in files:
        assert f"applied {path.name}" in proc.stdout
    assert f"database is at migration {files[-1].name}" in proc.stdout

    recorded = recorded_migrations(fresh_url)
    assert [(v, n, c) for v, n, c, _ in recorded] == [(int(p.name[:4]), p.name, sha256(p)) for p in files]
    with psycopg.connect(fresh_url) as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert ext is not None, "timescaledb extension was not created"
        for table in ("users", "ingest_runs", "ingested_days", "quarantine", "rollup_invalidations", "heart_rate"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None, table


def test_init_db_again_changes_nothing(fresh_url, real_migrations):
    assert init_db(fresh_url).returncode == 0
    before_rows, before_schema = recorded_migrations(fresh_url), schema_fingerprint(fresh_url)

    proc = init_db(fresh_url)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout
    assert "applied " not in proc.stdout
    assert f"({len(before_rows)} migrations applied)" in proc.stdout
    assert recorded_migrations(fresh_url) == before_rows  # applied_at included: nothing re-run
    assert schema_fingerprint(fresh_url) == before_schema


def test_tampered_migration_is_refused(fresh_url, migrations_copy):
    assert init_db(fresh_url).returncode == 0
    before = recorded_migrations(fresh_url)
    target = migration_files(migrations_copy)[0]
    original = target.read_bytes()
    target.write_bytes(original + b"\n-- an innocent-looking edit\n")
    # A pending new file must not be applied either: the check runs before anything is applied.
    pending = migrations_copy / f"{next_version(migrations_copy):04d}_after_tamper.sql"
    pending.write_text("CREATE TABLE after_tamper_probe (id integer);\n")

    proc = init_db(fresh_url)
    line = assert_one_line_error(proc, contains=target.name)
    assert "edited" in line
    assert recorded_migrations(fresh_url) == before
    assert not table_exists(fresh_url, "after_tamper_probe")

    # Restoring the file makes init-db work again.
    target.write_bytes(original)
    pending.unlink()
    proc = init_db(fresh_url)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout


def test_new_migration_is_applied_alone(fresh_url, migrations_copy):
    assert init_db(fresh_url).returncode == 0
    before = recorded_migrations(fresh_url)
    new = migrations_copy / f"{next_version(migrations_copy):04d}_added_later.sql"
    new.write_text(
        "CREATE TABLE added_later_probe (id integer PRIMARY KEY);\n"
        "COMMENT ON TABLE added_later_probe IS 'test';\n"
        "COMMENT ON COLUMN added_later_probe.id IS 'test';\n"
    )

    proc = init_db(fresh_url)
    assert proc.returncode == 0, proc.stderr
    applied = [line for line in proc.stdout.splitlines() if line.startswith("applied ")]
    assert applied == [f"applied {new.name}"]
    after = recorded_migrations(fresh_url)
    assert after[:-1] == before  # the old rows, applied_at included, are untouched
    assert after[-1][:3] == (int(new.name[:4]), new.name, sha256(new))
    assert table_exists(fresh_url, "added_later_probe")


def test_failing_migration_rolls_back_and_is_not_recorded(fresh_url, migrations_copy):
    assert init_db(fresh_url).returncode == 0
    before = recorded_migrations(fresh_url)
    broken = migrations_copy / f"{next_version(migrations_copy):04d}_broken.sql"
    broken.write_text("CREATE TABLE broken_probe (id integer);\nSELECT 1 / 0;\n")

    assert_one_line_error(init_db(fresh_url), contains=broken.name)
    assert recorded_migrations(fresh_url) == before
    assert not table_exists(fresh_url, "broken_probe")

    # Never recorded, so fixing it is not "editing an applied migration".
    broken.write_text("CREATE TABLE broken_probe (id integer);\n")
    proc = init_db(fresh_url)
    assert proc.returncode == 0, proc.stderr
    assert f"applied {broken.name}" in proc.stdout
    assert table_exists(fresh_url, "broken_probe")


def test_badly_named_migration_file_is_refused(fresh_url, migrations_copy):
    (migrations_copy / "7_no_padding.sql").write_text("SELECT 1;\n")
    assert_one_line_error(init_db(fresh_url), contains="7_no_padding.sql")
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone()[0] is None


# --------------------------------------------------------------------------------------------
# seed-users


def test_seed_users_is_idempotent(cli, db):
    first = cli("seed-users", "--count", "3")
    assert first.exit_code == 0, first.output
    assert "3 created, 0 already there" in first.output
    rows = user_rows(db)
    assert [r[0] for r in rows] == [1, 2, 3]

    again = cli("seed-users", "--count", "3")
    assert again.exit_code == 0, again.output
    assert "0 created, 3 already there" in again.output
    assert user_rows(db) == rows


def test_seed_users_defaults(cli, db):
    result = cli("seed-users", "--count", "2")
    assert result.exit_code == 0, result.output
    for _, timezone, study_start, _, wear_gaps, source in user_rows(db):
        assert timezone == "UTC"
        assert study_start == dt.date(2024, 1, 1)
        assert wear_gaps is True
        assert source == "synthetic"


def test_seed_users_grows_and_honours_options_for_new_users_only(cli, db):
    assert cli("seed-users", "--count", "3").exit_code == 0
    old = user_rows(db)

    result = cli("seed-users", "--count", "5", "--timezone", NY, "--start-date", "2024-03-01", "--no-wear-gaps")
    assert result.exit_code == 0, result.output
    assert "2 created, 3 already there" in result.output
    rows = user_rows(db)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[:3] == old  # existing participants kept as they were
    for _, timezone, study_start, _, wear_gaps, _ in rows[3:]:
        assert (timezone, study_start, wear_gaps) == (NY, dt.date(2024, 3, 1), False)
    seeds = [r[3] for r in rows]
    assert len(set(seeds)) == 5, seeds


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "not a zone", "../../etc/passwd", ""])
def test_seed_users_unknown_timezone(database_url, db, zone):
    proc = run_fitpipe(database_url, "seed-users", "--count", "2", "--timezone", zone)
    line = assert_one_line_error(proc, contains="timezone")
    assert proc.returncode == 2, line
    assert user_rows(db) == []


@pytest.mark.parametrize("value", ["2024-02-30", "yesterday", "01/03/2024"])
def test_seed_users_bad_start_date(database_url, db, value):
    proc = run_fitpipe(database_url, "seed-users", "--count", "2", "--start-date", value)
    assert_one_line_error(proc, contains="--start-date")
    assert user_rows(db) == []


def test_seed_users_needs_init_db(fresh_url):
    proc = run_fitpipe(fresh_url, "seed-users", "--count", "1")
    assert_one_line_error(proc, contains="init-db")


# --------------------------------------------------------------------------------------------
# timezone mapping


def local_seconds(day: str, hours: int = 24) -> np.ndarray:
    start = np.datetime64(f"{day}T00:00:00", "s")
    return np.arange(start, start + np.timedelta64(hours * 3600, "s"), np.timedelta64(1, "s")).astype("datetime64[us]")


def local(*values: str) -> np.ndarray:
    return np.array(values, dtype="datetime64[us]")


def utc(value: str) -> np.datetime64:
    return np.datetime64(value, "us")


def test_spring_forward_gap_is_nat():
    out = local_to_utc(
        local(
            "2024-03-10T01:59:59",
            "2024-03-10T02:00:00",
            "2024-03-10T02:30:00",
            "2024-03-10T02:59:59",
            "2024-03-10T03:00:00",
            "2024-03-10T03:30:00",
        ),
        NY,
    )
    assert out.dtype == np.dtype("datetime64[us]")
    assert out[0] == utc("2024-03-10T06:59:59")  # EST
    assert np.isnat(out[1:4]).all()
    assert out[4] == utc("2024-03-10T07:00:00")  # EDT
    assert out[5] == utc("2024-03-10T07:30:00")


def test_spring_forward_full_day():
    values = local_seconds("2024-03-10")
    out = local_to_utc(values, NY)
    assert len(out) == 86_400
    nat = np.isnat(out)
    assert nat.sum() == 3_600
    # Exactly the 02:xx local hour is missing.
    hours = values.astype("datetime64[h]") - np.datetime64("2024-03-10T00", "h")
    assert (nat == (hours == np.timedelta64(2, "h"))).all()
    real = out[~nat]
    assert len(np.unique(real)) == 82_800  # no NaT-hour value collides with a real 03:xx time
    assert (np.diff(real) > np.timedelta64(0)).all()
    assert real[0] == utc("2024-03-10T05:00:00") and real[-1] == utc("2024-03-11T03:59:59")


def test_fall_back_ambiguous_first_then_second_occurrence():
    out = local_to_utc(
        local(
            "2024-11-03T00:10:00",
            "2024-11-03T01:30:00",
            "2024-11-03T01:59:59",
            "2024-11-03T01:30:00",
            "2024-11-03T02:00:00",
        ),
        NY,
    )
    assert out[0] == utc("2024-11-03T04:10:00")
    assert out[1] == utc("2024-11-03T05:30:00")  # first 01:30 -> EDT (UTC-4)
    assert out[2] == utc("2024-11-03T05:59:59")
    assert out[3] == utc("2024-11-03T06:30:00")  # the repeated 01:30 -> EST (UTC-5)
    assert out[4] == utc("2024-11-03T07:00:00")
    assert not np.isnat(out).any()


def test_fall_back_full_day():
    out = local_to_utc(local_seconds("2024-11-03"), NY)
    assert len(out) == 86_400
    assert not np.isnat(out).any()
    assert len(np.unique(out)) == 86_400
    assert out[0] == utc("2024-11-03T04:00:00") and out[-1] == utc("2024-11-04T04:59:59")


def test_fall_back_device_reporting_the_repeated_hour_keeps_both():
    values = np.concatenate([local_seconds("2024-11-03", 2), local_seconds("2024-11-03")[3600:]])
    assert len(values) == 90_000
    out = local_to_utc(values, NY)
    assert not np.isnat(out).any()
    assert len(np.unique(out)) == 90_000
    assert (np.diff(out) == np.timedelta64(1, "s")).all()  # one continuous 25-hour day


def test_utc_is_identity():
    values = local_seconds("2024-03-10", 3)
    assert (local_to_utc(values, "UTC") == values).all()


def test_local_instant_day_lengths():
    def length(day: dt.date) -> dt.timedelta:
        return local_instant(day + dt.timedelta(days=1), 0, NY) - local_instant(day, 0, NY)

    assert length(dt.date(2024, 3, 10)) == dt.timedelta(hours=23)
    assert length(dt.date(2024, 11, 3)) == dt.timedelta(hours=25)
    assert length(dt.date(2024, 6, 1)) == dt.timedelta(hours=24)
    midnight = local_instant(dt.date(2024, 3, 10), 0, NY)
    assert midnight == dt.datetime(2024, 3, 10, 5, tzinfo=dt.UTC)
    assert midnight.utcoffset() == dt.timedelta(0)
    # An hour inside the gap is shifted forward to the first instant that exists.
    assert local_instant(dt.date(2024, 3, 10), 2, NY) == dt.datetime(2024, 3, 10, 7, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------------
# connection errors and secrets

# Every command that connects to the database.
DB_COMMANDS = [
    ("init-db",),
    ("seed-users", "--count", "1"),
    ("status",),
    ("ingest", "--days", "1"),
    ("backfill", "--start", "2024-01-01", "--end", "2024-01-02"),
]


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    "url",
    ["not a url", "postgresql://fitpipe:fitpipe@127.0.0.1:notaport/fitpipe", "postgresql://[::1"],
    ids=["words", "bad-port", "bad-host"],
)
def test_malformed_url_is_one_line(url, command):
    proc = run_fitpipe(url, *command)
    assert_one_line_error(proc, contains="error:")


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: c[0])
def test_unreachable_server_is_one_line(command):
    url = f"postgresql://fitpipe:fitpipe@127.0.0.1:{closed_port()}/fitpipe"
    proc = run_fitpipe(url, *command)
    line = assert_one_line_error(proc, contains="cannot connect")
    assert proc.returncode == 3, line


@pytest.fixture(params=["closed-port", "wrong-database", "dsn-closed-port"])
def secret_url(request):
    if request.param == "closed-port":
        return f"postgresql://fitpipe:{SECRET}@127.0.0.1:{closed_port()}/fitpipe"
    if request.param == "wrong-database":
        # The real server, a database that does not exist (and a password that is not the one).
        info = conninfo_to_dict(ADMIN_URL)
        host, port, user = info.get("host", "127.0.0.1"), info.get("port", "5432"), info.get("user", "fitpipe")
        return f"postgresql://{user}:{SECRET}@{host}:{port}/no_such_db_{uuid.uuid4().hex[:8]}"
    return f"host=127.0.0.1 port={closed_port()} user=fitpipe password={SECRET} dbname=fitpipe"


@pytest.mark.parametrize("how", ["env", "flag"])
def test_password_never_printed(secret_url, how):
    assert SECRET in secret_url
    args = ("--database-url", secret_url) if how == "flag" else ()
    proc = run_fitpipe(secret_url, *args, "init-db")
    check_masked(proc)


@pytest.mark.parametrize("command", DB_COMMANDS[1:], ids=lambda c: c[0])
def test_password_never_printed_by_any_command(command):
    proc = run_fitpipe(f"postgresql://fitpipe:{SECRET}@127.0.0.1:{closed_port()}/fitpipe", *command)
    check_masked(proc)


def check_masked(proc: subprocess.CompletedProcess) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert SECRET not in output
    assert "***" in output
    assert_one_line_error(proc)


def test_password_not_in_help():
    proc = run_fitpipe(f"postgresql://fitpipe:{SECRET}@127.0.0.1:5432/fitpipe", "--help")
    assert proc.returncode == 0
    assert "FITPIPE_DATABASE_URL" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("password", [f"{SECRET}%zz", f"{SECRET} x"], ids=["bad-percent", "space"])
def test_password_not_echoed_by_parse_errors(password):
    proc = run_fitpipe(f"postgresql://fitpipe:{password}@127.0.0.1:{closed_port()}/fitpipe", "init-db")
    assert proc.returncode != 0
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "postgresql://fitpipe:s3cr3t@db.example.org:5432/fitpipe",
            "postgresql://fitpipe:***@db.example.org:5432/fitpipe",
        ),
        ("postgres://u:p:a/s;s@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql+psycopg://u:pw@h1:5432,h2:5433/db", "postgresql+psycopg://u:***@h1:5432,h2:5433/db"),
        ("cannot connect to postgresql://u:pw@h/db: refused", "cannot connect to postgresql://u:***@h/db: refused"),
        (
            "a postgresql://u:one@h/db and b postgresql://v:two@h/db",
            "a postgresql://u:***@h/db and b postgresql://v:***@h/db",
        ),
        ("postgresql://:pw@h/db", "postgresql://:***@h/db"),
        ("host=h user=u password=s3cr3t dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='two words' dbname=d", "host=h password=*** dbname=d"),
        ("host=h PASSWORD = s3cr3t dbname=d", "host=h PASSWORD = *** dbname=d"),
        ("postgresql://u@h/db?password=s3cr3t", "postgresql://u@h/db?password=***"),
        # Nothing secret: unchanged.
        ("postgresql://fitpipe@127.0.0.1:5432/fitpipe", "postgresql://fitpipe@127.0.0.1:5432/fitpipe"),
        ("postgresql://127.0.0.1:5432/fitpipe", "postgresql://127.0.0.1:5432/fitpipe"),
        ("host=h user=u dbname=d", "host=h user=u dbname=d"),
        ("plain text: no url here", "plain text: no url here"),
    ],
)
def test_mask_secrets(text, expected):
    masked = mask_secrets(text)
    assert masked == expected
    assert mask_secrets(masked) == masked  # idempotent


# --------------------------------------------------------------------------------------------
# help, version, startup


def command_tree() -> list[tuple[tuple[str, ...], click.Command]]:
    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, path + (name,))

    walk(typer.main.get_command(app), ("fitpipe",))
    return found


COMMANDS = command_tree()


def test_command_tree_is_complete():
    paths = {" ".join(p) for p, _ in COMMANDS}
    for expected in (
        "fitpipe init-db",
        "fitpipe seed-users",
        "fitpipe ingest",
        "fitpipe backfill",
        "fitpipe status",
        "fitpipe aggregate",
        "fitpipe aggregate refresh",
    ):
        assert expected in paths


def parse_example(root: click.Command, example: str) -> None:
    """Parse (never run) each `fitpipe ...` command of an example line; bad flags raise."""
    for part in example.split("&&"):
        args = shlex.split(part)
        assert args[0] == "fitpipe", part
        args = args[1:]
        command = root
        while isinstance(command, click.Group) and args and args[0] in command.commands:
            command = command.commands[args.pop(0)]
        if isinstance(command, click.Group):
            assert not args, f"unknown subcommand in {part!r}"
            continue
        command.make_context(command.name, args)


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_ending_with_an_example(path, command):
    text = (command.help or "").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2, f"{' '.join(path)} has no help text besides an example: {text!r}"
    assert not lines[0].startswith("Example"), lines[0]
    last = lines[-1]
    assert last.startswith("Example: fitpipe"), f"{' '.join(path)}: last help line is {last!r}"
    example = last.removeprefix("Example:").strip()
    if len(path) > 1:
        assert example.startswith(" ".join(path)), f"example of {' '.join(path)} shows another command: {example}"
    parse_example(typer.main.get_command(app), example)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{' '.join(path)} option {param.opts} has no help"

    # And the rendered --help shows it.
    proc_args = [*path[1:], "--help"]
    result = CliRunner().invoke(app, proc_args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"Example:\s+fitpipe", result.output), result.output


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"fitpipe {__version__}"
    proc = subprocess.run([sys.executable, "-m", "fitpipe.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fitpipe {__version__}"


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from fitpipe.cli import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY=' + ','.join(m for m in ('wearipedia', 'pandas', 'numpy') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout  # help really ran
    marker = [line for line in proc.stdout.splitlines() if line.startswith("HEAVY=")]
    assert marker == ["HEAVY="], f"fitpipe --help imported: {marker}"


def test_compose_file_matches_the_default_url():
    yaml = pytest.importorskip("yaml")
    from fitpipe.config import DEFAULT_DATABASE_URL

    compose = yaml.safe_load((ROOT / "docker-compose.timescale.yml").read_text())
    service = compose["services"]["timescaledb"]
    image, _, tag = service["image"].partition(":")
    assert image == "timescale/timescaledb" and tag and tag != "latest", service["image"]
    env = service["environment"]
    info = conninfo_to_dict(DEFAULT_DATABASE_URL)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        info["user"],
        info["password"],
        info["dbname"],
    )
    assert f"{info['host']}:{info['port']}:5432" in service["ports"]
    assert "pg_isready" in str(service["healthcheck"]["test"])
    volume = service["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
