"""A small real store for the `fitpipe serve` tests, built with the real CLI: two synthetic
participants across the 2024 spring-forward in New York (a 23-hour day), one in Berlin whose
last day failed with a reason, one enrolled without data, and a display name that is markup."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import socket
import subprocess
import sys
import time

import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.cli import app

FIRST_DAY = dt.date(2024, 3, 8)
DST_DAY = dt.date(2024, 3, 10)  # America/New_York springs forward: 23 hours
LAST_DAY = dt.date(2024, 3, 11)
FAILED_DAY = LAST_DAY
OUTAGE = "synthetic outage at the provider"
HOSTILE_NAME = "<script>alert('x')</script> & co"


def fitpipe(url: str, *args: str, code: int = 0):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def build_store(url: str) -> str:
    """Empty the database and load the cohort described above; returns the URL."""
    from fitpipe.sources.synthetic.source import SyntheticSource

    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        ).fetchone()[0]
        conn.execute(f"TRUNCATE {tables} CASCADE")
    start = FIRST_DAY.isoformat()
    enrolled = (("1", "America/New_York", "--name", HOSTILE_NAME), ("2", "Europe/Berlin"), ("3", "UTC"))
    for user_id, zone, *name in enrolled:
        fitpipe(url, "participants", "add", user_id, "--source", "synthetic", "--timezone", zone,
                "--study-start", start, *name)  # fmt: skip
    fitpipe(url, "backfill", "--start", start, "--end", LAST_DAY.isoformat(), "--user", "1", "--workers", "1")
    fitpipe(url, "backfill", "--start", start, "--end", (FAILED_DAY - dt.timedelta(days=1)).isoformat(),
            "--user", "2", "--workers", "1")  # fmt: skip
    original = SyntheticSource.fetch_day

    def outage(self, participant, day, fetch):
        if day == FAILED_DAY:
            raise RuntimeError(OUTAGE)
        return original(self, participant, day, fetch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SyntheticSource, "fetch_day", outage)
        fitpipe(url, "backfill", "--start", FAILED_DAY.isoformat(), "--end", FAILED_DAY.isoformat(), "--user", "2",
                "--workers", "1", code=5)  # fmt: skip
    return url


def export_csv(url: str, metric: str, user: int, start, end, *extra: str) -> tuple[str, str]:
    """(CSV text, stderr) of the real `fitpipe export --tz local` for one participant."""
    result = fitpipe(url, "export", "--metric", metric, "--user", str(user), "--start", str(start), "--end", str(end),
                     "--tz", "local", *extra)  # fmt: skip
    return result.stdout, result.stderr


def parse_export(text: str) -> dict[str, list[str]]:
    """An export's CSV as its columns, values as the text it holds."""
    rows = list(csv.reader(io.StringIO(text)))
    return {name: [row[i] for row in rows[1:]] for i, name in enumerate(rows[0])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`fitpipe serve` as a user starts it, waiting until it answers."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", "serve", "--port", str(port), *args],
        env={**os.environ, "FITPIPE_DATABASE_URL": url, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/app.css", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("serve did not answer within 60 s")


def stop_server(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr
