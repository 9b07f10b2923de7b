"""Per-day wear summaries: equal to a from-scratch count of measured minutes (DST days included),
kept current by the refresh, and adherence from them equal to adherence from every minute."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from fitpipe.participants import add_participant
from fitpipe.timezones import local_instant
from support.cli import fitpipe
from support.db import empty_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

NY = "America/New_York"
START = dt.date(2024, 3, 8)  # spring forward on 2024-03-10
LAST = dt.date(2024, 3, 12)

# Today's definition before wear_days (migration 0006), read from every 1-minute bucket: the oracle.
MINUTE_ADHERENCE = """
    WITH periods AS (
        SELECT u.user_id, u.study_start,
               (u.study_start::timestamp AT TIME ZONE u.timezone) AS period_start,
               ((%(as_of)s::date + 1)::timestamp AT TIME ZONE u.timezone) AS period_end
        FROM users u WHERE u.study_start <= %(as_of)s::date AND u.withdrawn_at IS NULL
    ), worn AS (
        SELECT p.user_id, count(r.bucket) AS worn_minutes, max(r.bucket) + interval '1 minute' AS last_data
        FROM periods p
        LEFT JOIN rollup_1min r ON r.user_id = p.user_id AND r.metric = 'heart_rate' AND r.field = 'bpm'
             AND r.n_measured > 0 AND r.bucket >= p.period_start AND r.bucket < p.period_end
        GROUP BY p.user_id
    ), nights AS (
        SELECT p.user_id, count(DISTINCT s.date_of_sleep)::integer AS nights
        FROM periods p
        LEFT JOIN sleep_sessions s ON s.user_id = p.user_id AND s.is_main_sleep
             AND s.duration_s >= %(sleep)s * 60 AND s.date_of_sleep BETWEEN %(as_of)s::date - 6 AND %(as_of)s::date
        GROUP BY p.user_id
    )
    SELECT user_id, worn_minutes, last_data, nights FROM periods JOIN worn USING (user_id) JOIN nights USING (user_id)
    ORDER BY user_id
