"""`fitpipe export`: the CSV holds what the database holds, in a stable shape, and errors leave no file.

Expected rows come from SELECTs over the raw, rollup and imputed_values tables. The module
shares one data set: user 1 in America/New_York with wear gaps, 2024-11-02..11-04 (DST ends on
11-03), heart rate imputed (profile); and user 2, whose ledger claims a heart-rate day that has
no rows (as after a retention job), to reach the error paths that start writing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from fitpipe.catalogue import BY_NAME, INTRADAY
from fitpipe.cli import app
from support.cli import fitpipe, run_fitpipe
from support.db import empty_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

NY = "America/New_York"
FIRST, FALL, LAST = dt.date(2024, 11, 2), dt.date(2024, 11, 3), dt.date(2024, 11, 4)


# --------------------------------------------------------------------------------------------
# helpers


def parse(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows, "no header"
    return rows[0], rows[1:]


def export(url: str, path: Path, *args: str) -> tuple[list[str], list[list[str]]]:
    fitpipe(url, "export", *args, "--output", str(path))
    return parse(path.read_text())


def day_bounds(first: dt.date, last: dt.date) -> tuple:
    """SQL parameters for [local midnight of first, local midnight after last) in New York."""
    return (first, NY, last + dt.timedelta(days=1), NY)


IN_DAYS = "ts >= (%s::timestamp AT TIME ZONE %s) AND ts < (%s::timestamp AT TIME ZONE %s)"


def f32(text: str) -> np.float32:
    return np.float32(float(text))


def raw_header(metric) -> list[str]:
    return ["user_id", metric.time_column, *(c.name for c in metric.extra_key), *(c.name for c in metric.values)] + (
        ["imputed"] if metric.imputable else []
    )


def rollup_header(metric) -> list[str]:
    return ["user_id", "bucket", *(f"{c.name}{s}" for c in metric.values for s in ("", "_min", "_max")), "n"] + (
        ["imputed", "imputed_share"] if metric.imputable else []
    )


# --------------------------------------------------------------------------------------------
# the data set


@pytest.fixture(scope="module")
def world(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        fitpipe(database_url, "seed-users", "--count", "1", "--timezone", NY, "--start-date", FIRST.isoformat())
        fitpipe(database_url, "backfill", "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--workers", "2")
        fitpipe(database_url, "impute", "--user", "1", "--metric", "heart_rate")
        assert (
            conn.execute(
                "SELECT count(*) FROM imputed_values WHERE ts >= (%s::timestamp AT TIME ZONE %s) "
                "AND ts < (%s::timestamp AT TIME ZONE %s)",
                day_bounds(FALL, FALL),
            ).fetchone()[0]
            > 0
        )
        fitpipe(database_url, "seed-users", "--count", "2", "--timezone", "UTC", "--start-date", FIRST.isoformat())
        conn.execute(
            "INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined) "
            "VALUES (2, %s, 'synthetic', 1000, %s, 0)",
            (FALL, json.dumps({"heart_rate": 1000})),
        )
        yield conn


# --------------------------------------------------------------------------------------------
# content


def test_raw_rows_equal_the_database(world, database_url, tmp_path):
    conn = world
    header, rows = export(
        database_url,
        tmp_path / "hr.csv",
        "--metric",
        "heart_rate",
        "--user",
        "1",
        "--resolution",
        "raw",
        "--start",
        FALL.isoformat(),
        "--end",
        FALL.isoformat(),
    )
    assert header == ["user_id", "ts", "bpm", "imputed"]
    expected = conn.execute(
        f"SELECT user_id, ts, bpm FROM heart_rate WHERE user_id = 1 AND {IN_DAYS} ORDER BY ts", day_bounds(FALL, FALL)
    ).fetchall()
    assert len(rows) == len(expected) > 80_000
    for row, (user_id, ts, bpm) in zip(rows, expected, strict=True):
        assert len(row) == 4
        assert int(row[0]) == user_id
        assert dt.datetime.fromisoformat(row[1]) == ts, row
        assert f32(row[2]) == np.float32(bpm), (row, bpm)
        assert row[3] == "f"


def test_column_order_is_stable_and_follows_the_catalogue(world, database_url, tmp_path):
    for metric in INTRADAY:
        for resolution, expected in (("raw", raw_header(metric)), ("1h", rollup_header(metric))):
            header, rows = export(
                database_url,
                tmp_path / f"{metric.name}-{resolution}.csv",
                "--metric",
                metric.name,
                "--user",
                "1",
                "--resolution",
                resolution,
                "--start",
                FALL.isoformat(),
                "--end",
                LAST.isoformat(),
            )
            assert header == expected, (metric.name, resolution)
            assert rows and all(len(r) == len(header) for r in rows)
            again, _ = export(
                database_url,
                tmp_path / "again.csv",
                "--metric",
                metric.name,
                "--user",
                "1",
                "--resolution",
                resolution,
                "--start",
                FALL.isoformat(),
                "--end",
                FALL.isoformat(),
            )
            assert again == header


@pytest.mark.parametrize("level", ["1min", "1h", "1d"])
def test_rollup_exports_equal_the_rollup_tables(world, database_url, tmp_path, level):
    conn = world
    for metric in (BY_NAME["heart_rate"], BY_NAME["hrv_intraday"], BY_NAME["active_zone_minutes"]):
        header, rows = export(
            database_url, tmp_path / f"{metric.name}.csv", "--metric", metric.name, "--user", "1", "--resolution", level
        )
        assert header == rollup_header(metric)
        buckets = conn.execute(
            f"SELECT DISTINCT bucket FROM rollup_{level} WHERE user_id = 1 AND metric = %s AND n_measured > 0 "
            f"ORDER BY bucket",
            (metric.name,),
        ).fetchall()
        assert len(rows) == len(buckets) > 0, (metric.name, level)
        stored = {
            (b, f): (n, s, lo, hi)
            for b, f, n, s, lo, hi in conn.execute(
                f"SELECT bucket, field, n_measured, sum_measured, min_measured, max_measured FROM rollup_{level} "
                f"WHERE user_id = 1 AND metric = %s",
                (metric.name,),
            ).fetchall()
        }
        for row, (bucket,) in zip(rows, buckets, strict=True):
            record = dict(zip(header, row, strict=True))
            assert dt.datetime.fromisoformat(record["bucket"]) == bucket
            for column in metric.values:
                n, total, lo, hi = stored[(bucket, column.name)]
                value = total if metric.rollup == "sum" else total / n
                assert math.isclose(float(record[column.name]), value, rel_tol=1e-9, abs_tol=1e-9), (record, value)
                assert f32(record[f"{column.name}_min"]) == np.float32(lo)
                assert f32(record[f"{column.name}_max"]) == np.float32(hi)
            assert int(record["n"]) == max(stored[(bucket, c.name)][0] for c in metric.values)
            if metric.imputable:
                assert record["imputed"] == "f"


def test_with_imputed_adds_flagged_imputed_rows(world, database_url, tmp_path):
    conn = world
    span = (
        "--metric",
        "heart_rate",
        "--user",
        "1",
        "--resolution",
        "raw",
        "--start",
        FALL.isoformat(),
        "--end",
        FALL.isoformat(),
    )
    header, rows = export(database_url, tmp_path / "with.csv", *span, "--with-imputed")
    assert header == ["user_id", "ts", "bpm", "imputed", "bpm_lower", "bpm_upper"]
    flagged = {dt.datetime.fromisoformat(r[1]): f32(r[2]) for r in rows if r[3] == "t"}
    measured = [r for r in rows if r[3] == "f"]
    assert len(flagged) + len(measured) == len(rows)
    expected = {
        ts: np.float32(v)
        for ts, v in conn.execute(
            f"SELECT ts, value FROM imputed_values WHERE user_id = 1 AND metric = 'heart_rate' AND field = 'bpm' "
            f"AND {IN_DAYS}",
            day_bounds(FALL, FALL),
        ).fetchall()
    }
    assert flagged == expected and flagged
    raw_count = conn.execute(
        f"SELECT count(*) FROM heart_rate WHERE user_id = 1 AND {IN_DAYS}", day_bounds(FALL, FALL)
    ).fetchone()[0]
    assert len(measured) == raw_count
    times = [dt.datetime.fromisoformat(r[1]) for r in rows]
    assert times == sorted(times), "rows are in time order"

    _, without = export(database_url, tmp_path / "without.csv", *span)
    assert without == [r[:4] for r in measured], "without --with-imputed: exactly the measured rows, none flagged"

    # At 1 min the imputed minutes are flagged too.
    header, minutes = export(
        database_url,
        tmp_path / "min.csv",
        "--metric",
        "heart_rate",
        "--user",
        "1",
        "--resolution",
        "1min",
        "--start",
        FALL.isoformat(),
        "--end",
        FALL.isoformat(),
        "--with-imputed",
    )
    flagged_minutes = {
        dt.datetime.fromisoformat(r[1]) for r in minutes if dict(zip(header, r, strict=True))["imputed"] == "t"
    }
    assert flagged_minutes == set(expected)


def test_tz_local_prints_local_offsets_for_the_same_instants(world, database_url, tmp_path):
    span = (
        "--metric",
        "heart_rate",
        "--user",
        "1",
        "--resolution",
        "raw",
        "--start",
        FALL.isoformat(),
        "--end",
        FALL.isoformat(),
    )
    _, local_rows = export(database_url, tmp_path / "local.csv", *span, "--tz", "local")
    _, utc_rows = export(database_url, tmp_path / "utc.csv", *span, "--tz", "utc")
    assert len(local_rows) == len(utc_rows) > 0
    zone = ZoneInfo(NY)
    offsets = set()
    for here, there in zip(local_rows, utc_rows, strict=True):
        assert here[0] == there[0] and here[2:] == there[2:]
        local_time, utc_time = dt.datetime.fromisoformat(here[1]), dt.datetime.fromisoformat(there[1])
        assert local_time == utc_time
        assert utc_time.utcoffset() == dt.timedelta(0)
        assert local_time.utcoffset() == utc_time.astimezone(zone).utcoffset(), here
        offsets.add(here[1][-6:])
    assert offsets == {"-04:00", "-05:00"}


def test_stdout_streaming(world, database_url, tmp_path):
    args = ("export", "--metric", "heart_rate", "--user", "1", "--resolution", "1h")
    default = fitpipe(database_url, *args)
    dash = fitpipe(database_url, *args, "-o", "-")
    header, rows = export(database_url, tmp_path / "file.csv", *args[1:])
    assert parse(default.stdout) == parse(dash.stdout) == (header, rows)
    assert (
        len(rows)
        == world.execute(
            "SELECT count(DISTINCT bucket) FROM rollup_1h WHERE user_id = 1 "
            "AND metric = 'heart_rate' AND n_measured > 0"
        ).fetchone()[0]
    )
    proc = run_fitpipe(database_url, *args, "-o", "-")
    assert proc.returncode == 0, proc.stderr
    assert parse(proc.stdout) == (header, rows)
    assert "wrote" not in proc.stdout and "wrote" not in proc.stderr


def test_auto_picks_a_coarser_resolution_under_a_small_budget(world, database_url, tmp_path):
    conn = world
    counts = {
        "raw": conn.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1").fetchone()[0],
        **{
            level: conn.execute(
                f"SELECT count(DISTINCT bucket) FROM rollup_{level} WHERE user_id = 1 "
                f"AND metric = 'heart_rate' AND n_measured > 0"
            ).fetchone()[0]
            for level in ("1min", "1h", "1d")
        },
    }
    for budget, allowed in ((counts["1min"] * 2, {"1min"}), (100, {"1h", "1d"})):
        assert counts["raw"] > budget
        target = tmp_path / f"auto-{budget}.csv"
        proc = run_fitpipe(
            database_url,
            "export",
            "--metric",
            "heart_rate",
            "--user",
            "1",
            "--max-rows",
            str(budget),
            "-o",
            str(target),
        )
        assert proc.returncode == 0, proc.stderr
        picked = re.search(r"auto resolution: (\S+)", proc.stderr)
        assert picked, proc.stderr
        resolution = picked.group(1)
        assert resolution in allowed, (budget, proc.stderr)
        header, rows = parse(target.read_text())
        assert header == rollup_header(BY_NAME["heart_rate"])
        assert len(rows) == counts[resolution] <= budget
        assert f"wrote {len(rows):,} rows ({resolution})" in proc.stderr, proc.stderr
        assert "auto resolution" not in target.read_text()


def test_errors_leave_no_file(world, database_url, tmp_path):
    cases = {
        "unknown metric": ("--metric", "no_such_metric", "--user", "1"),
        "unknown user": ("--metric", "heart_rate", "--user", "99"),
        "empty range": ("--metric", "heart_rate", "--user", "1", "--start", "2023-01-01", "--end", "2023-01-02"),
        "range with no rows": ("--metric", "heart_rate", "--user", "2", "--resolution", "raw"),
        "1h of a daily metric": ("--metric", "daily_activity", "--user", "1", "--resolution", "1h"),
    }
    for name, args in cases.items():
        folder = tmp_path / re.sub(r"\W", "_", name)
        folder.mkdir()
        result = fitpipe(database_url, "export", *args, "-o", str(folder / "out.csv"), ok=False)
        assert result.exit_code == 2, (name, result.stderr)
        assert isinstance(result.exception, SystemExit), f"{name}: {result.exception!r}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), f"{name}: {result.stderr!r}"
        assert sorted(os.listdir(folder)) == [], f"{name}: left {os.listdir(folder)}"
    # The case that fails after it started writing, as a real process.
    folder = tmp_path / "process"
    folder.mkdir()
    proc = run_fitpipe(database_url, "export", *cases["range with no rows"], "-o", str(folder / "out.csv"))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert os.listdir(folder) == []


def test_database_error_while_writing_leaves_no_file(world, database_url, tmp_path):
    """The export has created its temporary file and waits in its COPY when the query is cancelled."""
    target = tmp_path / "out.csv"
    with psycopg.connect(database_url) as blocker, psycopg.connect(database_url, autocommit=True) as watcher:
        blocker.execute("LOCK TABLE rollup_1h IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fitpipe.cli",
                "export",
                "--metric",
                "heart_rate",
                "--user",
                "1",
                "--resolution",
                "1h",
                "-o",
                str(target),
            ],
            env={**os.environ, "FITPIPE_DATABASE_URL": database_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                waiting = watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'COPY%%'"
                ).fetchall()
                if waiting and any(name.endswith(".partial") for name in os.listdir(tmp_path)):
                    break
                assert proc.poll() is None, f"export ended early: {proc.communicate()}"
                assert time.monotonic() < deadline, f"export never reached its COPY: {os.listdir(tmp_path)}"
                time.sleep(0.05)
            watcher.execute("SELECT pg_cancel_backend(%s)", (waiting[0][0],))
            _out, err = proc.communicate(timeout=60)
        finally:
            blocker.rollback()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # The cancelled COPY breaks the connection mid-stream, so it reports as a lost connection (3).
    assert proc.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    assert os.listdir(tmp_path) == [], f"left {os.listdir(tmp_path)}"


def test_daily_metric_exports_raw(world, database_url, tmp_path):
    conn = world
    metric = BY_NAME["daily_activity"]
    expected = conn.execute(
        f"SELECT {', '.join(metric.column_names)} FROM daily_activity WHERE user_id = 1 ORDER BY day"
    ).fetchall()
    assert len(expected) == 3
    for extra in ((), ("--resolution", "raw")):
        target = tmp_path / f"daily{len(extra)}.csv"
        proc = run_fitpipe(
            database_url, "export", "--metric", "daily_activity", "--user", "1", *extra, "-o", str(target)
        )
        assert proc.returncode == 0, proc.stderr
        header, rows = parse(target.read_text())
        assert header == raw_header(metric)
        assert len(rows) == len(expected)
        for row, db_row in zip(rows, expected, strict=True):
            for column, text, value in zip(metric.columns, row, db_row, strict=True):
                if value is None:
                    assert text == ""
                elif column.pg_type == "date":
                    assert dt.date.fromisoformat(text) == value
                elif column.pg_type == "real":
                    assert f32(text) == np.float32(value)
                else:
                    assert int(text) == value
    header, rows = export(
        database_url,
        tmp_path / "one.csv",
        "--metric",
        "daily_activity",
        "--user",
        "1",
        "--start",
        FALL.isoformat(),
        "--end",
        FALL.isoformat(),
    )
    assert [r[1] for r in rows] == [FALL.isoformat()]


def test_night_metrics_export_the_night_each_day_owns(seeded, tmp_path):
    fitpipe(seeded, "backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--workers", "1")
    with psycopg.connect(seeded) as conn:
        # A night with SpO2 between two nights with SpO2, so a calendar-day cut would take halves.
        day, owned = conn.execute(
            "SELECT day, (rows_by_metric ->> 'spo2')::int FROM ingested_days d WHERE user_id = 1 "
            "AND (rows_by_metric ->> 'spo2')::int > 0 AND day > '2024-01-01' AND day < '2024-01-05' "
            "ORDER BY day LIMIT 1"
        ).fetchone()
    out = tmp_path / "spo2.csv"
    result = fitpipe(
        seeded,
        "export",
        "--metric",
        "spo2",
        "--resolution",
        "raw",
        "--start",
        str(day),
        "--end",
        str(day),
        "-o",
        str(out),
    )
    rows = list(csv.DictReader(out.open()))
    assert owned and len(rows) == owned, (len(rows), owned)
    times = [dt.datetime.fromisoformat(r["ts"]) for r in rows]
    noon = dt.datetime.combine(day, dt.time(12), dt.UTC)  # the participant is in UTC
    night = (noon, noon + dt.timedelta(days=1))
    assert all(night[0] <= t < night[1] for t in times)
    assert f"wrote {owned:,} rows" in result.stderr


def test_export_into_a_folder_is_one_line_and_leaves_nothing(cohort, tmp_path):
    result = CliRunner().invoke(
        app, ["--database-url", cohort, "export", "--metric", "heart_rate", "--output", str(tmp_path)]
    )
    assert result.exit_code == 2, result.stderr
    assert "folder" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


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
    assert result.exit_code == 2 and "--output" in result.output


def test_auto_resolution_takes_raw_when_max_rows_equals_its_estimate(loaded, tmp_path):
    with psycopg.connect(loaded) as conn:
        raw = conn.execute(
            "SELECT sum((rows_by_metric ->> 'heart_rate')::bigint) FROM ingested_days WHERE user_id = 1"
        ).fetchone()[0]
    picked = {}
    for budget in (raw, raw - 1):
        result = run_fitpipe(
            loaded,
            "export",
            "--metric",
            "heart_rate",
            "--user",
            "1",
            "--max-rows",
            str(budget),
            "-o",
            str(tmp_path / f"{budget}.csv"),
        )
        assert result.returncode == 0, result.stderr
        picked[budget] = re.search(r"auto resolution: (\S+) \(about ([\d,]+) rows", result.stderr).groups()
    assert picked[raw] == ("raw", f"{raw:,}")
    assert picked[raw - 1][0] == "1min"
    assert BY_NAME["heart_rate"].intraday
