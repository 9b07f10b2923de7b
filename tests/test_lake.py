"""`fitpipe lake sync`: the Parquet lake equals the database's settled days, table by table,
read with DuckDB straight from the files (not with fitpipe's reader), after a backfill, a
--force re-ingest with new content, imputation, a withdrawal with --delete-data and raw
retention; a sync killed with SIGKILL and run again equals a clean sync."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from fitpipe.api import Store
from fitpipe.catalogue import METRICS
from fitpipe.participants import add_participant
from support.cli import fitpipe
from support.db import empty_database

duckdb = pytest.importorskip("duckdb", reason="the lake extra (duckdb) is not installed")

ZONE = "America/New_York"
START = dt.date(2024, 1, 1)
TODAY = dt.date(2024, 1, 8)
LAST = dt.date(2024, 1, 4)  # the last day load() loads by default
ROLLUPS = ("rollup_1min", "rollup_1h", "rollup_1d")
TABLES = (*(m.table for m in METRICS), *ROLLUPS, "imputed_values")


def _db_columns(conn, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    ).fetchall()


def database_rows(conn, table: str, before: dt.datetime | None = None) -> list[tuple]:
    """Every row of the table (before an instant, when given), reals widened exactly, enums as
    text, in one order."""
    columns = _db_columns(conn, table)
    select = ", ".join(
        f"{name}::float8" if kind == "real" else f"{name}::text" if kind.startswith("rollup_") else name
        for name, kind in columns
    )
    where = ""
    if before is not None:
        where = f" WHERE {'bucket' if table in ROLLUPS else 'ts'} < %(before)s"
    return conn.execute(
        f"SELECT {select} FROM {table}{where} ORDER BY {', '.join(n for n, _ in columns)}", {"before": before}
    ).fetchall()


def lake_rows(root: Path, table: str, columns: list[str]) -> list[tuple]:
    """The same columns of the table read by DuckDB from every Parquet file under its directory."""
    files = sorted((root / f"table={table}").glob("month=*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    listed = ", ".join(f"'{f}'" for f in files)
    select = ", ".join(f'"{c}"' for c in columns)
    return con.execute(
        f"SELECT {select} FROM read_parquet([{listed}], hive_partitioning = false) ORDER BY {select}"
    ).fetchall()


def local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(ZONE))


def assert_lake_equals_database(
    conn, root: Path, last_day: dt.date, except_tables: tuple[str, ...] = ()
) -> dict[str, int]:
    """Table by table, the lake holds the database's rows. Rollups and imputed values go by
    calendar day, so the last settled night's early morning (in the next, unsettled, calendar
    day) waits for that day."""
    counts = {}
    for table in TABLES:
        if table in except_tables:
            continue
        columns = [name for name, _ in _db_columns(conn, table)]
        derived = table in ROLLUPS or table == "imputed_values"
        before = local_midnight(last_day + dt.timedelta(days=1)) if derived else None
        expected, found = database_rows(conn, table, before), lake_rows(root, table, columns)
        assert len(found) == len(expected), f"{table}: lake {len(found)} rows, database {len(expected)}"
        assert found == expected, f"{table}: lake rows differ from the database"
        counts[table] = len(expected)
    return counts


def files_and_times(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def sync(url: str, root: Path) -> str:
    return fitpipe(url, "lake", "sync", "--root", str(root)).stdout


def load(url: str, conn, monkeypatch, users=(1, 2), days=4) -> None:
    empty_database(conn)
    for user_id in users:
        add_participant(conn, user_id, source="synthetic", timezone=ZONE, study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", TODAY.isoformat())
    end = START + dt.timedelta(days=days - 1)
    fitpipe(url, "backfill", "--start", START.isoformat(), "--end", end.isoformat(), "--workers", "2")


@pytest.mark.slow
def test_lake_follows_the_database_through_reingest_imputation_withdrawal_and_retention(
    db, database_url, monkeypatch, tmp_path
):
    root = tmp_path / "lake"
    load(database_url, db, monkeypatch)
    assert db.execute("SELECT count(*) FROM ingested_days WHERE state IN ('complete', 'empty')").fetchone()[0] == 8

    out = sync(database_url, root)
    assert "8 participant-day(s) of data" in out
    counts = assert_lake_equals_database(db, root, LAST)
    assert counts["heart_rate"] > 400_000 and counts["rollup_1min"] > 0 and counts["sleep_sessions"] > 0

    # Typed from the catalogue, zstd, sorted by participant and time.
    import pyarrow.parquet as pq

    heart = sorted((root / "table=heart_rate").glob("month=*/*.parquet"))[0]
    schema = pq.read_schema(heart)
    assert str(schema.field("bpm").type) == "float" and str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("user_id").type) == "int32" and str(schema.field("ledger_day").type) == "date32[day]"
    assert pq.ParquetFile(heart).metadata.row_group(0).column(0).compression == "ZSTD"
    azm = pq.read_schema(next((root / "table=active_zone_minutes").glob("month=*/*.parquet")))
    assert str(azm.field("active_zone_minutes").type) == "int16"
    rollup = pq.read_schema(next((root / "table=rollup_1h").glob("month=*/*.parquet")))
    assert str(rollup.field("metric").type).startswith("dictionary<values=string")
    order = duckdb.connect().execute(f"SELECT user_id, ts FROM read_parquet('{heart}')").fetchall()
    assert order == sorted(order)

    # Nothing changed: nothing written.
    before = files_and_times(root)
    assert "nothing to do" in sync(database_url, root)
    assert files_and_times(root) == before

    # A --force re-ingest of one day with new content (another generator seed) rewrites that day.
    db.execute("UPDATE participant_sources SET settings = jsonb_set(settings, '{seed}', '12345') WHERE user_id = 1")
    old_hash = db.execute("SELECT content_hash FROM ingested_days WHERE user_id = 1 AND day = '2024-01-02'").fetchone()
    fitpipe(database_url, "backfill", "--start", "2024-01-02", "--end", "2024-01-02", "--user", "1", "--force")
    new_hash = db.execute("SELECT content_hash FROM ingested_days WHERE user_id = 1 AND day = '2024-01-02'").fetchone()
    assert new_hash != old_hash
    out = sync(database_url, root)
    # Its night runs into the next calendar day, whose rollups change too.
    assert "1 participant-day(s) of data and 2 of rollups changed" in out, out
    assert_lake_equals_database(db, root, LAST)

    # Imputed values with their provenance, and the rollups that count them.
    fitpipe(database_url, "impute", "--metric", "heart_rate", "--max-gap", "2h")
    fitpipe(database_url, "aggregate", "refresh")
    assert db.execute("SELECT count(*) FROM imputed_values").fetchone()[0] > 0
    sync(database_url, root)
    assert_lake_equals_database(db, root, LAST)

    # A withdrawal with --delete-data reaches the lake, and the manifest says when.
    fitpipe(database_url, "participants", "withdraw", "2", "--delete-data", "--yes")
    out = sync(database_url, root)
    assert "removed withdrawn participant(s) 2" in out
    assert_lake_equals_database(db, root, LAST)
    manifest = json.loads((root / "_lake.json").read_text())
    (withdrawal,) = manifest["withdrawals"]
    assert withdrawal["user_id"] == 2 and withdrawal["days"] == 4
    assert dt.datetime.fromisoformat(withdrawal["removed_at"]) > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    for table in TABLES:
        for path in (root / f"table={table}").glob("month=*/*.parquet"):
            assert (
                duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{path}') WHERE user_id = 2").fetchone()[0]
                == 0
            )

    # Raw retention drops old 1 Hz rows from the database; the lake keeps them and the rollups agree.
    heart_before = database_rows(db, "heart_rate")
    export_args = ("export", "--metric", "heart_rate", "--user", "1", "--start", "2024-01-01", "--end", "2024-01-04")
    before_csv = tmp_path / "before.csv"
    fitpipe(database_url, *export_args, "--resolution", "raw", "--with-imputed", "--output", str(before_csv))
    frame_before = Store(database_url).frame("heart_rate", [1], "2024-01-01", "2024-01-04", resolution="raw", tz="utc")
    fitpipe(database_url, "maintain", "--raw-retention-days", "3")
    assert len(database_rows(db, "heart_rate")) < len(heart_before)
    assert "nothing to do" in sync(database_url, root)
    assert_lake_equals_database(db, root, LAST, except_tables=("heart_rate",))
    columns = [name for name, _ in _db_columns(db, "heart_rate")]
    assert lake_rows(root, "heart_rate", columns) == heart_before

    # export and Store.frame read the dropped days' rows from the lake when FITPIPE_LAKE_ROOT names it.
    after_csv = tmp_path / "after.csv"
    fitpipe(database_url, *export_args, "--resolution", "raw", "--with-imputed", "--output", str(after_csv))
    assert after_csv.read_bytes() != before_csv.read_bytes()  # without the lake, days 1-4 lost rows
    monkeypatch.setenv("FITPIPE_LAKE_ROOT", str(root))
    fitpipe(database_url, *export_args, "--resolution", "raw", "--with-imputed", "--output", str(after_csv))
    assert after_csv.read_bytes() == before_csv.read_bytes()
    frame_after = Store(database_url).frame("heart_rate", [1], "2024-01-01", "2024-01-04", resolution="raw", tz="utc")
    pd.testing.assert_frame_equal(frame_after, frame_before)


def _start_sync(url: str, root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", "lake", "sync", "--root", str(root)],
        env={**os.environ, "FITPIPE_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_sync_killed_mid_write_then_run_again_equals_a_clean_sync(db, database_url, monkeypatch, tmp_path):
    load(database_url, db, monkeypatch, users=(1,), days=2)
    root, clean = tmp_path / "lake", tmp_path / "clean"
    sync(database_url, root)
    first_manifest = (root / "_lake.json").read_text()
    fitpipe(database_url, "backfill", "--start", "2024-01-03", "--end", "2024-01-05", "--workers", "2")

    process = _start_sync(database_url, root)
    deadline = time.monotonic() + 120
    while not any(root.rglob(".tmp-*")):
        assert process.poll() is None, "the sync finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    # The previous lake is intact: the old manifest, and every file it names.
    assert (root / "_lake.json").read_text() == first_manifest
    for entry in json.loads(first_manifest)["files"]:
        assert (root / entry["path"]).exists()

    sync(database_url, root)
    sync(database_url, clean)
    counts = assert_lake_equals_database(db, root, dt.date(2024, 1, 5))
    assert counts["heart_rate"] > 300_000
    for table in TABLES:
        columns = [name for name, _ in _db_columns(db, table)]
        assert lake_rows(root, table, columns) == lake_rows(clean, table, columns), table
    # Nothing of the killed run is left behind: every Parquet file is one the manifest names.
    named = {e["path"] for e in json.loads((root / "_lake.json").read_text())["files"]}
    on_disk = {str(p.relative_to(root)) for p in root.glob("table=*/month=*/*") if p.is_file()}
    assert on_disk == named
    assert not list(root.rglob(".tmp-*"))


def test_fitpipe_lake_connect_gives_one_view_per_table(db, database_url, monkeypatch, tmp_path):
    import fitpipe.lake

    load(database_url, db, monkeypatch, users=(1,), days=1)
    sync(database_url, tmp_path)
    con = fitpipe.lake.connect(tmp_path)
    views = {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == set(TABLES)
    expected = db.execute("SELECT count(*), avg(bpm::float8) FROM heart_rate").fetchone()
    found = con.execute("SELECT count(*), avg(bpm) FROM heart_rate").fetchone()
    assert found[0] == expected[0] > 0 and found[1] == pytest.approx(expected[1], rel=1e-12)
    # Tables without rows are views with the lake's columns and no rows.
    assert con.execute("SELECT count(*) FROM heart_rate_confidence").fetchone()[0] == 0


def test_a_lake_root_that_is_a_file_or_a_foreign_manifest_is_one_line(db, database_url, tmp_path):
    empty_database(db)
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = fitpipe(database_url, "lake", "sync", "--root", str(afile), ok=False)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "_lake.json").write_text("{not json")
    result = fitpipe(database_url, "lake", "sync", "--root", str(tmp_path / "lake"), ok=False)
    assert result.exit_code == 2 and "is not a lake manifest" in result.stderr


def test_the_day_each_rollup_bucket_belongs_to_follows_zone_changes_and_dst():
    """The sync finds each day's rollup_1d rows at the instant the participant's local day begins,
    computed for a whole year at once: it must equal User.day_start on every day, across daylight
    saving (Santiago's midnight does not exist on its spring-forward day) and zone changes."""
    import pyarrow as pa

    from fitpipe.lake.state import _day_starts
    from fitpipe.participants import User

    moves = ((dt.date(2024, 3, 1), "America/Santiago"), (dt.date(2024, 6, 5), "Asia/Tokyo"))
    users = {
        1: User(1, "one", ZONE, "synthetic", START),
        2: User(2, "two", "America/Havana", "synthetic", START, zones=moves),
        3: User(3, "three", "UTC", "synthetic", START),
    }
    keys = [(u, dt.date(2023, 12, 1) + dt.timedelta(days=i)) for u in (2, 1, 3) for i in range(400)]
    table = pa.table({"user_id": pa.array([u for u, _ in keys], pa.int32()), "day": [d for _, d in keys]})
    expected = [users[u].day_start(d) for u, d in keys]
    got = [dt.datetime.fromtimestamp(int(us) / 1e6, dt.UTC) for us in _day_starts(users, table)]
    assert got == expected
