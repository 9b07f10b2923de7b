"""Raw retention (`fitpipe maintain --raw-retention-days N`): whole 1 Hz chunks past N days go,
only where their days are settled and rolled up; their rollups stay, whatever refreshes,
imputations and re-ingests come after; a re-ingest brings the raw rows back."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from fitpipe.derive.maintain import APACHE_NOTE
from fitpipe.derive.retention import drop_raw
from fitpipe.participants import add_participant, list_users
from support.cli import fitpipe
from support.db import initialised_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

START = dt.date(2024, 1, 1)
TODAY = dt.date(2024, 1, 8)
ZONE = "America/New_York"
# TODAY - 3 days, at UTC midnight: heart_rate's 1-day chunks before it may go.
CUTOFF = dt.datetime(2024, 1, 5, tzinfo=dt.UTC)


def rollup_checksums(conn) -> dict[str, tuple]:
    sums = {}
    for table in ("rollup_1min", "rollup_1h", "rollup_1d", "wear_days"):
        sums[table] = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        ).fetchone()
    return sums


def raw_checksum(conn, user_id: int, day: dt.date) -> tuple:
    user = list_users(conn, [user_id])[0]
    return conn.execute(
        "SELECT count(*), md5(coalesce(string_agg(ts::text || ':' || bpm::text, '|' ORDER BY ts), '')) FROM heart_rate "
        "WHERE user_id = %s AND ts >= %s AND ts < %s",
        (user_id, user.day_start(day), user.day_start(day + dt.timedelta(days=1))),
    ).fetchone()


def heart_rollups_before(conn, instant: dt.datetime) -> list[tuple]:
    return [
        conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            f"FROM rollup_{level} t WHERE metric = 'heart_rate' AND bucket < %s",
            (instant,),
        ).fetchone()
        for level in ("1min", "1h", "1d")
    ]


def rollup_only(conn) -> list[tuple[int, dt.date]]:
    return conn.execute(
        "SELECT user_id, day FROM ingested_days WHERE raw_dropped_at IS NOT NULL ORDER BY 1, 2"
    ).fetchall()


def heart_chunks(conn) -> list[tuple[dt.datetime, dt.datetime]]:
    return conn.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'heart_rate' ORDER BY 1"
    ).fetchall()


def load(url: str, conn, monkeypatch, users=(1,), days=6) -> None:
    for user_id in users:
        add_participant(conn, user_id, source="synthetic", timezone=ZONE, study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", TODAY.isoformat())
    end = START + dt.timedelta(days=days - 1)
    fitpipe(url, "backfill", "--start", START.isoformat(), "--end", end.isoformat(), "--workers", "2")


def days(first: int, last: int) -> list[dt.date]:
    return [dt.date(2024, 1, d) for d in range(first, last + 1)]


def test_maintain_drops_old_settled_chunks_keeps_rollups_and_says_which_days(db, database_url, monkeypatch):
    load(database_url, db, monkeypatch)
    rollups = rollup_checksums(db)
    kept_raw = db.execute("SELECT count(*) FROM heart_rate WHERE ts >= %s", (CUTOFF,)).fetchone()[0]
    assert rollups["rollup_1min"][0] > 0 and kept_raw > 0

    result = fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert "raw retention (3 days): dropped 4 chunk(s) of heart_rate before 2024-01-05 00:00 UTC" in result.stdout
    assert "4 participant-day(s) now have rollups only" in result.stdout
    freed = int(result.stdout.split(" bytes freed")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert freed > 1_000_000
    # Nothing before the cutoff, everything after it.
    assert db.execute("SELECT count(*) FROM heart_rate WHERE ts < %s", (CUTOFF,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM heart_rate WHERE ts >= %s", (CUTOFF,)).fetchone()[0] == kept_raw
    assert min(start for start, _ in heart_chunks(db)) == CUTOFF
    assert db.execute("SELECT count(*) FROM spo2 WHERE ts < %s", (CUTOFF,)).fetchone()[0] > 0  # 1-minute tables stay
    assert rollup_checksums(db) == rollups
    # Day 4 in New York ends at 05:00 UTC on the 5th: partly dropped, so rollups only too.
    assert rollup_only(db) == [(1, d) for d in days(1, 4)]

    report = json.loads(fitpipe(database_url, "status", "--json").stdout)
    assert report["users"][0]["rollup_only"] == {"days": 4, "first": "2024-01-01", "last": "2024-01-04"}
    assert (
        "user 1 has rollups only (raw 1 Hz rows dropped by retention) for 4 day(s) from 2024-01-01 to 2024-01-04"
        in fitpipe(database_url, "status").stdout
    )

    # Again: nothing more is old enough.
    again = fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert "dropped 0 chunk(s)" in again.stdout and rollup_checksums(db) == rollups
    # A full rebuild, and an imputation with its refresh, never rebuild rollup-only days from missing rows.
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert rollup_checksums(db) == rollups
    heart_rollups_before_drop = heart_rollups_before(db, list_users(db, [1])[0].day_start(dt.date(2024, 1, 5)))
    day5 = list_users(db, [1])[0].day_start(dt.date(2024, 1, 5))
    fitpipe(database_url, "impute", "--metric", "heart_rate", "--method", "linear")
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert heart_rollups_before(db, day5) == heart_rollups_before_drop
    # The tail of day 4 that is still raw is not imputed either: its gaps are in its rollups.
    assert (
        db.execute("SELECT count(*) FROM imputed_values WHERE metric = 'heart_rate' AND ts < %s", (day5,)).fetchone()[0]
        == 0
    )
    assert db.execute("SELECT count(*) FROM imputed_values WHERE metric = 'heart_rate'").fetchone()[0] > 0


def test_unsettled_days_and_pending_rollups_keep_their_chunks(db, database_url, monkeypatch):
    load(database_url, db, monkeypatch, days=6)
    # User 2 (UTC) has only its first day: the cohort has settled nothing after 2024-01-02 00:00 UTC.
    add_participant(db, 2, source="synthetic", timezone="UTC", study_start=START)
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-01", "--user", "2")
    horizon = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    result = fitpipe(database_url, "maintain", "--raw-retention-days", "1")
    assert "dropped 1 chunk(s) of heart_rate before 2024-01-02 00:00 UTC" in result.stdout
    assert min(start for start, _ in heart_chunks(db)) == horizon
    assert rollup_only(db) == [(1, dt.date(2024, 1, 1)), (2, dt.date(2024, 1, 1))]

    # A change not rolled up yet (here written by hand, after maintain's own refresh) keeps its
    # chunk; the chunks either side of it still go.
    fitpipe(database_url, "backfill", "--start", "2024-01-02", "--end", "2024-01-06", "--user", "2")
    db.execute(
        "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (2, 'heart_rate', %s, %s)",
        (dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC), dt.datetime(2024, 1, 3, 13, tzinfo=dt.UTC)),
    )
    with psycopg.connect(database_url) as conn:
        report = drop_raw(conn, 3)
    assert report.chunks_dropped == 2 and len(report.kept) == 1
    assert "1 rollup change(s) pending" in report.kept[0]
    assert [start.day for start, _ in heart_chunks(db)][:2] == [3, 5]
    # User 2's day 3 (UTC) lies in the kept chunk; user 1's days 3 and 4 in New York reach into dropped ones.
    assert rollup_only(db) == [(1, d) for d in days(1, 4)] + [(2, dt.date(2024, 1, d)) for d in (1, 2, 4)]
    # The refresh then runs, and the next maintain drops the chunk.
    result = fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert "dropped 1 chunk(s)" in result.stdout and heart_chunks(db)[0][0] == CUTOFF


def test_backfill_force_of_rollup_only_days_gives_back_raw_rows_and_the_same_rollups(db, database_url, monkeypatch):
    load(database_url, db, monkeypatch)
    rollups = rollup_checksums(db)
    raw = {day: raw_checksum(db, 1, day) for day in days(1, 6)}
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert raw_checksum(db, 1, dt.date(2024, 1, 2))[0] == 0
    assert raw_checksum(db, 1, dt.date(2024, 1, 4))[0] < raw[dt.date(2024, 1, 4)][0]

    # Day 2 lies in dropped chunks; day 4 half in a dropped one, half in a kept one.
    for day in ("2024-01-02", "2024-01-04"):
        fitpipe(database_url, "backfill", "--start", day, "--end", day, "--force")
    for day in days(1, 6):
        if day.day in (1, 3):
            assert raw_checksum(db, 1, day)[0] == 0
        else:
            assert raw_checksum(db, 1, day) == raw[day], day
    assert rollup_only(db) == [(1, dt.date(2024, 1, 1)), (1, dt.date(2024, 1, 3))]
    # Rebuilt from the raw rows that came back, the rollups are the same to the bit.
    assert rollup_checksums(db) == rollups
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert rollup_checksums(db) == rollups
    # Retention applies again at the next maintain.
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert rollup_only(db) == [(1, d) for d in days(1, 4)] and rollup_checksums(db) == rollups


def test_a_rebuilt_day_with_other_content_gets_new_rollups(db, database_url, monkeypatch):
    load(database_url, db, monkeypatch, days=4)
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert (1, dt.date(2024, 1, 2)) in rollup_only(db)
    before = db.execute(
        "SELECT n_measured FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate' ORDER BY bucket"
    ).fetchall()
    # The source now has the day without wear gaps: more measured seconds than the rollup held.
    db.execute("UPDATE participant_sources SET settings = settings || '{\"wear_gaps\": false}' WHERE user_id = 1")
    fitpipe(database_url, "backfill", "--start", "2024-01-02", "--end", "2024-01-02", "--force")
    after = db.execute(
        "SELECT n_measured FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate' ORDER BY bucket"
    ).fetchall()
    assert after[0] == before[0] and after[2:] == before[2:] and after[1][0] > before[1][0]
    assert after[1][0] == raw_checksum(db, 1, dt.date(2024, 1, 2))[0]


@pytest.mark.parametrize("value", ["x", "0", "-3", "1.5", "99999999"])
def test_a_bad_retention_is_one_line(database_url, value):
    result = fitpipe(database_url, "maintain", "--raw-retention-days", value, ok=False)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "--raw-retention-days" in result.stderr


def test_a_bad_retention_from_the_environment_is_one_line(database_url, monkeypatch):
    monkeypatch.setenv("FITPIPE_RAW_RETENTION_DAYS", "ten")
    result = fitpipe(database_url, "maintain", ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "FITPIPE_RAW_RETENTION_DAYS" in result.stderr


def test_retention_works_on_the_apache_edition(apache_admin_url, monkeypatch):
    monkeypatch.setenv("FITPIPE_RAW_RETENTION_DAYS", "3")
    with initialised_database(apache_admin_url) as url, psycopg.connect(url, autocommit=True) as conn:
        load(url, conn, monkeypatch, days=6)
        rollups = rollup_checksums(conn)
        lines = fitpipe(url, "maintain").stdout.strip().splitlines()
        assert (
            lines[0].startswith("raw retention (3 days): dropped 4 chunk(s) of heart_rate") and lines[1] == APACHE_NOTE
        )
        assert conn.execute("SELECT count(*) FROM heart_rate WHERE ts < %s", (CUTOFF,)).fetchone()[0] == 0
        assert rollup_checksums(conn) == rollups and rollup_only(conn) == [(1, d) for d in days(1, 4)]
        fitpipe(url, "backfill", "--start", "2024-01-02", "--end", "2024-01-02", "--force")
        assert rollup_checksums(conn) == rollups and (1, dt.date(2024, 1, 2)) not in rollup_only(conn)


def test_confidence_rows_go_with_their_heart_rate_chunks(db, database_url, monkeypatch):
    # The synthetic source writes no confidence; give every heart-rate second one, as Takeout does.
    load(database_url, db, monkeypatch)
    db.execute("INSERT INTO heart_rate_confidence (user_id, ts, confidence) SELECT user_id, ts, 2 FROM heart_rate")
    kept = db.execute("SELECT count(*) FROM heart_rate_confidence WHERE ts >= %s", (CUTOFF,)).fetchone()[0]
    assert (
        kept > 0 and db.execute("SELECT count(*) FROM heart_rate_confidence WHERE ts < %s", (CUTOFF,)).fetchone()[0] > 0
    )

    result = fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert "chunk(s) of heart_rate, heart_rate_confidence before 2024-01-05 00:00 UTC" in result.stdout
    assert db.execute("SELECT count(*) FROM heart_rate_confidence WHERE ts < %s", (CUTOFF,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM heart_rate_confidence WHERE ts >= %s", (CUTOFF,)).fetchone()[0] == kept
    assert rollup_only(db) == [(1, d) for d in days(1, 4)]
