"""Staged health data never outlives its import: what an import killed with SIGKILL leaves in the
temporary directory is removed by the next import and by the participant's withdrawal
(issue 21, Medium 5)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fitpipe.cli import app

GOOGLE_DATA = "Takeout/Fitbit/Physical Activity_GoogleData"
START = dt.date(2024, 3, 1)


def big_archive(path: Path, days: int = 40) -> Path:
    """Days of heart rate every 5 s: enough that indexing takes a while."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(days):
            day = START + dt.timedelta(days=i)
            midnight = dt.datetime.combine(day, dt.time())
            lines = ["timestamp,beats per minute,data source"] + [
                f"{(midnight + dt.timedelta(seconds=s)):%Y-%m-%dT%H:%M:%S}Z,{60 + s % 40},Pixel Watch 2"
                for s in range(0, 86400, 5)
            ]
            z.writestr(f"{GOOGLE_DATA}/heart_rate_{day}.csv", "\n".join(lines) + "\n")
    return path


def cli(url: str, *args: str):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


def stage_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("fitpipe-takeout-*"))


def killed_import(url: str, archive: Path, user: int, tmp: Path) -> Path:
    """An import killed with SIGKILL once it has staged days; returns the folder it left."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", "import", str(archive), "--user", str(user), "--workers", "1"],
        env={**os.environ, "FITPIPE_DATABASE_URL": url, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(next(folder.glob("*.jsonl"), None) for folder in stage_dirs(tmp)):
            assert process.poll() is None, "the import ended before it staged anything"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    (left,) = stage_dirs(tmp)
    assert list(left.glob("*.jsonl")), "the kill left staged days behind"
    return left


@pytest.fixture
def tmp(tmp_path, monkeypatch) -> Path:
    """A temporary directory of the test's own, for this process and the imports it starts."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.slow
def test_a_killed_imports_stage_goes_at_withdrawal_and_at_the_next_import(database_url, db, tmp_path, tmp):
    for user in (1, 2):
        cli(database_url, "participants", "add", str(user), "--source", "takeout", "--timezone", "UTC",
            "--study-start", str(START))  # fmt: skip
    archive = big_archive(tmp_path / "takeout.zip")

    killed_import(database_url, archive, 1, tmp)
    cli(database_url, "participants", "withdraw", "1", "--delete-data", "--yes")
    assert stage_dirs(tmp) == []

    left = killed_import(database_url, archive, 2, tmp)
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w") as z:
        z.writestr(f"{GOOGLE_DATA}/heart_rate_{START}.csv", "timestamp,beats per minute\n2024-03-01T08:00:00Z,61\n")
    cli(database_url, "participants", "add", "3", "--source", "takeout", "--timezone", "UTC",
        "--study-start", str(START))  # fmt: skip
    cli(database_url, "import", str(small), "--user", "3", "--workers", "1")
    assert not left.exists()
    assert list(tmp.iterdir()) == []  # the finished import removed its own stage too
    # No run record names the withdrawn participant's archive.
    assert db.execute("SELECT count(*) FROM ingest_runs WHERE arguments::text LIKE '%takeout.zip%'").fetchone() == (0,)
