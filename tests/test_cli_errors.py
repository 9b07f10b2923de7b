"""Bad input to the real CLI that no other file owns (a huge --days, zones that are not a place,
study days before 1970): one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import psycopg
import pytest

from support import ROOT
from support.cli import one_error_line, run_fitpipe

MIGRATIONS = ROOT / "migrations"


# --- finding 4: create-reader must not take over a role fitpipe did not create ----------------


# --- findings 6, 11 (migration not UTF-8), 17 (init-db race, reset under load) --------------


# --- findings 10 and 18: database URLs ----------------------------------------------------------


# --- findings 11, 12, 15, 16, 9: bad input is one line ----------------------------------------


@pytest.mark.slow
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
    line = one_error_line(result, code=2)
    assert line.startswith("error: unknown timezone") and len(line) < 200 and "site-packages" not in line


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
    assert "fitpipe keeps study days from 1970 on" in one_error_line(result, code=2)
    with psycopg.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


# --- finding 8: a night metric exports the nights its days own -------------------------------
