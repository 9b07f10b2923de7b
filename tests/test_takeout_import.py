"""fitpipe import: Takeout archives of each layout generation, written from known values, go
through the real CLI into the real database; every value is a row at the right instant or a
quarantine row with its reason, and nothing is extra."""

from __future__ import annotations

import datetime as dt
import zipfile

import pytest

from support.cli import fitpipe
from support.takeout import TakeoutBuilder, iso_z, sleep_log, to_utc

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

NY = "America/New_York"
D1, D2, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
METRIC_TABLES = (
    "heart_rate",
    "heart_rate_confidence",
    "spo2",
    "hrv_intraday",
    "hrv_daily",
    "breathing_rate",
    "sleep_sessions",
    "sleep_stages",
    "active_zone_minutes",
    "daily_activity",
    "heart_rate_daily",
    "data_sources",
)


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second)


def enrol(url: str, user: int, zone: str = NY, start: str = "2024-03-01", source: str = "takeout") -> None:
    fitpipe(url, "participants", "add", str(user), "--source", source, "--timezone", zone, "--study-start", start)


def rows(db, sql: str, *params) -> list[tuple]:
    return db.execute(sql, params).fetchall()


def full_archive(generation: int) -> TakeoutBuilder:
    """Two local days of every metric for a New York participant, with the documented traps."""
    b = TakeoutBuilder(generation)
    # Heart rate (JSON only: times are read as local). The file dated D1 runs past midnight into D2;
    # 300 bpm is out of range; the file dated D2 says "no data".
    b.heart_rate_json(
        D1,
        [
            (at(D1, 8), 62, 2),
            (at(D1, 8, 0, 5), 63, 3),
            (at(D1, 12), 300, 1),
            (at(D1, 23, 59, 58), 70, 1),
            (at(D2, 0, 0, 3), 71, 2),
        ],
    )
    b.put(b._folder("global"), f"heart_rate-{D2}.json", "no data")
    # Steps per minute as strings; one is not a number.
    b.steps_json(D1, [(at(D1, 8), "12"), (at(D1, 8, 1), "30"), (at(D1, 8, 2), "abc"), (at(D2, 9), "5")])
    b.resting_heart_rate_json(dt.date(2024, 1, 1), [(D1, 53.01), (D2, 0)])
    # The night starting on D1's evening, across midnight.
    b.sleep_json(D2, [sleep_log(9001, at(D1, 23, 30), [("light", 3600), ("deep", 1800), ("rem", 1800), ("wake", 600)])])
    b.hrv_details(D2, [(at(D2, 1), 40.5, 0.9, 500.0, 300.0)])
    b.hrv_daily(D2, [(D2, 38.2)])
    b.respiratory_summary(D2, [(at(D2, 6), 14.5, 13.0, 15.0, 16.0)])
    b.spo2_minutes(
        D2,
        [
            (dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.UTC), 95.5),
            (dt.datetime(2024, 3, 2, 6, 1, tzinfo=dt.UTC), 50.0),
            (dt.datetime(2024, 3, 2, 6, 2, tzinfo=dt.UTC), 96.0),
        ],
    )
    b.azm_csv(D1, [(at(D1, 9), "FAT_BURN", 1), (at(D1, 9, 1), "CARDIO", 2), (at(D1, 9, 2), "PEAK", 2)])
    b.put("Temperature", "Computed Temperature - 2024-03-01.csv", "type,sleep_start\n")
    if generation == 3:
        b.put("Health Fitness Data_GoogleData", "UserSleeps_2024-03-01.csv", "sleep_id,start_utc_offset\n")
    return b


def quarantine_reasons(db, user: int) -> list[tuple]:
    return rows(db, "SELECT day, metric, reason FROM quarantine WHERE user_id = %s ORDER BY day, metric, reason", user)


