"""Compression (`fitpipe maintain`), storage in `status`, and exact rollups: the contents of every
table stay the same whatever happens to the chunks and however often a day is re-ingested."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from fitpipe.catalogue import METRICS
from fitpipe.derive.maintain import edition
from fitpipe.participants import add_participant
from support.cli import fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

START = dt.date(2024, 1, 1)
# Times the loads and refreshes write: they differ between two runs by design.
VOLATILE = ("imputed_at",)


def data_checksums(conn) -> dict[str, tuple]:
    """(rows, md5 of every row in a fixed order) for every hypertable: the data, rollups included."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = 'public' "
            "ORDER BY 1"
        ).fetchall()
    ]
    sums = {}
    for table in tables:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
                "AND column_name <> ALL(%s) ORDER BY ordinal_position",
                (table, list(VOLATILE)),
            ).fetchall()
        ]
        row = f"({', '.join(columns)})::text"
        sums[table] = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg({row}, '|' ORDER BY {row}), '')) FROM {table}"
        ).fetchone()
    return sums


def compressed_chunks(conn) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT hypertable_name, count(*) FROM timescaledb_information.chunks WHERE is_compressed GROUP BY 1"
        ).fetchall()
    )


@pytest.fixture
def community(db):
    if edition(db) != "community":
        pytest.skip("compression needs the community edition (CI runs it; see .ci/run)")
    return db


def load(db, database_url, monkeypatch, users=(1,), days=3):
    for user_id in users:
        add_participant(db, user_id, source="synthetic", timezone="America/New_York", study_start=START)
    monkeypatch.setenv("FITPIPE_TODAY", (START + dt.timedelta(days=days + 3)).isoformat())
    end = START + dt.timedelta(days=days - 1)
    fitpipe(database_url, "backfill", "--start", START.isoformat(), "--end", end.isoformat(), "--workers", "2")
    fitpipe(database_url, "impute", "--metric", "heart_rate", "--method", "linear")
    fitpipe(database_url, "aggregate", "refresh")
    return end


def rewrite_everything(database_url: str, end: dt.date) -> None:
    """Re-ingest every day, impute again and refresh: every write path a day's data goes through."""
    fitpipe(
        database_url, "backfill", "--start", START.isoformat(), "--end", end.isoformat(), "--force", "--workers", "2"
    )
    fitpipe(database_url, "impute", "--metric", "heart_rate", "--method", "linear")
    fitpipe(database_url, "aggregate", "refresh")


def rewrite_full(database_url: str, db) -> dict[str, tuple]:
    """A full rebuild (another plan and row order); returns the checksums after it."""
    fitpipe(database_url, "aggregate", "refresh", "--full")
    return data_checksums(db)


def test_backfill_force_leaves_every_table_bit_identical(db, database_url, monkeypatch):
    end = load(db, database_url, monkeypatch, users=(1, 2), days=2)
    before = data_checksums(db)
    assert before["rollup_1min"][0] > 0 and before["spo2"][0] > 0 and before["imputed_values"][0] > 0
    rewrite_everything(database_url, end)
    assert [data_checksums(db), rewrite_full(database_url, db)] == [before, before]


def test_rollup_sums_are_exact_whatever_the_order(db, database_url, monkeypatch):
    load(db, database_url, monkeypatch, days=1)
    # Summed in double precision, the float4 values of a minute add up exactly, so the sum in the
    # opposite order is the same to the last bit (sum(real) would round at every step).
    differ = db.execute(
        """
        SELECT count(*) FILTER (WHERE r.sum_measured <> raw.s_reversed), count(*)
        FROM rollup_1min r
        JOIN (SELECT time_bucket('1 minute', ts) AS bucket, sum(rmssd::float8 ORDER BY ts DESC) AS s_reversed
              FROM hrv_intraday WHERE user_id = 1 GROUP BY 1) raw ON raw.bucket = r.bucket
        WHERE r.user_id = 1 AND r.metric = 'hrv_intraday' AND r.field = 'rmssd'
        """
    ).fetchone()
    assert differ[1] > 0 and differ[0] == 0
    hourly = db.execute(
        "SELECT count(*) FROM rollup_1h h WHERE h.user_id = 1 AND h.metric = 'hrv_intraday' AND h.sum_measured <> "
        "(SELECT sum(m.sum_measured ORDER BY m.bucket DESC) FROM rollup_1min m WHERE m.user_id = 1 "
        " AND m.metric = h.metric AND m.field = h.field"
        " AND m.bucket >= h.bucket AND m.bucket < h.bucket + interval '1 hour')"
    ).fetchone()[0]
    assert hourly == 0