"""


@pytest.fixture(scope="module")
def store(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        add_participant(conn, 1, source="synthetic", timezone=NY, study_start=START)
        add_participant(conn, 2, source="synthetic", timezone="UTC", study_start=START)
        # Participant 3 starts later and has a day without any data (a whole day off is simulated
        # by deleting that day's heart rate through a forced re-ingest below).
        add_participant(conn, 3, source="synthetic", timezone="Asia/Kolkata", study_start=dt.date(2024, 3, 10))
    import os

    os.environ["FITPIPE_TODAY"] = "2024-03-14"
    try:
        fitpipe(database_url, "backfill", "--start", START.isoformat(), "--end", LAST.isoformat(), "--workers", "2")
    finally:
        del os.environ["FITPIPE_TODAY"]
    return database_url


def from_scratch(conn, user_id: int, timezone: str, day: dt.date) -> tuple:
    lo, hi = local_instant(day, 0, timezone), local_instant(day + dt.timedelta(days=1), 0, timezone)
    worn, first, last = conn.execute(
        "SELECT count(DISTINCT time_bucket('1 minute', ts)), min(time_bucket('1 minute', ts)), "
        "max(time_bucket('1 minute', ts)) + interval '1 minute' FROM heart_rate "
        "WHERE user_id = %s AND ts >= %s AND ts < %s",
        (user_id, lo, hi),
    ).fetchone()
    sleep = conn.execute(
        "SELECT max(duration_s) FROM sleep_sessions WHERE user_id = %s AND is_main_sleep AND date_of_sleep = %s",
        (user_id, day),
    ).fetchone()[0]
    return worn, first, last, sleep


def summaries(conn, user_id: int) -> dict[dt.date, tuple]:
    return {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT day, worn_minutes, first_measured, last_measured, main_sleep_seconds FROM wear_days "
            "WHERE user_id = %s ORDER BY day",
            (user_id,),
        )
    }


def test_daily_summaries_equal_a_count_of_measured_minutes(store):
    with psycopg.connect(store) as conn:
        for user_id, timezone, first in ((1, NY, START), (2, "UTC", START), (3, "Asia/Kolkata", dt.date(2024, 3, 10))):
            rows = summaries(conn, user_id)
            day = first
            while day <= LAST:
                assert rows[day] == from_scratch(conn, user_id, timezone, day), (user_id, day)
                day += dt.timedelta(days=1)
        # The DST day is 23 hours long, and its summary cannot hold more minutes than that.
        assert 0 < summaries(conn, 1)[dt.date(2024, 3, 10)][0] <= 23 * 60


def adherence_rows(conn, as_of: dt.date, sleep_minutes: int = 180):
    return conn.execute(
        "SELECT user_id, worn_minutes, last_data, nights_captured FROM "
        "fitpipe_adherence(%s, min_sleep_minutes => %s) ORDER BY user_id",
        (as_of, sleep_minutes),
    ).fetchall()


@pytest.mark.parametrize("as_of", [START, dt.date(2024, 3, 10), LAST, dt.date(2024, 3, 20)])
@pytest.mark.parametrize("sleep_minutes", [180, 420])
def test_adherence_from_daily_rows_equals_adherence_from_every_minute(store, as_of, sleep_minutes):
    with psycopg.connect(store) as conn:
        expected = conn.execute(MINUTE_ADHERENCE, {"as_of": as_of, "sleep": sleep_minutes}).fetchall()
        assert expected, "the oracle sees participants"
        assert adherence_rows(conn, as_of, sleep_minutes) == expected


def test_a_reingest_that_loses_data_updates_the_summaries(store):
    with psycopg.connect(store, autocommit=True) as conn:
        day = dt.date(2024, 3, 11)
        before = summaries(conn, 3)[day]
        conn.execute("UPDATE participant_sources SET settings = settings || '{\"wear_gaps\": false}' WHERE user_id = 3")
        try:
            import os

            os.environ["FITPIPE_TODAY"] = "2024-03-14"
            fitpipe(store, "backfill", "--start", day.isoformat(), "--end", day.isoformat(), "--user", "3", "--force")
            after = summaries(conn, 3)[day]
            assert after == from_scratch(conn, 3, "Asia/Kolkata", day)
            assert after[0] > before[0], "without wear gaps more minutes are worn"
            # A day whose heart rate vanished (rows deleted, the change logged as a load logs it).
            lo, hi = local_instant(day, 0, "Asia/Kolkata"), local_instant(day + dt.timedelta(days=1), 0, "Asia/Kolkata")
            conn.execute("DELETE FROM heart_rate WHERE user_id = 3 AND ts >= %s AND ts < %s", (lo, hi))
            conn.execute(
                "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (3, 'heart_rate', %s, %s)", (lo, hi)
            )
            fitpipe(store, "aggregate", "refresh")
            worn, first, last, _ = summaries(conn, 3)[day]
            assert (worn, first, last) == (0, None, None)
            expected = conn.execute(MINUTE_ADHERENCE, {"as_of": LAST, "sleep": 180}).fetchall()
            assert adherence_rows(conn, LAST) == expected
        finally:
            conn.execute(
                "UPDATE participant_sources SET settings = settings || '{\"wear_gaps\": true}' WHERE user_id = 3"
            )
            fitpipe(store, "backfill", "--start", day.isoformat(), "--end", day.isoformat(), "--user", "3", "--force")
            del os.environ["FITPIPE_TODAY"]


def test_a_full_refresh_rebuilds_the_same_summaries(store):
    with psycopg.connect(store, autocommit=True) as conn:
        before = {u: summaries(conn, u) for u in (1, 2, 3)}
        conn.execute("DELETE FROM wear_days")
        fitpipe(store, "aggregate", "refresh", "--full")
        after = {u: summaries(conn, u) for u in (1, 2, 3)}
    assert after == before