@pytest.mark.parametrize("generation,as_zip", [(1, True), (2, False), (3, True)])
def test_every_value_lands_once_for_each_generation(database_url, db, tmp_path, generation, as_zip):
    enrol(database_url, 1)
    builder = full_archive(generation)
    path = builder.write_zip(tmp_path / "takeout.zip") if as_zip else builder.write_folder(tmp_path / "export")
    result = fitpipe(database_url, "import", str(path), "--user", "1", "--workers", "1")
    layout = {1: "myfitbitdata", 2: "takeout-fitbit", 3: "google-health"}[generation]
    assert f"layout {layout}" in result.stdout

    def utc(local):
        return to_utc(local, NY)

    assert rows(db, "SELECT ts, bpm FROM heart_rate ORDER BY ts") == [
        (utc(at(D1, 8)), 62),
        (utc(at(D1, 8, 0, 5)), 63),
        (utc(at(D1, 23, 59, 58)), 70),
        (utc(at(D2, 0, 0, 3)), 71),
    ]
    assert rows(db, "SELECT ts, confidence FROM heart_rate_confidence ORDER BY ts") == [
        (utc(at(D1, 8)), 2),
        (utc(at(D1, 8, 0, 5)), 3),
        (utc(at(D1, 23, 59, 58)), 1),
        (utc(at(D2, 0, 0, 3)), 2),
    ]
    assert rows(db, "SELECT day, steps FROM daily_activity ORDER BY day") == [(D1, 42), (D2, 5)]
    assert rows(db, "SELECT day, resting_bpm FROM heart_rate_daily ORDER BY day") == [(D1, pytest.approx(53.01))]
    assert rows(
        db, "SELECT start_ts, end_ts, date_of_sleep, log_id, is_main_sleep, duration_s FROM sleep_sessions"
    ) == [(utc(at(D1, 23, 30)), utc(at(D2, 1, 40)), D2, 9001, True, 7800)]
    assert rows(db, "SELECT start_ts, stage, seconds FROM sleep_stages ORDER BY start_ts") == [
        (utc(at(D1, 23, 30)), "light", 3600),
        (utc(at(D2, 0, 30)), "deep", 1800),
        (utc(at(D2, 1)), "rem", 1800),
        (utc(at(D2, 1, 30)), "wake", 600),
    ]
    assert rows(db, "SELECT ts, rmssd, coverage, lf, hf FROM hrv_intraday") == [(utc(at(D2, 1)), 40.5, 0.9, 500, 300)]
    # Nightly summaries dated by their wake-up day belong to the night that started the evening before.
    assert rows(db, "SELECT day, daily_rmssd, deep_rmssd FROM hrv_daily") == [(D1, pytest.approx(38.2), None)]
    assert rows(db, "SELECT day, full_sleep, deep_sleep, light_sleep, rem_sleep FROM breathing_rate") == [
        (D1, 14.5, 13.0, 15.0, 16.0)
    ]
    assert rows(db, "SELECT ts, spo2_pct FROM spo2 ORDER BY ts") == [
        (dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.UTC), 95.5),
        (dt.datetime(2024, 3, 2, 6, 2, tzinfo=dt.UTC), 96.0),
    ]
    assert rows(
        db,
        "SELECT ts, active_zone_minutes, fat_burn_minutes, cardio_minutes, peak_minutes "
        "FROM active_zone_minutes ORDER BY ts",
    ) == [(utc(at(D1, 9)), 1, 1, 0, 0), (utc(at(D1, 9, 1)), 2, 0, 1, 0), (utc(at(D1, 9, 2)), 2, 0, 0, 1)]
    reasons = quarantine_reasons(db, 1)
    assert [(day, metric) for day, metric, _ in reasons] == [
        (D1, "daily_activity"),
        (D1, "heart_rate"),
        (D1, "spo2"),
        (D2, "heart_rate"),
        (D2, "heart_rate_daily"),
    ]
    assert "steps is not a number" in reasons[0][2]
    assert "bpm outside its valid range" in reasons[1][2]
    assert "invalid-reading floor" in reasons[2][2]  # 06:01Z is 01:01 local: the night of D1
    assert "no data" in reasons[3][2]
    assert "resting_bpm outside its valid range" in reasons[4][2]
    # Provenance: where the loaded rows came from.
    assert ("heart_rate", "Global Export Data/heart_rate-*.json", "(not given)", 4) in rows(
        db, "SELECT metric, origin, data_source, samples FROM data_sources WHERE day = %s", D1
    )
    assert rows(db, "SELECT day, state, source FROM ingested_days ORDER BY day") == [
        (D1, "complete", "takeout"),
        (D2, "complete", "takeout"),
    ]
    record = rows(db, "SELECT layout, first_day, last_day, status, assumptions, files_skipped FROM takeout_imports")
    assert len(record) == 1
    assert record[0][:4] == (layout, D1, D2, "done")
    assert any("Global Export Data JSON times" in a and "America/New_York" in a for a in record[0][4])
    assert any(s["reason"] == "no fitpipe metric for it" for s in record[0][5])
    assert rows(db, "SELECT credential_state FROM participant_sources WHERE user_id = 1") == [("ok",)]


