"""Withdrawal stops a run already going: once `participants withdraw` returns, no further day of
that participant loads, whichever run planned it (issue 21, Medium 8)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from support.cli import popen


def loaded_days(db, user_id: int) -> int:
    return db.execute("SELECT count(*) FROM ingested_days WHERE user_id = %s", (user_id,)).fetchone()[0]


@pytest.mark.slow
def test_a_running_backfill_loads_no_day_after_the_withdrawal(db, database_url):
    runner = CliRunner()
    for user in ("1", "2"):
        added = runner.invoke(
            app,
            ["--database-url", database_url, "participants", "add", user, "--source", "synthetic",
             "--timezone", "UTC", "--study-start", "2024-01-01"],
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    backfill = popen(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-30", "--workers", "1",
                     "--no-refresh")  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while loaded_days(db, 1) < 2:
            assert backfill.poll() is None, backfill.communicate()
            assert time.monotonic() < deadline, "the backfill loaded nothing"
            time.sleep(0.05)
        withdrawn = runner.invoke(app, ["--database-url", database_url, "participants", "withdraw", "1"])
        assert withdrawn.exit_code == 0, withdrawn.output
        at_withdrawal = loaded_days(db, 1)
        stdout, stderr = backfill.communicate(timeout=600)
    finally:
        if backfill.poll() is None:
            backfill.kill()
    assert backfill.returncode == 0, stderr
    assert at_withdrawal < 30
    assert loaded_days(db, 1) == at_withdrawal
    assert loaded_days(db, 2) == 30  # everyone else's days go on
    assert f"skipped_participant_withdrew={30 - at_withdrawal}" in stdout + stderr


def test_withdraw_waits_for_a_load_of_that_participant_in_progress(db, database_url):
    import psycopg

    from fitpipe import locks

    added = CliRunner().invoke(
        app,
        ["--database-url", database_url, "participants", "add", "1", "--source", "synthetic", "--timezone", "UTC",
         "--study-start", "2024-01-01"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with psycopg.connect(database_url) as loading:
        locks.lock_user_shared(loading, 1)  # what a day's load holds until it commits
        withdraw = popen(database_url, "participants", "withdraw", "1")
        try:
            time.sleep(2)
            assert withdraw.poll() is None, "withdraw did not wait for the load in progress"
            assert db.execute("SELECT withdrawn_at FROM users WHERE user_id = 1").fetchone() == (None,)
        finally:
            loading.commit()
        _, err = withdraw.communicate(timeout=60)
    assert withdraw.returncode == 0, err
    assert db.execute("SELECT withdrawn_at IS NOT NULL FROM users WHERE user_id = 1").fetchone() == (True,)
