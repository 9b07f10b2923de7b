"""A participant who moved, in what fitpipe derives: `fitpipe impute --method profile` builds the
daily profile on each minute's local clock by the zone history, not the zone they are in now,
and adherence's study period starts and ends at local midnights of the zones of those days.

The data: one heart-rate value a minute, 50 bpm from local 00:00 to 06:00 and 90 bpm for the
rest of the day, for a participant in America/New_York until 2024-03-10 and in Asia/Tokyo from
2024-03-11 on. A 2-hour gap is cut at Tokyo 05:00-07:00 on 2024-03-13. The local clock is
worked out here with zoneinfo, independently of fitpipe's zone code.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import psycopg
import pytest

from support.cli import fitpipe
from support.db import empty_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

NY, TOKYO = ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")
FIRST, MOVED, LAST = dt.date(2024, 3, 1), dt.date(2024, 3, 11), dt.date(2024, 3, 14)
GAP_DAY = dt.date(2024, 3, 13)
MINUTE = dt.timedelta(minutes=1)
NIGHT_BPM, DAY_BPM = 50.0, 90.0


def midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


MOVE = midnight(MOVED, TOKYO)  # the participant's clock shows Tokyo time from here on


def clock(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(NY if instant < MOVE else TOKYO)


def tokyo(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=TOKYO).astimezone(dt.UTC)


@pytest.fixture(scope="module")
def moved(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        fitpipe(
            database_url,
            "participants",
            "add",
            "1",
            "--source",
            "synthetic",
            "--timezone",
            "America/New_York",
            "--study-start",
            FIRST.isoformat(),
        )
        fitpipe(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", MOVED.isoformat())
        rows, at, end = [], midnight(FIRST, NY), midnight(LAST + dt.timedelta(days=1), TOKYO)
        gap = (tokyo(GAP_DAY, 5), tokyo(GAP_DAY, 7))
        while at < end:
            if not gap[0] <= at < gap[1]:
                rows.append((1, at, NIGHT_BPM if clock(at).hour < 6 else DAY_BPM))
            at += MINUTE
        with conn.cursor() as cur, cur.copy("COPY heart_rate (user_id, ts, bpm) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        day = FIRST
        while day <= LAST:
            conn.execute(
                "INSERT INTO ingested_days (user_id, day, source, rows_loaded, quarantined) "
                "VALUES (1, %s, 'synthetic', 0, 0)",
                (day,),
            )
            day += dt.timedelta(days=1)
        fitpipe(
            database_url,
            "impute",
            "--user",
            "1",
            "--metric",
            "heart_rate",
            "--method",
            "profile",
            "--max-gap",
            "3h",
            "--start",
            GAP_DAY.isoformat(),
            "--end",
            GAP_DAY.isoformat(),
        )
        yield conn


def imputed_at(conn, instant: dt.datetime) -> float:
    row = conn.execute(
        "SELECT value FROM imputed_values WHERE user_id = 1 AND metric = 'heart_rate' AND field = 'bpm' AND ts = %s",
        (instant,),
    ).fetchone()
    assert row is not None, f"no imputed value at {instant}"
    return row[0]


def test_the_whole_gap_is_imputed(moved):
    count = moved.execute(
        "SELECT count(*) FROM imputed_values WHERE user_id = 1 AND ts >= %s AND ts < %s",
        (tokyo(GAP_DAY, 5), tokyo(GAP_DAY, 7)),
    ).fetchone()[0]
    assert count == 120


@pytest.mark.parametrize(
    "hour, minute, expected", [(5, 20, NIGHT_BPM), (5, 30, NIGHT_BPM), (6, 30, DAY_BPM), (6, 40, DAY_BPM)]
)
def test_profile_follows_the_local_clock_after_a_move(moved, hour, minute, expected):
    # On the current zone alone, the ten New York days put Tokyo 05:00-07:00 at New York's
    # afternoon (90 bpm throughout) and the gap would be a ramp from 50 to 90.
    assert imputed_at(moved, tokyo(GAP_DAY, hour, minute)) == pytest.approx(expected, abs=3)


def test_adherence_period_runs_between_the_local_midnights_of_each_zone(moved):
    # From midnight of the first day in New York to midnight after the as-of day in Tokyo.
    expected = (midnight(LAST + dt.timedelta(days=1), TOKYO) - midnight(FIRST, NY)) / MINUTE
    study_minutes = moved.execute(
        "SELECT study_minutes FROM fitpipe_adherence(%s) WHERE user_id = 1", (LAST,)
    ).fetchone()[0]
    assert study_minutes == expected