def test_utc_and_local_rules_across_both_dst_days_and_in_kolkata(database_url, db, tmp_path):
    enrol(database_url, 1, NY, "2024-03-01")
    enrol(database_url, 2, "Asia/Kolkata", "2024-03-01")
    spring, fall = dt.date(2024, 3, 10), dt.date(2024, 11, 3)
    b = TakeoutBuilder(2)
    # 02:30 does not exist on the spring-forward day; 01:30 happens twice on the fall-back day.
    b.heart_rate_json(spring, [(at(spring, 1, 59, 59), 60, 2), (at(spring, 2, 30), 61, 2), (at(spring, 3), 62, 2)])
    b.heart_rate_json(fall, [(at(fall, 1, 30), 70, 2), (at(fall, 1, 30), 71, 2), (at(fall, 2), 72, 2)])
    # Sleep logs keep the offset of their start all night: 02:30 "local" on the spring night is 07:30Z.
    b.sleep_json(spring, [sleep_log(1, at(dt.date(2024, 3, 9), 23), [("light", 12600), ("deep", 5400)])])
    b.sleep_json(fall, [sleep_log(2, at(dt.date(2024, 11, 2), 23), [("light", 9000), ("rem", 9000)])])
    archive = b.write_zip(tmp_path / "ny.zip")
    fitpipe(database_url, "import", str(archive), "--user", "1", "--workers", "1")
    utc = dt.UTC
    assert rows(db, "SELECT ts, bpm FROM heart_rate WHERE user_id = 1 ORDER BY ts") == [
        (dt.datetime(2024, 3, 10, 6, 59, 59, tzinfo=utc), 60),
        (dt.datetime(2024, 3, 10, 7, 0, tzinfo=utc), 62),
        (dt.datetime(2024, 11, 3, 5, 30, tzinfo=utc), 70),
        (dt.datetime(2024, 11, 3, 6, 30, tzinfo=utc), 71),
        (dt.datetime(2024, 11, 3, 7, 0, tzinfo=utc), 72),
    ]
    assert [r[0] for r in rows(db, "SELECT reason FROM quarantine WHERE user_id = 1")] == [
        "local time does not exist in America/New_York (DST gap)"
    ]
    assert rows(db, "SELECT start_ts, end_ts FROM sleep_sessions WHERE user_id = 1 ORDER BY start_ts") == [
        (dt.datetime(2024, 3, 10, 4, 0, tzinfo=utc), dt.datetime(2024, 3, 10, 9, 0, tzinfo=utc)),
        (dt.datetime(2024, 11, 3, 3, 0, tzinfo=utc), dt.datetime(2024, 11, 3, 8, 0, tzinfo=utc)),
    ]
    assert rows(db, "SELECT start_ts FROM sleep_stages WHERE user_id = 1 ORDER BY start_ts") == [
        (dt.datetime(2024, 3, 10, 4, 0, tzinfo=utc),),
        (dt.datetime(2024, 3, 10, 7, 30, tzinfo=utc),),
        (dt.datetime(2024, 11, 3, 3, 0, tzinfo=utc),),
        (dt.datetime(2024, 11, 3, 5, 30, tzinfo=utc),),
    ]
    # Both nights belong to the evening they started on.
    assert rows(
        db, "SELECT day FROM ingested_days WHERE user_id = 1 AND rows_by_metric ? 'sleep_sessions' ORDER BY day"
    ) == [(dt.date(2024, 3, 9),), (dt.date(2024, 11, 2),)]

    # Kolkata (+05:30): local 00:15 on D2 is 18:45Z on D1 and belongs to D2; a UTC instant of 20:00Z
    # on D2 is 01:30 local on D3 and belongs to D3.
    k = TakeoutBuilder(3)
    k.heart_rate_json(D2, [(at(D2, 0, 15), 80, 3)])
    k.heart_rate_csv(D1, [(dt.datetime(2024, 3, 2, 20, 0, tzinfo=utc), 81, "Pixel Watch 2")])
    fitpipe(database_url, "import", str(k.write_zip(tmp_path / "kolkata.zip")), "--user", "2", "--workers", "1")
    assert rows(db, "SELECT ts, bpm FROM heart_rate WHERE user_id = 2 ORDER BY ts") == [
        (dt.datetime(2024, 3, 1, 18, 45, tzinfo=utc), 80),
        (dt.datetime(2024, 3, 2, 20, 0, tzinfo=utc), 81),
    ]
    assert rows(
        db,
        "SELECT day, rows_by_metric->>'heart_rate' FROM ingested_days WHERE user_id = 2 "
        "AND rows_by_metric ? 'heart_rate' ORDER BY day",
    ) == [(D2, "1"), (D3, "1")]


