"""Tests that kill the one-line bugs issue 21's mutation run found surviving the suite: a fall-back
day fully worn, imputed minutes in wear_days, the day before a move, the archive's last day, an
import whose days all came back unchanged, --timezone for zone-less times, a retention cutoff
inside a chunk, the eve of a move (device offsets, the Google Health day window, adherence's period
end) and a day retried within a run keeping its request budget."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.participants import add_participant

NY = "America/New_York"
GOOGLE_DATA = "Takeout/Fitbit/Physical Activity_GoogleData"


def cli(url: str, *args: str):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result


def worn(db, day: dt.date) -> int:
    return db.execute("SELECT worn_minutes FROM wear_days WHERE user_id = 1 AND day = %s", (day,)).fetchone()[0]


def test_a_fully_worn_25_hour_fall_back_day_counts_1500_minutes(db, database_url, tmp_path, monkeypatch):
    """Migration 0040: CHECK (worn_minutes BETWEEN 0 AND 1500), not 1440."""
    fall_back = dt.date(2024, 11, 3)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-11-06")
    cli(database_url, "participants", "add", "1", "--source", "takeout", "--timezone", NY, "--study-start",
        str(fall_back))  # fmt: skip
    # One sample a minute from New York's midnight (04:00 UTC) to the next (05:00 UTC): 25 hours.
    midnight = dt.datetime(2024, 11, 3, 4, tzinfo=dt.UTC)
    samples = [midnight + dt.timedelta(minutes=m) for m in range(25 * 60)]
    body = "timestamp,beats per minute\n" + "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},70\n" for t in samples)
    path = zipped(tmp_path / "fall.zip", {f"{GOOGLE_DATA}/heart_rate_{fall_back}.csv": body})
    cli(database_url, "import", str(path), "--user", "1", "--workers", "1")
    assert worn(db, fall_back) == 25 * 60


def test_imputed_minutes_never_count_as_worn(db, database_url, monkeypatch):
    """derive/rollups.py: wear_days counts minutes with a measured sample (n_measured > 0)."""
    day = dt.date(2024, 1, 2)
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=day)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-05")
    cli(database_url, "backfill", "--start", str(day), "--end", str(day), "--workers", "1")
    measured = worn(db, day)
    assert 0 < measured < 1440, "the synthetic day has wear gaps to fill"
    cli(database_url, "impute", "--metric", "heart_rate", "--method", "linear")
    cli(database_url, "aggregate", "refresh", "--full")
    assert db.execute("SELECT count(*) FROM imputed_values").fetchone()[0] > 0
    assert worn(db, day) == measured


def test_a_move_cuts_the_day_before_it_again(db, database_url, monkeypatch):
    """participants.py: the day before the move ends where the moved day starts, so it is stale too."""
    add_participant(db, 1, source="synthetic", timezone=NY, study_start=dt.date(2024, 1, 1))
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-08")
    cli(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--workers", "1")
    moved = cli(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-01-03")
    assert "4 loaded day(s) will be fetched again" in moved.stdout
    states = [state for (state,) in db.execute("SELECT state FROM ingested_days ORDER BY day")]
    assert states == ["complete"] + ["provisional"] * 4


def heart_rate_csv(day: dt.date, bpms: list[int]) -> str:
    return "timestamp,beats per minute\n" + "".join(f"{day}T12:00:{i:02d}Z,{b}\n" for i, b in enumerate(bpms))


def zipped(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    return path


def takeout_participant(url: str, zone: str = "UTC") -> None:
    cli(url, "participants", "add", "1", "--source", "takeout", "--timezone", zone, "--study-start", "2024-03-01")


def test_the_archives_last_day_loads_when_it_is_over_and_an_unchanged_import_is_done(
    db, database_url, tmp_path, monkeypatch
):
    """importer.py: `d <= last` (the archive's last day is over on the next day) and an import
    whose days all came back unchanged is recorded as done."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-03")
    takeout_participant(database_url)
    files = {
        f"{GOOGLE_DATA}/heart_rate_2024-03-0{d}.csv": heart_rate_csv(dt.date(2024, 3, d), [60 + d]) for d in (1, 2)
    }
    first = zipped(tmp_path / "first.zip", files)
    listing = cli(database_url, "import", str(first), "--user", "1", "--workers", "1").stdout
    assert "not over yet" not in listing
    assert [d for (d,) in db.execute("SELECT day FROM ingested_days ORDER BY day")] == [
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 2),
    ]
    # The same records in another archive (another sha256): every day unchanged, the import done.
    second = zipped(tmp_path / "second.zip", {**files, "Takeout/Fitbit/notes.txt": "a file fitpipe does not read"})
    cli(database_url, "import", str(second), "--user", "1", "--workers", "1")
    assert db.execute("SELECT status FROM takeout_imports ORDER BY import_id").fetchall() == [("done",), ("done",)]


