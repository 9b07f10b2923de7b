"""Spark (pyspark in local mode, on the machine's Java runtime) reads the lake's files that the
manifest names and computes the per-participant monthly means that SQL computes on the database,
even beside a part file that a killed sync left behind (which a glob of the folders would read too).

Needs the `spark` extra (`pip install -e '.[spark]'`) and a Java runtime (Debian: openjdk-17-jre);
skipped with the reason when either is missing."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from fitpipe.lake import files as lake_files
from fitpipe.participants import add_participant
from support.cli import fitpipe
from support.db import empty_database

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="no Java runtime on PATH for Spark"),
]

MONTHLY_SQL = """
    SELECT user_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM') AS month, avg(bpm::float8), count(*)
    FROM heart_rate GROUP BY 1, 2 ORDER BY 1, 2
"""


def test_spark_monthly_means_equal_sql(db, database_url, monkeypatch, tmp_path):
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    empty_database(db)
    for user_id, zone in ((1, "Europe/Berlin"), (2, "America/Los_Angeles")):
        add_participant(db, user_id, source="synthetic", timezone=zone, study_start=dt.date(2024, 1, 30))
    monkeypatch.setenv("FITPIPE_TODAY", "2024-02-06")
    fitpipe(database_url, "backfill", "--start", "2024-01-30", "--end", "2024-02-02", "--workers", "2")
    fitpipe(database_url, "lake", "sync", "--root", str(tmp_path))
    expected = db.execute(MONTHLY_SQL).fetchall()
    assert {month for _, month, _, _ in expected} == {"2024-01", "2024-02"} and len(expected) == 4
    named = lake_files(tmp_path, "heart_rate")
    assert len(named) == 2
    # What a sync killed between writing a part and swapping the manifest leaves: a finished part
    # the manifest does not name.
    stray = Path(named[0]).with_name("part-u0001-u0010-000000000000.parquet")
    shutil.copyfile(named[0], stray)

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("fitpipe-lake-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        heart = spark.read.option("basePath", str(tmp_path / "table=heart_rate")).parquet(*named)
        assert heart.select("month").distinct().count() == 2
        globbed = spark.read.parquet(str(tmp_path / "table=heart_rate"))
        assert globbed.count() > heart.count()  # the stray part's rows, twice
        rows = (
            heart.groupBy("user_id", F.date_format("ts", "yyyy-MM").alias("utc_month"))
            .agg(F.avg(F.col("bpm").cast("double")).alias("mean"), F.count("*").alias("n"))
            .orderBy("user_id", "utc_month")
            .collect()
        )
    finally:
        spark.stop()
    found = [(r["user_id"], r["utc_month"], r["mean"], r["n"]) for r in rows]
    assert [(u, m, n) for u, m, _, n in found] == [(u, m, n) for u, m, _, n in expected]
    for (_, _, spark_mean, _), (_, _, sql_mean, _) in zip(found, expected, strict=True):
        assert spark_mean == pytest.approx(sql_mean, rel=1e-12)