def _checksums(db) -> dict[str, str]:
    tables = (*METRIC_TABLES, "quarantine", "rollup_1min", "rollup_1h", "rollup_1d")
    sums = {}
    for table in tables:
        columns = [
            c
            for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name NOT IN "
                "('quarantine_id', 'run_id', 'recorded_at', 'refreshed_at') ORDER BY ordinal_position",
                (table,),
            )
        ]
        sums[table] = db.execute(
            f"SELECT md5(coalesce(string_agg(({', '.join(columns)})::text, '|' "
            f"ORDER BY ({', '.join(columns)})::text), ''))"
            f" FROM {table}"
        ).fetchone()[0]
    return sums


def test_reimport_is_identical_and_a_newer_archive_wins_its_days(database_url, db, tmp_path):
    enrol(database_url, 1)
    old = TakeoutBuilder(2)
    old.heart_rate_json(D1, [(at(D1, 10), 60, 2), (at(D2, 10), 61, 2)])
    old.heart_rate_json(D2, [(at(D2, 11), 62, 2)])
    old.steps_json(D1, [(at(D1, 10), "100"), (at(D2, 10), "200")])
    old_zip = old.write_zip(tmp_path / "old.zip")
    fitpipe(database_url, "import", str(old_zip), "--user", "1", "--workers", "1")
    before = _checksums(db)
    assert rows(db, "SELECT count(*) FROM rollup_1min")[0][0] > 0

    again = fitpipe(database_url, "import", str(old_zip), "--user", "1")
    assert "already imported" in again.stdout
    # --force rewrites every day (a repair); the contents come out identical.
    forced = fitpipe(database_url, "import", str(old_zip), "--user", "1", "--force", "--workers", "1")
    assert "user_days=2 " in forced.stdout
    assert _checksums(db) == before
    assert rows(db, "SELECT count(*) FROM takeout_imports")[0][0] == 2

    # A newer archive: D1 as before (left untouched), D2 changed, D3 new.
    new = TakeoutBuilder(3)
    new.heart_rate_json(D1, [(at(D1, 10), 60, 2)])
    new.steps_json(D1, [(at(D1, 10), "100")])
    new.heart_rate_json(D2, [(at(D2, 10), 90, 2), (at(D3, 10), 91, 2)])
    new.steps_json(D2, [(at(D2, 10), "300"), (at(D3, 10), "400")])
    newer = fitpipe(database_url, "import", str(new.write_zip(tmp_path / "new.zip")), "--user", "1", "--workers", "1")
    assert "user_days=2 " in newer.stdout and "unchanged=1 " in newer.stdout  # D2 and D3 written, D1 untouched
    assert rows(db, "SELECT ts, bpm FROM heart_rate ORDER BY ts") == [
        (to_utc(at(D1, 10), NY), 60),
        (to_utc(at(D2, 10), NY), 90),
        (to_utc(at(D3, 10), NY), 91),
    ]
    assert rows(db, "SELECT day, steps FROM daily_activity ORDER BY day") == [(D1, 100), (D2, 300), (D3, 400)]
    # The rollups follow: D2's old minutes are gone.
    assert rows(
        db, "SELECT bucket, sum_measured / n_measured FROM rollup_1min WHERE metric = 'heart_rate' ORDER BY bucket"
    ) == [(to_utc(at(D1, 10), NY), 60), (to_utc(at(D2, 10), NY), 90), (to_utc(at(D3, 10), NY), 91)]