def test_maintain_compresses_settled_chunks_and_status_shows_the_bytes(community, database_url, monkeypatch):
    db = community
    load(db, database_url, monkeypatch, days=3)
    result = fitpipe(database_url, "maintain")
    assert "compressed" in result.stdout
    chunks = compressed_chunks(db)
    # Three settled days of 1-day heart-rate chunks (a day in New York spans two UTC days).
    assert chunks.get("heart_rate", 0) >= 3
    again = fitpipe(database_url, "maintain")
    assert "compressed 0 chunk(s)" in again.stdout
    report = json.loads(fitpipe(database_url, "status", "--json").stdout)
    heart = next(t for t in report["storage"] if t["table"] == "heart_rate")
    assert heart["compressed_bytes"] > 0 and heart["before_compression_bytes"] > 10 * heart["compressed_bytes"]
    assert heart["ratio"] > 10 and heart["bytes"] >= heart["compressed_bytes"]
    # Each total is what TimescaleDB's hypertable_size() says (status sums its view in one query).
    sizes = dict(
        db.execute(
            "SELECT t, hypertable_size(t::regclass) FROM unnest(%s::text[]) AS t",
            ([t["table"] for t in report["storage"]],),
        ).fetchall()
    )
    assert {t["table"]: t["bytes"] for t in report["storage"]} == sizes
    assert {m.table for m in METRICS} <= sizes.keys()
    assert "storage per table" in fitpipe(database_url, "status").stdout
    # Writes into compressed chunks are not capped at TimescaleDB's default 100,000 rows.
    with psycopg.connect(database_url) as fresh:
        assert fresh.execute("SHOW timescaledb.max_tuples_decompressed_per_dml_transaction").fetchone()[0] == "0"


def test_maintain_leaves_chunks_with_unsettled_days_alone(community, database_url, monkeypatch):
    db = community
    load(db, database_url, monkeypatch, users=(1,), days=3)
    # User 2 has only the first day: everything after it is not settled for the cohort yet.
    add_participant(db, 2, source="synthetic", timezone="UTC", study_start=START)
    fitpipe(database_url, "backfill", "--start", START.isoformat(), "--end", START.isoformat(), "--user", "2")
    fitpipe(database_url, "maintain")
    horizon = dt.datetime.combine(START + dt.timedelta(days=1), dt.time(), dt.UTC)
    late = db.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE is_compressed AND range_end > %s", (horizon,)
    ).fetchone()[0]
    assert compressed_chunks(db).get("heart_rate", 0) >= 1
    assert late == 0


def test_compressed_days_reingest_impute_and_refresh_to_the_same_contents(community, database_url, monkeypatch):
    db = community
    end = load(db, database_url, monkeypatch, users=(1, 2), days=3)
    uncompressed = data_checksums(db)
    fitpipe(database_url, "maintain")
    assert compressed_chunks(db).get("heart_rate", 0) >= 3
    assert data_checksums(db) == uncompressed  # compression alone changes nothing
    # Every write path on the compressed days: re-ingest, imputation, refresh (incremental and full).
    rewrite_everything(database_url, end)
    assert [data_checksums(db), rewrite_full(database_url, db)] == [uncompressed, uncompressed]
    # The next maintain recompresses what the re-ingest decompressed.
    fitpipe(database_url, "maintain")
    partial = db.execute("SELECT count(*) FROM _timescaledb_catalog.chunk WHERE status & 8 <> 0").fetchone()[0]
    assert partial == 0 and data_checksums(db) == uncompressed


def test_maintain_on_a_database_without_schema_is_one_line(tmp_path):
    import uuid

    import psycopg

    from support.db import ADMIN_URL, url_for

    name = f"fitpipe_test_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        result = fitpipe(url_for(name), "maintain", ok=False)
        assert result.exit_code == 4
        assert result.stderr.count("\n") == 1 and "init-db" in result.stderr
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_rollup_enums_name_every_intraday_metric_and_field(db):
    from fitpipe.catalogue import INTRADAY

    labels = dict(
        db.execute(
            "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e "
            "JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname IN ('rollup_metric', 'rollup_field') "
            "GROUP BY 1"
        ).fetchall()
    )
    assert set(labels["rollup_metric"]) == {m.name for m in INTRADAY}
    assert set(labels["rollup_field"]) == {c.name for m in INTRADAY for c in m.values}
