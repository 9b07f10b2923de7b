"""seed-users: idempotent, its defaults, growth that leaves existing participants alone, bad input."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from support.cli import one_error_line, run_fitpipe

NY = "America/New_York"


def user_rows(db) -> list[tuple]:
    """(user_id, timezone, study_start, seed, wear_gaps, source); the synthetic source's seed and
    wear_gaps live in participant_sources.settings."""
    return db.execute(
        "SELECT u.user_id, u.timezone, u.study_start, (s.settings->>'seed')::bigint, "
        "(s.settings->'wear_gaps')::boolean, "
        "u.source FROM users u LEFT JOIN participant_sources s ON s.user_id = u.user_id AND s.source = u.source "
        "ORDER BY u.user_id"
    ).fetchall()


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
    line = one_error_line(proc, "timezone", code=2)
    assert proc.returncode == 2, line
    assert user_rows(db) == []


@pytest.mark.parametrize("value", ["2024-02-30", "yesterday", "01/03/2024"])
def test_seed_users_bad_start_date(database_url, db, value):
    proc = run_fitpipe(database_url, "seed-users", "--count", "2", "--start-date", value)
    one_error_line(proc, "--start-date", code=2)
    assert user_rows(db) == []


def test_seed_users_needs_init_db(scratch_url):
    proc = run_fitpipe(scratch_url, "seed-users", "--count", "1")
    one_error_line(proc, "init-db", code=4)


def test_seed_users_count_is_bounded(seeded):
    started = time.monotonic()
    result = run_fitpipe(seeded, "seed-users", "--count", "2000000000", timeout=60)
    one_error_line(result, "--count must be between 1 and", code=2)
    assert time.monotonic() - started < 30
