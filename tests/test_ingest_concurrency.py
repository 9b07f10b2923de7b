"""Ingest across hosts (docs/scaling.md): runs that share nothing but the database claim
participant-days through it, so an overlapping cohort is loaded exactly once."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import pytest

from support.cli import fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow


def host_run(url: str, users: list[int], workers: int) -> subprocess.Popen:
    """A run as another host would start it: its own process group and session, its own --workers."""
    argv = [
        sys.executable,
        "-m",
        "fitpipe.cli",
        "backfill",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-02",
        "--workers",
        str(workers),
        "--no-refresh",
        *[a for u in users for a in ("--user", str(u))],
    ]
    return subprocess.Popen(
        argv,
        env={**os.environ, "FITPIPE_DATABASE_URL": url, "FITPIPE_TODAY": "2024-01-06"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_two_hosts_with_overlapping_cohorts_load_each_participant_day_once(db, database_url):
    fitpipe(database_url, "seed-users", "--count", "4", "--start-date", "2024-01-01")
    first, second = [1, 2, 3], [2, 3, 4]
    procs = [host_run(database_url, first, workers=1), host_run(database_url, second, workers=2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out, err)
    assert os.getpgid(os.getpid()) not in {proc.pid for proc in procs}  # really separate groups
    loaded = collections.Counter(
        re.search(r"user=(\d+) day=(\S+)", line).groups()
        for out, _ in outputs
        for line in out.splitlines()
        if "status=loaded" in line
    )
    expected = {(str(u), d) for u in (1, 2, 3, 4) for d in ("2024-01-01", "2024-01-02")}
    assert set(loaded) == expected and set(loaded.values()) == {1}
    ledger = db.execute("SELECT count(*), sum(rows_loaded) FROM ingested_days").fetchone()
    assert ledger[0] == 8
    total, distinct = db.execute("SELECT count(*), count(DISTINCT (user_id, ts)) FROM heart_rate").fetchone()
    measured = db.execute("SELECT sum((rows_by_metric->>'heart_rate')::bigint) FROM ingested_days").fetchone()[0]
    assert total == distinct == measured > 0
    # Between them the two runs loaded the eight participant-days, and both ended ok.
    runs = db.execute("SELECT status, user_days FROM ingest_runs ORDER BY run_id").fetchall()
    assert [r[0] for r in runs] == ["ok", "ok"] and sum(r[1] for r in runs) == 8
