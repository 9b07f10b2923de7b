"""The database URL: malformed, empty or unreachable is one line with its exit code, and its
password never appears in output, help or errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest
from psycopg.conninfo import conninfo_to_dict

from fitpipe.config import mask_secrets
from support.cli import one_error_line, run_fitpipe
from support.db import ADMIN_URL

SECRET = "s3cr3t-pw"

DB_COMMANDS = [
    ("init-db",),
    ("seed-users", "--count", "1"),
    ("status",),
    ("ingest", "--days", "1"),
    ("backfill", "--start", "2024-01-01", "--end", "2024-01-02"),
]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    "url",
    ["not a url", "postgresql://fitpipe:fitpipe@127.0.0.1:notaport/fitpipe", "postgresql://[::1"],
    ids=["words", "bad-port", "bad-host"],
)
def test_malformed_url_is_one_line(url, command):
    proc = run_fitpipe(url, *command)
    one_error_line(proc, "database URL", code=2)


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: c[0])
def test_unreachable_server_is_one_line(command):
    url = f"postgresql://fitpipe:fitpipe@127.0.0.1:{closed_port()}/fitpipe"
    proc = run_fitpipe(url, *command)
    line = one_error_line(proc, "cannot connect", code=3)
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
    assert proc.returncode == 3, proc.stderr
    assert SECRET not in output
    assert "***" in output
    one_error_line(proc, code=3)


def test_password_not_in_help():
    proc = run_fitpipe(f"postgresql://fitpipe:{SECRET}@127.0.0.1:5432/fitpipe", "--help")
    assert proc.returncode == 0
    assert "FITPIPE_DATABASE_URL" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("password", [f"{SECRET}%zz", f"{SECRET} x"], ids=["bad-percent", "space"])
def test_password_not_echoed_by_parse_errors(password):
    proc = run_fitpipe(f"postgresql://fitpipe:{password}@127.0.0.1:{closed_port()}/fitpipe", "init-db")
    one_error_line(proc, "cannot be parsed", code=2)
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


def test_a_raw_at_sign_in_the_password_never_shows(monkeypatch):
    result = run_fitpipe("postgresql://fitpipe:S3cret@Passw0rd@127.0.0.1:5432/nowhere", "status")
    assert result.returncode == 3
    line = one_error_line(result, code=3)
    assert "S3cret" not in line and "Passw0rd" not in line and "***" in line


def test_an_empty_database_url_is_an_error(monkeypatch):
    result = run_fitpipe("", "status")  # FITPIPE_DATABASE_URL set, but empty
    assert result.returncode == 2
    assert "FITPIPE_DATABASE_URL is set but empty" in one_error_line(result, code=2)
    monkeypatch.delenv("FITPIPE_DATABASE_URL", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", "--database-url", "", "status"], capture_output=True, text=True
    )
    one_error_line(result, "--database-url is empty", code=2)


def test_unreachable_database_is_one_stderr_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://fitpipe:hunter2secret@127.0.0.1:{port}/fitpipe"
    for args in (("status",), ("ingest", "--days", "1", "--no-refresh")):
        proc = run_fitpipe(url, *args, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert str(port) in lines[0] and "hunter2secret" not in proc.stderr + proc.stdout
