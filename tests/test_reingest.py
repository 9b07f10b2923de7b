"""Re-ingesting a day: the ledger follows the new counts, a metric that vanishes invalidates its
rollups, and replace_day waits for the participant's exclusive lock. Each test was written to
fail on one realistic bug the suite once let through."""

from __future__ import annotations

import copy
import datetime as dt

import psycopg
import pytest

from fitpipe import locks
from fitpipe.catalogue import DayWindow
from fitpipe.ingest.load import replace_day
from fitpipe.participants import list_users
from fitpipe.sources import source_for
from fitpipe.sources.synthetic.parse import parse_payloads
from support.cli import fitpipe
from support.sources import fetch_now

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

DAY = dt.date(2024, 1, 3)


@pytest.fixture
def conn(loaded):
    with psycopg.connect(loaded) as connection:
        yield connection


def payloads_of(conn, day: dt.date) -> tuple:
    user = list_users(conn, [1])[0]
    return user, source_for("synthetic").fetch_day(user, day, fetch_now())


def load(conn, user, day, payloads, *, rewrite: bool = True):
    ctx = user.day_context(day)
    return replace_day(
        conn, ctx, lambda: parse_payloads(payloads, ctx), source="synthetic", run_id=None, skip_if_done=not rewrite
    )


def heart_rate_dataset(payloads) -> list:
    return payloads["intraday_heart_rate"][0]["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]


def test_reingesting_a_day_whose_counts_change_updates_the_ledger(conn):
    user, full = payloads_of(conn, DAY)
    fewer = copy.deepcopy(full)
    dataset = heart_rate_dataset(fewer)
    del dataset[len(dataset) // 2 :]
    for payloads in (full, fewer):
        load(conn, user, DAY, payloads)
        lo, hi = user.day_context(DAY).bounds(DayWindow.CALENDAR)
        in_table = conn.execute(
            "SELECT count(*) FROM heart_rate WHERE user_id = 1 AND ts >= %s AND ts < %s", (lo, hi)
        ).fetchone()[0]
        on_file, total = conn.execute(
            "SELECT (rows_by_metric ->> 'heart_rate')::int, rows_loaded FROM ingested_days "
            "WHERE user_id = 1 AND day = %s",
            (DAY,),
        ).fetchone()
        assert on_file == in_table, "the ledger's rows_by_metric disagrees with the table"
        assert total >= in_table
    assert in_table < len(heart_rate_dataset(full))


def test_a_metric_that_vanishes_on_reingest_is_invalidated_for_the_rollups(loaded, conn):
    user, payloads = payloads_of(conn, DAY)
    load(conn, user, DAY, payloads)
    conn.commit()  # as the runner does; the load's locks go with its transaction
    fitpipe(loaded, "aggregate", "refresh", "--user", "1")
    lo, hi = user.day_context(DAY).bounds(DayWindow.CALENDAR)
    buckets = (
        "SELECT count(*) FROM rollup_1min WHERE user_id = 1 AND metric = 'heart_rate' "
        "AND bucket >= %s AND bucket < %s AND n_measured > 0"
    )
    assert conn.execute(buckets, (lo, hi)).fetchone()[0] > 0
    conn.execute("DELETE FROM rollup_invalidations")
    conn.commit()
    # The device sent no heart rate this time: the day's rows go, and the rollups must follow.
    without_heart_rate = {key: value for key, value in payloads.items() if key != "intraday_heart_rate"}
    outcome = load(conn, user, DAY, without_heart_rate)
    assert "heart_rate" not in outcome.rows_by_metric
    assert (
        conn.execute(
            "SELECT count(*) FROM rollup_invalidations WHERE user_id = 1 AND metric = 'heart_rate' "
            "AND lo <= %s AND hi >= %s",
            (lo, hi),
        ).fetchone()[0]
        == 1
    )
    conn.commit()
    fitpipe(loaded, "aggregate", "refresh", "--user", "1")
    assert conn.execute(buckets, (lo, hi)).fetchone()[0] == 0, "the rollups kept heart rate that vanished"


def test_replace_day_waits_for_the_participants_exclusive_lock(loaded, conn):
    user, payloads = payloads_of(conn, DAY)
    with psycopg.connect(loaded, autocommit=True) as imputer:
        imputer.execute("SELECT pg_advisory_lock(%s)", (locks.user_key(1),))  # as impute and withdraw take it
        conn.execute("SET lock_timeout = '300ms'")
        conn.commit()
        with pytest.raises(psycopg.errors.LockNotAvailable):
            load(conn, user, DAY, payloads)
        conn.rollback()
        imputer.execute("SELECT pg_advisory_unlock(%s)", (locks.user_key(1),))
    assert load(conn, user, DAY, payloads).status == "loaded"