def test_import_timezone_reads_zone_less_times_in_that_zone(db, database_url, tmp_path, monkeypatch):
    """takeout/index.py: --timezone, not the participant's history, for ISO local times."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    takeout_participant(database_url)
    body = "timestamp,rmssd,coverage,low_frequency,high_frequency\n2024-03-02T01:00:00,40.5,0.9,500.0,300.0\n"
    path = zipped(
        tmp_path / "hrv.zip",
        {"Takeout/Fitbit/Heart Rate Variability/Heart Rate Variability Details - 2024-03-02.csv": body},
    )
    cli(database_url, "import", str(path), "--user", "1", "--timezone", "Asia/Tokyo", "--workers", "1")
    tokyo_one_am = dt.datetime(2024, 3, 1, 16, 0, tzinfo=dt.UTC)
    assert db.execute("SELECT ts, rmssd FROM hrv_intraday").fetchall() == [(tokyo_one_am, 40.5)]


def test_a_retention_cutoff_inside_a_chunk_keeps_that_chunk(db, database_url, monkeypatch):
    """derive/retention.py: chunks are chosen by their end (range_end <= cutoff). Participant 1
    (New York) has days 1-4, so the cohort's horizon is a New York midnight, 05:00 UTC, inside a
    1-day chunk that also holds participant 2's day 5 (UTC): those rows stay raw."""
    start = dt.date(2024, 1, 1)
    add_participant(db, 1, source="synthetic", timezone=NY, study_start=start)
    add_participant(db, 2, source="synthetic", timezone="UTC", study_start=start)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-08")
    cli(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-04", "--user", "1", "--workers", "1")
    cli(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--user", "2", "--workers", "1")
    day5 = (dt.datetime(2024, 1, 5, tzinfo=dt.UTC), dt.datetime(2024, 1, 6, tzinfo=dt.UTC))
    rows = db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2 AND ts >= %s AND ts < %s", day5).fetchone()
    assert rows[0] > 0
    result = cli(database_url, "maintain", "--raw-retention-days", "1")
    assert "before 2024-01-05 05:00 UTC" in result.stdout
    assert (
        db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 2 AND ts >= %s AND ts < %s", day5).fetchone()
        == rows
    )
    assert db.execute(
        "SELECT raw_dropped_at FROM ingested_days WHERE user_id = 2 AND day = '2024-01-05'"
    ).fetchone() == (None,)


def test_device_offsets_after_midnight_before_a_move_are_read_in_the_new_zone():
    """google_health/parse.py: points past the day's end, on the eve of a move, are expected in the
    zone the next day starts in (`ctx.next_timezone or ctx.timezone`)."""
    from fitpipe.days import DayContext
    from fitpipe.ingest.validate import ParsedDay
    from fitpipe.sources.google_health.parse import parse_device_offsets
    from fitpipe.sources.google_health.standin.days import Builders

    b = Builders()
    tokyo, new_york = 9 * 3600, -5 * 3600
    readings = (
        (dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC), new_york),  # noon in New York, the old zone
        (dt.datetime(2024, 3, 5, 16, tzinfo=dt.UTC), tokyo),  # 01:00 in Tokyo, where 6 March has begun
    )
    page = b.pb["ReconcileDataPointsResponse"](
        data_points=[
            b.pb["ReconciledDataPoint"](
                data_point_name=f"p{i}",
                heart_rate=b.pb["HeartRate"](sample_time=b.sample_time(when, offset), beats_per_minute=60),
            )
            for i, (when, offset) in enumerate(readings)
        ]
    )
    ctx = DayContext(1, dt.date(2024, 3, 5), NY, next_timezone="Asia/Tokyo")
    parsed = ParsedDay()
    parse_device_offsets({"heart-rate": [page]}, ctx, parsed)
    assert parsed.row_count == 0, parsed.rows
    assert not parsed.quarantined


@pytest.mark.slow
def test_a_google_health_day_before_a_move_is_fetched_in_the_zone_of_that_day(health, database_url, db, monkeypatch):
    """google_health/source.py: the day's window comes from the zone history (`participant.day_context`),
    not from the zone the participant lives in now."""
    from fitpipe.sources.google_health.standin import synthetic_seed
    from support.google_health import ZONE, add_google_participant

    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account("mover", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60)
    add_google_participant(database_url, health, 1, "mover")
    cli(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-03-07")
    cli(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    local_day = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE (ts AT TIME ZONE %s)::date <> '2024-03-05') FROM heart_rate",
        (ZONE,),
    ).fetchone()
    assert local_day[0] > 1000 and local_day[1] == 0, local_day


def test_adherence_ends_the_period_in_the_zone_of_the_day_after_as_of(db, database_url):
    """Migrations 0051/0060: the period ends at midnight after as_of in the zone of as_of + 1. A New
    Yorker who starts on 5 March and moves to Tokyo on the 6th has a first day of 10 hours."""
    as_of = dt.date(2024, 3, 5)
    add_participant(db, 1, source="synthetic", timezone=NY, study_start=as_of)
    cli(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-03-06")
    minutes = db.execute("SELECT study_minutes FROM fitpipe_adherence(%s)", (as_of,)).fetchone()
    assert minutes == (10 * 60,)


@pytest.mark.slow
def test_a_day_retried_in_the_run_remembers_the_requests_it_spent(health, database_url, db, monkeypatch):
    """ingest/runner.py: the retry carries the day's budget ledger (`replace(task, budget_spent=...)`),
    so requests before and after the retry count against one budget. Counted at the server."""
    from fitpipe.sources.google_health.standin import synthetic_seed
    from support.google_health import ZONE, add_google_participant

    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    monkeypatch.setenv("FITPIPE_HEALTH_REQUEST_BUDGET", "6/3")
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_ATTEMPTS", "1")
    health.api.add_account("spender", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60)
    add_google_participant(database_url, health, 1, "spender")
    # Three pages load, the fourth request meets a 429 that the runner waits out within the run.
    health.api.inject("spender", {}, {}, {}, {"status": 429, "retry_after": 1})
    cli(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    statuses = [s for a, _, _, s in health.api.requests if a == "spender"]
    assert statuses.count(429) == 1 and len(statuses) > 6
    assert health.api.requests_per_window("spender", 3.0) <= 6
    assert db.execute("SELECT state FROM ingested_days WHERE user_id = 1").fetchall() == [("complete",)]
