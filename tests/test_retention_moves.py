"""Raw retention, then a move: days that keep only rollups are never cut again in another zone,
so no rebuild afterwards drops rollups it cannot recompute (issue 21, High 2)."""

from __future__ import annotations

import datetime as dt

from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.participants import add_participant

START = dt.date(2024, 1, 1)
ZONE = "America/New_York"


def fitpipe(url: str, *args: str, code: int = 0):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def checksums(db) -> dict[str, tuple]:
    """Every rollup level and wear_days, whole."""
    return {
        table: db.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        ).fetchone()
        for table in ("rollup_1min", "rollup_1h", "rollup_1d", "wear_days")
    }


def heart_samples(db, level: str, before: dt.datetime) -> int:
    return db.execute(
        f"SELECT coalesce(sum(n_measured), 0) FROM rollup_{level} WHERE metric = 'heart_rate' AND bucket < %s",
        (before,),
    ).fetchone()[0]


def test_a_move_over_rollup_only_days_is_refused_and_a_full_refresh_keeps_every_level(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone=ZONE, study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-08")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-06", "--workers", "1")
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    rollup_only = db.execute("SELECT day FROM ingested_days WHERE raw_dropped_at IS NOT NULL ORDER BY day").fetchall()
    assert [d for (d,) in rollup_only] == [dt.date(2024, 1, d) for d in range(1, 5)]
    before = checksums(db)
    history = db.execute("SELECT * FROM timezone_history ORDER BY effective_from").fetchall()

    refused = fitpipe(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-01-03", code=2)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: participant 1 has rollups only"), refused.stderr
    assert "for 2 day(s) from 2024-01-03 to 2024-01-04" not in lines[0]
    assert "for 3 day(s) from 2024-01-02 to 2024-01-04" in lines[0]
    assert "or record the move from 2024-01-06 on" in lines[0]
    assert db.execute("SELECT * FROM timezone_history ORDER BY effective_from").fetchall() == history
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert checksums(db) == before

    # From the day after the last rollup-only day's neighbour on, the move is recorded; a full
    # refresh then keeps every rollup-only sample at every level, and wear_days with them.
    day5 = dt.datetime(2024, 1, 5, 5, tzinfo=dt.UTC)  # New York midnight starting 2024-01-05
    samples = {level: heart_samples(db, level, day5) for level in ("1min", "1h", "1d")}
    assert samples["1min"] == samples["1h"] == samples["1d"] > 0
    worn = db.execute("SELECT sum(worn_minutes) FROM wear_days WHERE day < '2024-01-05'").fetchone()[0]
    fitpipe(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-01-06")
    fitpipe(database_url, "backfill", "--start", "2024-01-05", "--end", "2024-01-06", "--workers", "1")
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert {level: heart_samples(db, level, day5) for level in ("1min", "1h", "1d")} == samples
    assert db.execute("SELECT sum(worn_minutes) FROM wear_days WHERE day < '2024-01-05'").fetchone()[0] == worn


def test_a_move_is_accepted_once_the_raw_rows_are_back(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone=ZONE, study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-08")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-06", "--workers", "1")
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    fitpipe(database_url, "backfill", "--start", "2024-01-02", "--end", "2024-01-04", "--force", "--workers", "1")
    assert db.execute("SELECT count(*) FROM ingested_days WHERE raw_dropped_at IS NOT NULL").fetchone()[0] == 1
    moved = fitpipe(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-01-03")
    assert "participant 1 is in Asia/Tokyo from 2024-01-03" in moved.stdout