def test_a_metric_in_two_folders_is_counted_once(database_url, db, tmp_path):
    enrol(database_url, 1)
    b = TakeoutBuilder(3)
    utc = dt.UTC
    # D1: only the JSON (read as local). D2: the JSON and its CSV twin with UTC times; the CSV wins,
    # and its Health Connect row (from another app) is dropped.
    b.heart_rate_json(D1, [(at(D1, 12), 60, 2), (at(D2, 12), 61, 2)])
    b.heart_rate_csv(
        D2,
        [
            (dt.datetime(2024, 3, 2, 17, 0, tzinfo=utc), 70, "Pixel Watch 2"),
            (dt.datetime(2024, 3, 2, 17, 0, 5, tzinfo=utc), 71, "Pixel Watch 2"),
            (dt.datetime(2024, 3, 2, 17, 0, 10, tzinfo=utc), 99, "Samsung Health via Health Connect"),
        ],
    )
    # The same HRV file in the Google Health tree and in an old Takeout/Fitbit tree of the same archive.
    for root in ("Takeout/Google Health", "Takeout/Fitbit"):
        b.put(
            "Heart Rate Variability",
            f"Heart Rate Variability Details - {D2}.csv",
            "timestamp,rmssd,coverage,low_frequency,high_frequency\n2024-03-02T02:00:00,41.0,0.8,400,200\n",
            root=root,
        )
    # Breathing rate twice: per-stage milli-breaths (UTC) wins over the local per-stage summary.
    b.respiratory_sleep_csv(D2, [(dt.datetime(2024, 3, 2, 11, 0, tzinfo=utc), 14.0, 13.0, 15.0, 16.0)])
    b.respiratory_summary(D2, [(at(D2, 6), 99.0, 99.0, 99.0, 99.0)])
    result = fitpipe(database_url, "import", str(b.write_zip(tmp_path / "both.zip")), "--user", "1", "--workers", "1")
    assert "Health Connect" in result.stdout
    assert rows(db, "SELECT ts, bpm FROM heart_rate ORDER BY ts") == [
        (to_utc(at(D1, 12), NY), 60),
        (dt.datetime(2024, 3, 2, 17, 0, tzinfo=utc), 70),
        (dt.datetime(2024, 3, 2, 17, 0, 5, tzinfo=utc), 71),
    ]
    assert rows(db, "SELECT count(*) FROM hrv_intraday") == [(1,)]
    assert rows(db, "SELECT day, full_sleep, deep_sleep FROM breathing_rate") == [(D1, 14.0, 13.0)]
    assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(
        db, "SELECT day, origin, data_source, samples FROM data_sources WHERE metric = 'heart_rate' ORDER BY day"
    ) == [
        (D1, "Global Export Data/heart_rate-*.json", "(not given)", 1),
        (D2, "Physical Activity_GoogleData/heart_rate_*.csv", "Pixel Watch 2", 2),
    ]
    dropped = rows(db, "SELECT dropped, assumptions FROM takeout_imports")[0]
    assert dropped[0]["heart_rate: Health Connect re-export"] == 1
    assert dropped[0]["heart_rate: copy in another folder"] == 1
    assert dropped[0]["hrv_intraday: copy in another folder"] == 1
    assert dropped[0]["breathing_rate: copy in another folder"] == 1
    # Only D1 needed the JSON's zone assumption; status shows it.
    assert any("heart_rate on 1 day(s)" in a for a in dropped[1])
    status = fitpipe(database_url, "status")
    assert "Takeout import" in status.stdout and "assumption: Global Export Data JSON times" in status.stdout


