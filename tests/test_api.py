"""The analysts' Python API returns what `fitpipe export` writes for the same request."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pytest

import fitpipe
from fitpipe.participants import add_participant
from support.cli import fitpipe as run

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

START = dt.date(2024, 3, 9)  # New York's spring-forward night falls inside


@pytest.fixture(scope="module")
def store_url(database_url):
    import psycopg

    from support.db import empty_database

    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        add_participant(conn, 1, source="synthetic", timezone="America/New_York", study_start=START)
        add_participant(conn, 2, source="synthetic", timezone="Asia/Kolkata", study_start=START)
    run(database_url, "participants", "set-timezone", "2", "Europe/London", "--from", "2024-03-10")
    import os

    os.environ["FITPIPE_TODAY"] = "2024-03-12"
    try:
        run(database_url, "backfill", "--start", "2024-03-09", "--end", "2024-03-10", "--workers", "2")
    finally:
        del os.environ["FITPIPE_TODAY"]
    run(database_url, "impute", "--metric", "heart_rate", "--method", "linear", "--max-gap", "30min")
    return database_url


def _as_text(series: pd.Series) -> list[str]:
    return [value.isoformat() if hasattr(value, "isoformat") else str(value) for value in series]


@pytest.mark.parametrize("resolution", ["raw", "1min", "1h", "1d"])
@pytest.mark.parametrize("tz", ["local", "utc"])
def test_frame_equals_the_csv_export(store_url, resolution, tz):
    args = [
        "export",
        "--metric",
        "heart_rate",
        "--resolution",
        resolution,
        "--tz",
        tz,
        "--start",
        "2024-03-09",
        "--end",
        "2024-03-10",
        "--with-imputed",
    ]
    exported = pd.read_csv(io.StringIO(run(store_url, *args).stdout), dtype=str, keep_default_na=False)
    frame = fitpipe.connect(store_url).frame(
        "heart_rate", start="2024-03-09", end="2024-03-10", resolution=resolution, tz=tz, with_imputed=True
    )
    assert list(frame.columns) == list(exported.columns)
    assert len(frame) == len(exported) > 0
    time_column = frame.columns[1]
    assert _as_text(frame[time_column]) == list(exported[time_column])
    if tz == "utc":
        assert str(frame[time_column].dtype).endswith(", UTC]")
    assert frame["imputed"].dtype == "boolean"
    assert list(frame["imputed"]) == [value == "t" for value in exported["imputed"]]
    for column in frame.columns[2:]:
        if column == "imputed":
            continue
        ours = pd.to_numeric(frame[column]).astype("float64")
        theirs = pd.to_numeric(exported[column].replace("", None)).astype("float64")
        pd.testing.assert_series_equal(ours, theirs, check_names=False, rtol=1e-6)


def test_daily_metrics_keep_dates_and_integer_types(store_url):
    frame = fitpipe.connect(store_url).frame("daily_activity", users=[1])
    assert list(frame["day"]) == [dt.date(2024, 3, 9), dt.date(2024, 3, 10)]
    assert str(frame["steps"].dtype) == "Int32" and str(frame["user_id"].dtype) == "Int32"


def test_status_and_adherence(store_url):
    store = fitpipe.connect(store_url)
    users = store.status()["users"]
    assert [(u["user_id"], u["states"]["complete"]) for u in users] == [(1, 2), (2, 2)]
    flags = store.adherence(as_of="2024-03-10")
    assert sorted(flags["user_id"]) == [1, 2] and "flag_count" in flags


def test_bad_requests_raise_one_clear_error(store_url):
    store = fitpipe.connect(store_url)
    with pytest.raises(fitpipe.errors.BadInput, match="unknown metric"):
        store.frame("pulse")
    with pytest.raises(fitpipe.errors.BadInput, match="--resolution"):
        store.frame("heart_rate", resolution="2h")


def _requests():
    from fitpipe.catalogue import METRICS

    for metric in METRICS:
        for resolution in ("raw", "1min", "1h", "1d") if metric.intraday else ("raw",):
            for with_imputed in (False, True) if metric.imputable else (False,):
                yield pytest.param(
                    metric.name, resolution, with_imputed, id=f"{metric.name}-{resolution}-{with_imputed}"
                )


@pytest.mark.parametrize("metric, resolution, with_imputed", list(_requests()))
def test_binary_copy_reads_the_same_frame_as_read_sql(store_url, monkeypatch, metric, resolution, with_imputed):
    import fitpipe.output.frames as frames

    read_columns, fast_reads = frames.read_columns, []

    def counted(*args):
        columns = read_columns(*args)
        fast_reads.append(columns is not None)
        return columns

    request = dict(
        metric=metric, resolution=resolution, with_imputed=with_imputed, start="2024-03-09", end="2024-03-10"
    )
    monkeypatch.setattr(frames, "read_columns", counted)
    try:
        fast = fitpipe.connect(store_url).frame(**request)
    except fitpipe.errors.BadInput as exc:  # no rows of this metric in the two days: both ways say so
        assert "nothing to export" in str(exc)
        return
    monkeypatch.setattr(frames, "read_columns", lambda *args: None)
    ordinary = fitpipe.connect(store_url).frame(**request)
    # read_sql gives an empty piece (a participant without rows in one of their zones) object
    # columns, and the concatenation then too; the values must be the same, to the bit.
    pd.testing.assert_frame_equal(fast, ordinary.astype(fast.dtypes), check_exact=True)
    numeric = ("smallint", "integer", "bigint", "real", "double precision")
    assert not any(
        fast[c.name].dtype == object
        for c in fitpipe.catalogue.metric(metric).values
        if c.name in fast and c.pg_type in numeric
    )
    if metric == "heart_rate" and resolution == "raw":
        assert fast_reads and all(fast_reads), "1-second heart rate is read with binary COPY"
