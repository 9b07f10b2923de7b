"""adherence, the Prometheus metrics file and reset, against the real database."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from conftest import ADMIN_URL, empty_database, url_for
from fitpipe.cli import app
from fitpipe.participants import add_participant


@pytest.fixture(scope="module")
def cohort(database_url):
    """Three UTC participants, a week each; user 3 without wear gaps."""
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["--database-url", database_url, *args])
        assert result.exit_code == 0, result.output
        return result

    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
    run("seed-users", "--count", "2", "--start-date", "2024-01-01")
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_participant(
            conn,
            3,
            source="synthetic",
            timezone="UTC",
            study_start=dt.date(2024, 1, 1),
            display_name="always-worn",
            settings={"seed": 777, "wear_gaps": False},
        )
    run("backfill", "--start", "2024-01-01", "--end", "2024-01-07", "--workers", "2")
    return database_url


def adherence_json(url, *args):
    result = CliRunner().invoke(app, ["--database-url", url, "adherence", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def independent_wear_share(conn, user_id, days=7):
    minutes = conn.execute(
        "SELECT count(DISTINCT time_bucket('1 minute', ts)) FROM heart_rate "
        "WHERE user_id = %s AND ts >= '2024-01-01' AND ts < '2024-01-08'",
        (user_id,),
    ).fetchone()[0]
    return minutes / (days * 1440)


def test_wear_flags_follow_the_threshold(cohort):
    with psycopg.connect(cohort) as conn:
        shares = {u: independent_wear_share(conn, u) for u in (1, 2, 3)}
    assert shares[3] > 0.99, "a participant without wear gaps wears the device all the time"
    threshold = (min(shares.values()) + max(shares.values())) / 2
    report = adherence_json(cohort, "--as-of", "2024-01-07", "--min-wear", f"{threshold:.4f}")
    assert report["as_of"] == "2024-01-07"
    by_user = {p["user_id"]: p for p in report["participants"]}
    assert set(by_user) == {1, 2, 3}
    for user_id, share in shares.items():
        assert by_user[user_id]["wear_share"] == pytest.approx(share, abs=1e-4)
        assert by_user[user_id]["flag_low_wear"] == (share < threshold)
    assert any(p["flag_low_wear"] for p in by_user.values())
    assert not by_user[3]["flag_low_wear"]
    counts = [p["flag_count"] for p in report["participants"]]
    assert counts == sorted(counts, reverse=True), "worst first"


def test_sleep_capture_counts_main_sleeps_of_the_last_seven_nights(cohort):
    with psycopg.connect(cohort) as conn:
        expected = dict(
            conn.execute(
                "SELECT u.user_id, count(s.date_of_sleep) FROM users u LEFT JOIN sleep_sessions s "
                "ON s.user_id = u.user_id AND s.is_main_sleep AND s.duration_s >= 180 * 60 "
                "AND s.date_of_sleep BETWEEN '2024-01-01' AND '2024-01-07' GROUP BY u.user_id"
            ).fetchall()
        )
    report = adherence_json(cohort, "--as-of", "2024-01-07", "--min-nights", "7")
    for p in report["participants"]:
        assert p["nights_captured"] == expected[p["user_id"]]
        assert p["flag_low_sleep_capture"] == (expected[p["user_id"]] < 7)
    assert not any(p["flag_no_credentials"] for p in report["participants"]), "synthetic needs no credentials"


def test_no_recent_data_flag(cohort):
    recent = adherence_json(cohort, "--as-of", "2024-01-07", "--user", "3")["participants"][0]
    assert not recent["flag_no_recent_data"]
    late = adherence_json(cohort, "--as-of", "2024-01-10", "--user", "3")["participants"][0]
    assert late["flag_no_recent_data"]
    assert late["hours_since_data"] == pytest.approx(72, abs=0.1)


def test_adherence_table_and_csv(cohort):
    result = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--as-of", "2024-01-07"])
    assert result.exit_code == 0, result.output
    assert "worst first" in result.output and "always-worn" in result.output
    csv_out = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--csv", "--as-of", "2024-01-07"])
    lines = csv_out.output.strip().splitlines()
    assert lines[0].startswith("user_id,") and len(lines) == 4


def test_adherence_rejects_bad_thresholds(cohort):
    result = CliRunner().invoke(app, ["--database-url", cohort, "adherence", "--min-wear", "1.5"])
    assert result.exit_code != 0
    assert "--min-wear" in result.output


def parse_metrics(path):
    values = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            values[(sample.name, sample.labels.get("command"))] = sample.value
    return values


def test_metrics_file_parses_and_keeps_other_commands(cohort, tmp_path):
    path = tmp_path / "textfile" / "fitpipe.prom"
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            cohort,
            "backfill",
            "--start",
            "2024-01-08",
            "--end",
            "2024-01-08",
            "--user",
            "3",
            "--metrics-file",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    values = parse_metrics(path)
    with psycopg.connect(cohort) as conn:
        run = conn.execute(
            "SELECT user_days, rows_loaded, quarantined, failed FROM ingest_runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    assert values[("fitpipe_run_user_days", "backfill")] == run[0] == 1
    assert values[("fitpipe_run_rows", "backfill")] == run[1] > 0
    assert values[("fitpipe_run_quarantined_rows", "backfill")] == run[2]
    assert values[("fitpipe_run_failures", "backfill")] == run[3] == 0
    assert values[("fitpipe_run_success", "backfill")] == 1
    first_success = values[("fitpipe_last_success_timestamp_seconds", "backfill")]
    assert values[("fitpipe_run_duration_seconds", "backfill")] > 0

    for command in (["aggregate", "refresh"], ["impute", "--user", "1"]):
        result = CliRunner().invoke(app, ["--database-url", cohort, *command, "--metrics-file", str(path)])
        assert result.exit_code == 0, result.output
    values = parse_metrics(path)
    assert ("fitpipe_run_rows", "aggregate_refresh") in values
    assert ("fitpipe_run_rows", "impute") in values
    assert values[("fitpipe_last_success_timestamp_seconds", "backfill")] == first_success
    assert not list(path.parent.glob("*.tmp*")), "written atomically, no temporary file left"


@pytest.fixture
def scratch_url():
    name = f"fitpipe_reset_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield url_for(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fitpipe_objects(url):
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        functions = {
            r[0]
            for r in conn.execute(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'fitpipe%'"
            )
        }
    return tables, functions


def test_reset_refuses_without_yes_then_drops_everything(scratch_url):
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["--database-url", scratch_url, *args])

    assert run("init-db").exit_code == 0
    assert run("seed-users", "--count", "2").exit_code == 0
    before_tables, before_functions = fitpipe_objects(scratch_url)
    assert {"users", "heart_rate", "schema_migrations", "rollup_1min"} <= before_tables

    refused = run("reset")
    assert refused.exit_code != 0
    assert "--yes" in refused.output and "heart_rate" in refused.output
    assert fitpipe_objects(scratch_url) == (before_tables, before_functions), "nothing dropped without --yes"

    dropped = run("reset", "--yes")
    assert dropped.exit_code == 0, dropped.output
    tables, functions = fitpipe_objects(scratch_url)
    assert tables == set() and functions == set()
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] == 1

    again = run("init-db")
    assert again.exit_code == 0 and "applied" in again.output
    assert run("seed-users", "--count", "1").exit_code == 0
    with psycopg.connect(scratch_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1


def test_reingesting_a_day_drops_its_imputations(cohort):
    """Imputed values were computed against the rows a re-ingest replaces; they must not outlive them."""
    runner = CliRunner()
    result = runner.invoke(app, ["--database-url", cohort, "impute", "--user", "1", "--max-gap", "8h"])
    assert result.exit_code == 0, result.output
    day_window = (
        "SELECT count(*) FROM imputed_values WHERE user_id = 1 AND metric = 'heart_rate' "
        "AND ts >= '2024-01-03' AND ts < '2024-01-04'"
    )
    other_days = (
        "SELECT count(*) FROM imputed_values WHERE user_id = 1 AND metric = 'heart_rate' "
        "AND (ts < '2024-01-03' OR ts >= '2024-01-04')"
    )
    with psycopg.connect(cohort) as conn:
        before_day, before_others = conn.execute(day_window).fetchone()[0], conn.execute(other_days).fetchone()[0]
    assert before_day > 0, "user 1 has wear gaps on 2024-01-03 to impute"
    force = [
        "--database-url",
        cohort,
        "backfill",
        "--start",
        "2024-01-03",
        "--end",
        "2024-01-03",
        "--user",
        "1",
        "--force",
    ]

    # A forced re-ingest rewrites the day, so the imputations made against its old rows go.
    result = runner.invoke(app, force)
    assert result.exit_code == 0, result.output
    assert "user=1 day=2024-01-03 status=loaded state=complete" in result.output, result.output
    with psycopg.connect(cohort) as conn:
        assert conn.execute(day_window).fetchone()[0] == 0
        assert conn.execute(other_days).fetchone()[0] == before_others
        stale = conn.execute(
            "SELECT count(*) FROM rollup_1min WHERE user_id = 1 AND metric = 'heart_rate' AND n_imputed > 0 "
            "AND bucket >= '2024-01-03' AND bucket < '2024-01-04'"
        ).fetchone()[0]
    assert stale == 0, "the refresh after the re-ingest removed the imputed minutes from the rollups"


def test_export_into_a_folder_is_one_line_and_leaves_nothing(cohort, tmp_path):
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "export", "--metric", "heart_rate", "--output", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "folder" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_create_reader_gives_a_login_that_reads_but_cannot_write(cohort):
    import os

    login = f"reader_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FITPIPE_READER_PASSWORD": "reader-password-1"}
    result = CliRunner().invoke(app, ["--database-url", cohort, "create-reader", login], env=env)
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    again = CliRunner().invoke(app, ["--database-url", cohort, "create-reader", login], env=env)
    assert again.exit_code == 0 and "updated" in again.output
    reader_url = cohort.replace("fitpipe:fitpipe@", f"{login}:reader-password-1@", 1)
    try:
        with psycopg.connect(reader_url) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM fitpipe_adherence('2024-01-07')").fetchone()[0] == 3
            assert conn.execute("SELECT count(*) FROM heart_rate").fetchone()[0] > 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM heart_rate")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{login}"')
            admin.execute(f'DROP ROLE "{login}"')


def test_create_reader_refuses_a_missing_or_short_password(cohort):
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "create-reader", "someone"], env={"FITPIPE_READER_PASSWORD": ""}
    )
    assert result.exit_code != 0 and "FITPIPE_READER_PASSWORD" in result.output
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "create-reader", "someone"], env={"FITPIPE_READER_PASSWORD": "short"}
    )
    assert result.exit_code != 0 and "8 characters" in result.output


def test_parquet_export_streams_row_groups_that_equal_the_table(cohort, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from fitpipe.output import parquet

    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 20_000)
    target = tmp_path / "hr.parquet"
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            cohort,
            "export",
            "--metric",
            "heart_rate",
            "--user",
            "1",
            "--resolution",
            "raw",
            "--format",
            "parquet",
            "--output",
            str(target),
        ],
    )
    assert result.exit_code == 0, result.output
    file = pq.ParquetFile(target)
    table = file.read()
    with psycopg.connect(cohort) as conn:
        count, first, last, total = conn.execute(
            "SELECT count(*), min(ts), max(ts), sum(bpm::float8) FROM heart_rate WHERE user_id = 1"
        ).fetchone()
    assert table.num_rows == count
    assert file.metadata.num_row_groups == -(-count // 20_000), "one row group per fetched batch"
    assert table.column_names == ["user_id", "ts", "bpm", "imputed"]
    times = table.column("ts").to_pylist()
    assert (times[0], times[-1]) == (first, last)
    assert sum(table.column("bpm").to_pylist()) == pytest.approx(total, rel=1e-6)
    assert set(table.column("user_id").to_pylist()) == {1}


def test_parquet_needs_a_file(cohort):
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "export", "--metric", "heart_rate", "--format", "parquet"]
    )
    assert result.exit_code != 0 and "--output" in result.output