def _nothing_written(db) -> None:
    for table in (*METRIC_TABLES, "ingested_days", "quarantine", "takeout_imports"):
        assert rows(db, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_bad_archives_get_one_line_and_nothing_is_loaded(database_url, db, tmp_path, cli):
    enrol(database_url, 1)
    good = full_archive(2).write_zip(tmp_path / "good.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("this is not a zip\n")
    unknown = tmp_path / "unknown.zip"
    with zipfile.ZipFile(unknown, "w") as z:
        z.writestr("Photos/2024/img.json", "{}")
    damaged = tmp_path / "damaged.zip"
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        member = next(i for i in z.infolist() if i.filename.endswith(f"steps-{D1}.json"))
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    data[start : start + 8] = b"\xff" * 8
    damaged.write_bytes(bytes(data))
    cases = [
        (tmp_path / "missing.zip", "1", "no such file"),
        (not_zip, "1", "not a readable .zip"),
        (truncated, "1", "not a readable .zip"),
        (unknown, "1", "unknown layout"),
        (damaged, "1", "damaged archive"),
        (good, "42", "unknown user id"),
    ]
    for path, user, message in cases:
        result = cli("import", str(path), "--user", user)
        assert result.exit_code == 2, (path, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (path, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    assert cli("import", str(good), "--user", "1", "--timezone", "Mars/Olympus").exit_code == 2
    _nothing_written(db)


def test_dry_run_lists_what_it_would_load_and_loads_nothing(database_url, db, tmp_path):
    enrol(database_url, 1)
    result = fitpipe(
        database_url, "import", str(full_archive(3).write_zip(tmp_path / "t.zip")), "--user", "1", "--dry-run"
    )
    out = result.stdout
    assert "layout google-health" in out and "dry run: nothing was loaded" in out
    for metric in ("heart_rate", "spo2", "sleep_sessions", "hrv_intraday", "active_zone_minutes"):
        assert metric in out
    assert "2024-03-01 .. 2024-03-02" in out
    assert "skipped 1 file(s): the same sleep as sleep-*.json" in out
    assert "assumption:" in out
    _nothing_written(db)


def test_imported_data_flows_through_refresh_impute_and_export(database_url, db, tmp_path):
    enrol(database_url, 1)
    b = TakeoutBuilder(3)
    utc = dt.UTC
    start = dt.datetime(2024, 3, 1, 15, 0, tzinfo=utc)
    # Two hours of 5-second heart rate with a 20-minute gap in the middle.
    samples = [
        (start + dt.timedelta(seconds=5 * i), 60 + i % 7, "Pixel Watch 2") for i in range(1440) if not 600 <= i < 840
    ]
    b.heart_rate_csv(D1, samples)
    fitpipe(database_url, "import", str(b.write_zip(tmp_path / "t.zip")), "--user", "1", "--workers", "1")
    assert rows(db, "SELECT count(*) FROM heart_rate") == [(len(samples),)]
    fitpipe(database_url, "aggregate", "refresh", "--full")
    assert rows(db, "SELECT count(*) FROM rollup_1min WHERE metric = 'heart_rate'") == [(100,)]
    fitpipe(database_url, "impute", "--user", "1", "--method", "linear")
    assert rows(db, "SELECT count(*) FROM imputed_values WHERE metric = 'heart_rate'")[0][0] == 20
    out = tmp_path / "hr.csv"
    fitpipe(database_url, "export", "--metric", "heart_rate", "--resolution", "1min", "--output", str(out))
    assert len(out.read_text().splitlines()) == 101
    assert iso_z(start)  # the writer's UTC format round-trips


def test_nightly_ingest_of_a_takeout_participant_defers_days_no_archive_covers(database_url, db, tmp_path, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-05")
    enrol(database_url, 1)
    b = TakeoutBuilder(2)
    b.heart_rate_json(D1, [(at(D1, 10), 60, 2), (at(D2, 10), 61, 2)])
    fitpipe(database_url, "import", str(b.write_zip(tmp_path / "t.zip")), "--user", "1", "--workers", "1")
    fitpipe(database_url, "ingest", "--days", "2", "--workers", "1")
    assert rows(db, "SELECT day, state, note FROM ingested_days WHERE state = 'deferred' ORDER BY day") == [
        (D3, "deferred", "not in any imported Takeout archive yet; import a newer archive with `fitpipe import`"),
        (
            dt.date(2024, 3, 4),
            "deferred",
            "not in any imported Takeout archive yet; import a newer archive with `fitpipe import`",
        ),
    ]
    assert rows(db, "SELECT count(*) FROM heart_rate") == [(2,)]
