"""The loader's own 1-minute rollup rows (fitpipe.derive.minutes) against a rebuild from the raw tables.

The loader writes rollup_1min from the arrays it COPYs and marks its change record
minutes_current, so the refresh only rebuilds the hourly and daily levels. These tests hold it
to the refresh's SQL: `aggregate refresh --full` rebuilds every level from raw rows and must
change nothing. And a load that meets a running refresh leaves the minutes to the refresh.
"""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import psycopg
import pytest

from fitpipe import locks
from fitpipe.ingest.load import replace_day
from fitpipe.participants import list_users
from fitpipe.sources import source_for
from fitpipe.sources.synthetic.parse import parse_payloads
from support.cli import fitpipe
from support.db import empty_database
from support.sources import fetch_now

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

FIRST_NEW = dt.date(2024, 1, 3)
SNAPSHOT = "SELECT string_agg(r::text, '|' ORDER BY r::text) FROM rollup_{level} r WHERE user_id = 1"


@pytest.fixture(scope="module")
def store(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
    fitpipe(database_url, "seed-users", "--count", "1", "--start-date", "2024-01-01", "--timezone", "Asia/Kolkata")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--workers", "1")
    return database_url


@pytest.fixture(scope="module")
def day_and_payloads(store):
    """A new day whose night was worn (the synthetic wearer skips some nights), and its payloads."""
    with psycopg.connect(store) as conn:
        user = list_users(conn, [1])[0]
        for offset in range(10):
            day = FIRST_NEW + dt.timedelta(days=offset)
            payloads = source_for("synthetic").fetch_day(user, day, fetch_now())
            if "hrv_intraday" in parse_payloads(payloads, user.day_context(day)).rows:
                return day, payloads
    pytest.fail("no worn night in ten synthetic days")


def snapshot(conn) -> dict[str, str]:
    return {level: conn.execute(SNAPSHOT.format(level=level)).fetchone()[0] for level in ("1min", "1h", "1d")}


def load_day(conn, day, payloads, *, blank_coverage: bool):
    """Load the day; blank_coverage: hrv coverage missing in the first half of the night's rows (as the
    Google Health API sends it), so some minutes have no min/max for that field."""
    user = list_users(conn, [1])[0]
    ctx = user.day_context(day)

    def produce():
        parsed = parse_payloads(payloads, ctx)
        if blank_coverage:
            coverage = parsed.rows["hrv_intraday"].columns["coverage"].astype(np.float64)
            coverage[: len(coverage) // 2] = np.nan
            parsed.rows["hrv_intraday"].columns["coverage"] = coverage
        return parsed

    outcome = replace_day(conn, ctx, produce, source="synthetic", run_id=None, skip_if_done=False)
    conn.commit()
    return outcome


def test_loaded_minutes_equal_a_rebuild_from_raw_rows(store, day_and_payloads):
    day, payloads = day_and_payloads
    with psycopg.connect(store) as conn:
        assert load_day(conn, day, payloads, blank_coverage=True).status == "loaded"
        flags = conn.execute(
            "SELECT bool_and(minutes_current), count(*) FROM rollup_invalidations WHERE user_id = 1"
        ).fetchone()
        assert flags == (True, 4), "the loader's change records must say it wrote the minutes"
        written = conn.execute(
            "SELECT count(*) FILTER (WHERE min_measured IS NULL), count(*) FROM rollup_1min "
            "WHERE user_id = 1 AND metric = 'hrv_intraday' AND field = 'coverage'"
        ).fetchone()
        assert 0 < written[0] < written[1], "some coverage minutes should have no min/max"
        conn.commit()
        fitpipe(store, "aggregate", "refresh")
        as_loaded = snapshot(conn)
        assert as_loaded["1min"] and as_loaded["1h"]
        conn.commit()

        fitpipe(store, "aggregate", "refresh", "--full")
        assert snapshot(conn) == as_loaded, "a rebuild from raw rows differs from the loader's minutes"


def test_a_load_meeting_a_refresh_leaves_the_minutes_to_the_refresh(store, day_and_payloads):
    day, payloads = day_and_payloads
    with psycopg.connect(store) as conn:
        load_day(conn, day, payloads, blank_coverage=False)
        fitpipe(store, "aggregate", "refresh")
        before = snapshot(conn)
        conn.commit()

        fewer = copy.deepcopy(payloads)
        dataset = fewer["intraday_heart_rate"][0]["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]
        del dataset[len(dataset) // 2 :]
        with psycopg.connect(store, autocommit=True) as refresher:
            refresher.execute("SELECT pg_advisory_lock(%s)", (locks._REFRESH_BASE + 1,))  # as a refresh holds it
            assert load_day(conn, day, fewer, blank_coverage=False).status == "loaded"
            refresher.execute("SELECT pg_advisory_unlock(%s)", (locks._REFRESH_BASE + 1,))
        assert (
            conn.execute("SELECT bool_or(minutes_current) FROM rollup_invalidations WHERE user_id = 1").fetchone()[0]
            is False
        ), "a load that could not take the refresh lock must leave the minutes to the refresh"
        assert snapshot(conn)["1min"] == before["1min"], "the load must not touch rollup_1min without the lock"
        conn.commit()

        fitpipe(store, "aggregate", "refresh")
        refreshed = snapshot(conn)
        assert refreshed["1min"] != before["1min"], "half the day's heart rate went; its minutes must follow"
        conn.commit()
        fitpipe(store, "aggregate", "refresh", "--full")
        assert snapshot(conn) == refreshed
