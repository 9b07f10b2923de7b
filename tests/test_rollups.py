"""Rollups (rollup_1min, rollup_1h, rollup_1d) must equal an oracle: a GROUP BY over the raw tables
computed from scratch, for every intraday metric of the catalogue and each of its value columns.

- 1 min: time_bucket('1 minute', ts)
- 1 h:   hours of the participant's local clock (each instant's own UTC offset, so a zone with a
         sub-hour offset such as Asia/Kolkata has hours starting at :30 UTC)
- 1 d:   time_bucket('1 day', ts, <participant's timezone>) (23 or 25 hours on DST days)

Compared: count, sum (relative 1e-6), min and max of the measured values, with EXCEPT both
ways so that missing and extra buckets fail too. Rows that only hold imputed minutes
(n_measured = 0) must carry no measured state.

The module shares one data set (built once; a user-day takes a while to generate): user 1 in
Asia/Kolkata with wear gaps, user 2 in America/New_York without wear gaps (so both DST days are
fully worn); 2024-03-11 for user 1; 2024-03-10, 03-11, 11-03 and 11-04 for user 2. Each test starts
with a refresh and leaves the rollups refreshed, so the tests can run in any order.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import psycopg
import pytest

from fitpipe.catalogue import INTRADAY
from support.cli import fitpipe, popen
from support.db import empty_database

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

KOLKATA = "Asia/Kolkata"
NY = "America/New_York"
USERS = (1, 2)  # the users every oracle comparison covers
LEVELS = ("1min", "1h", "1d")
SEED = int(os.environ.get("FITPIPE_TEST_SEED", "20240310"))
SPRING, FALL = dt.date(2024, 3, 10), dt.date(2024, 11, 3)


# --------------------------------------------------------------------------------------------
# running fitpipe


def local_midnight(day: dt.date, timezone: str) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)


def ledger(conn, user_id: int) -> list[dt.date]:
    return [
        r[0]
        for r in conn.execute("SELECT day FROM ingested_days WHERE user_id = %s ORDER BY day", (user_id,)).fetchall()
    ]


def pending(conn, users=USERS) -> int:
    return conn.execute("SELECT count(*) FROM rollup_invalidations WHERE user_id = ANY(%s)", (list(users),)).fetchone()[
        0
    ]


# --------------------------------------------------------------------------------------------
# the oracle


def _minute_oracle_sql() -> str:
    parts = []
    for m in INTRADAY:
        for c in m.values:
            parts.append(
                f"SELECT user_id, '{m.name}'::text AS metric, '{c.name}'::text AS field, "
                f"time_bucket('1 minute', {m.time_column}) AS bucket, count(*)::bigint AS n, "
                f"sum({c.name}::float8) AS s, min({c.name})::real AS lo, max({c.name})::real AS hi "
                f"FROM {m.table} WHERE user_id = ANY(%(users)s) GROUP BY user_id, 4"
            )
    return " UNION ALL ".join(parts)


# Start of the local-clock hour holding the minute o.bucket: drop its local minutes, using the UTC
# offset in force at that instant (so DST and half-hour zones are handled per instant).
_LOCAL_HOUR = (
    "o.bucket - make_interval(secs => mod((extract(epoch FROM o.bucket) + extract(epoch FROM "
    "(o.bucket AT TIME ZONE u.timezone) - (o.bucket AT TIME ZONE 'UTC')))::numeric, 3600)::float8)"
)


def oracle_mismatches(conn: psycopg.Connection, users=USERS) -> dict[str, list]:
    """Every difference between the rollups of `users` and the oracle, by kind ({} when equal)."""
    params = {"users": list(users)}
    conn.execute("DROP TABLE IF EXISTS pg_temp.oracle_1min, pg_temp.oracle_1h, pg_temp.oracle_1d")
    # Raw minutes: the 1-minute oracle, and the input of the local hours and days (count, sum, min and
    # max merge exactly, and local hours and days always consist of whole minutes).
    conn.execute(f"CREATE TEMP TABLE oracle_1min AS {_minute_oracle_sql()}", params)
    conn.execute(
        f"""
        CREATE TEMP TABLE oracle_1h AS
        SELECT user_id, metric, field, hour AS bucket, sum(n)::bigint AS n, sum(s) AS s, min(lo) AS lo, max(hi) AS hi
        FROM (SELECT o.*, {_LOCAL_HOUR} AS hour
              FROM oracle_1min o JOIN users u USING (user_id)) x
        GROUP BY 1, 2, 3, 4
        """
    )
    conn.execute(
        """
        CREATE TEMP TABLE oracle_1d AS
        SELECT o.user_id, o.metric, o.field, time_bucket('1 day', o.bucket, u.timezone) AS bucket,
               sum(o.n)::bigint AS n, sum(o.s) AS s, min(o.lo) AS lo, max(o.hi) AS hi
        FROM oracle_1min o JOIN users u USING (user_id)
        GROUP BY 1, 2, 3, 4
        """
    )
    problems: dict[str, list] = {}
    key = "user_id, metric, field, bucket"
    for level in LEVELS:
        # metric and field are enums in the rollups (lean rows), text in the oracle.
        rollup = (
            f"SELECT user_id, metric::text AS metric, field::text AS field, bucket, n_measured::bigint AS n, "
            f"sum_measured AS s, min_measured AS lo, max_measured AS hi "
            f"FROM rollup_{level} WHERE user_id = ANY(%(users)s) AND n_measured > 0"
        )
        checks = {
            "missing from rollup": f"SELECT {key}, n, lo, hi FROM oracle_{level} "
            f"EXCEPT SELECT {key}, n, lo, hi FROM ({rollup}) r",
            "extra in rollup": f"SELECT {key}, n, lo, hi FROM ({rollup}) r "
            f"EXCEPT SELECT {key}, n, lo, hi FROM oracle_{level}",
            "sum differs": f"SELECT o.user_id, o.metric, o.field, o.bucket, o.s, r.s FROM oracle_{level} o "
            f"JOIN ({rollup}) r USING (user_id, metric, field, bucket) "
            f"WHERE abs(o.s - r.s) > 1e-6 * abs(o.s) + 1e-9",
            "unmeasured row with measured state or nothing imputed": f"SELECT {key}, n_imputed, sum_measured, "
            f"min_measured, max_measured FROM rollup_{level} "
            f"WHERE user_id = ANY(%(users)s) AND n_measured = 0 "
            f"AND (n_imputed <= 0 OR sum_measured <> 0 OR min_measured IS NOT NULL OR max_measured IS NOT NULL)",
            "negative count": f"SELECT {key}, n_measured, n_imputed FROM rollup_{level} "
            f"WHERE user_id = ANY(%(users)s) AND (n_measured < 0 OR n_imputed < 0)",
        }
        for kind, query in checks.items():
            rows = conn.execute(query + " ORDER BY 1, 2, 3, 4 LIMIT 20", params).fetchall()
            if rows:
                problems[f"{level}: {kind}"] = rows
    return problems


class OracleMismatch(AssertionError):
    """The rollups differ from the oracle (its own type, so an xfail can name exactly this)."""


def assert_rollups_equal_oracle(conn, users=USERS) -> None:
    problems = oracle_mismatches(conn, users)
    if problems:
        raise OracleMismatch(
            "rollups differ from the oracle over the raw tables:\n"
            + "\n".join(f"  {kind}: {rows[:5]}{' ...' if len(rows) > 5 else ''}" for kind, rows in problems.items())
        )
    # The comparison is not vacuous: every level holds rows for every user compared.
    for level in LEVELS:
        seen = {
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT user_id FROM rollup_{level} WHERE user_id = ANY(%s)", (list(users),)
            ).fetchall()
        }
        assert seen == set(users), f"rollup_{level} has rows for users {seen}, expected {set(users)}"


def snapshot(conn) -> dict[tuple, tuple[str, str]]:
    """(level, user, metric, field, bucket) -> (ctid, xmin) of every rollup row."""
    rows = {}
    for level in LEVELS:
        for user_id, metric, field_name, bucket, ctid, xmin in conn.execute(
            f"SELECT user_id, metric, field, bucket, ctid::text, xmin::text FROM rollup_{level}"
        ).fetchall():
            rows[(level, user_id, metric, field_name, bucket)] = (ctid, xmin)
    return rows


# --------------------------------------------------------------------------------------------
# the data set


@dataclass
class World:
    conn: psycopg.Connection
    # Change records left right after each kind of backfill while the data set was built.
    pending_after: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(database_url):
    """Ingests, re-ingests and raw rows that disappeared; the last changes are not refreshed yet."""
    rng = random.Random(SEED)
    with psycopg.connect(database_url, autocommit=True) as conn:
        world = World(conn)
        empty_database(conn)
        url = database_url
        # User 1's study starts a day later: it gets 2024-03-11 only.
        fitpipe(url, "seed-users", "--count", "1", "--timezone", KOLKATA, "--start-date", "2024-03-11")
        fitpipe(url, "seed-users", "--count", "2", "--timezone", NY, "--start-date", "2024-03-10", "--no-wear-gaps")
        # Ingest with the automatic refresh, then more days without it.
        fitpipe(url, "backfill", "--start", "2024-03-10", "--end", "2024-03-11", "--workers", "2")
        world.pending_after["backfill"] = pending(conn)
        fitpipe(
            url,
            "backfill",
            "--start",
            "2024-11-03",
            "--end",
            "2024-11-04",
            "--user",
            "2",
            "--workers",
            "2",
            "--no-refresh",
        )
        world.pending_after["backfill --no-refresh"] = pending(conn)
        fitpipe(url, "aggregate", "refresh")

        # A source correction: some raw values change (logged) and the rollups follow; then a
        # forced re-ingest restores the source's values, and the rollups must follow again.
        redo = dt.date(2024, 3, 11)
        zones = ((1, KOLKATA), (2, NY))

        def day_sums() -> dict[int, tuple[int, float]]:
            return {
                user_id: conn.execute(
                    "SELECT count(*), sum(bpm::float8) FROM heart_rate WHERE user_id = %s AND ts >= %s AND ts < %s",
                    (user_id, local_midnight(redo, timezone), local_midnight(redo + dt.timedelta(days=1), timezone)),
                ).fetchone()
                for user_id, timezone in zones
            }

        from_source, raised = day_sums(), {}
        for user_id, timezone in zones:
            lo = local_midnight(redo, timezone) + dt.timedelta(hours=rng.randrange(8, 20))
            changed = conn.execute(
                "UPDATE heart_rate SET bpm = bpm + 7 WHERE user_id = %s AND ts >= %s AND ts < %s",
                (user_id, lo, lo + dt.timedelta(hours=1)),
            ).rowcount
            assert changed > 0
            raised[user_id] = 7 * changed
            conn.execute(
                "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, 'heart_rate', %s, %s)",
                (user_id, lo, lo + dt.timedelta(hours=1)),
            )
        fitpipe(url, "aggregate", "refresh")
        forced = (
            "backfill",
            "--start",
            redo.isoformat(),
            "--end",
            redo.isoformat(),
            "--force",
            "--workers",
            "2",
            "--no-refresh",
        )
        # (bpm is a real: the raised values are rounded to float32, hence the tolerance, far below 7 bpm.)
        assert day_sums() == {
            u: (n, pytest.approx(total + raised[u], rel=1e-8)) for u, (n, total) in from_source.items()
        }
        # --force rewrites the day with the source's values, even though the source's content is unchanged.
        result = fitpipe(url, *forced)
        for user_id, _ in zones:
            assert f"user={user_id} day={redo} status=loaded state=complete" in result.stdout, result.stdout
        assert day_sums() == {u: (n, pytest.approx(total, rel=1e-8)) for u, (n, total) in from_source.items()}

        # Raw rows that disappear outside ingestion, each range logged like a load would.
        def vanish(metric: str, user_id: int, lo: dt.datetime, hi: dt.datetime) -> None:
            table = next(m for m in INTRADAY if m.name == metric).table
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE user_id = %s AND ts >= %s AND ts < %s", (user_id, lo, hi)
            ).rowcount
            assert deleted > 0, f"nothing to delete in {table} for user {user_id} in [{lo}, {hi})"
            conn.execute(
                "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, %s, %s, %s)",
                (user_id, metric, lo, hi),
            )

        # A whole local hour of user 2 (its 1 h bucket must disappear), a 90-second slice (minutes
        # that lose part of their samples), sleep-time rows from before a local midnight to just
        # after the night's first sample, and an hour of user 1's AZM.
        hour_lo = local_midnight(FALL + dt.timedelta(days=1), NY) + dt.timedelta(hours=rng.randrange(1, 22))
        vanish("heart_rate", 2, hour_lo, hour_lo + dt.timedelta(hours=1))
        slice_lo = local_midnight(SPRING, NY) + dt.timedelta(seconds=rng.randrange(3600, 80000))
        vanish("heart_rate", 2, slice_lo, slice_lo + dt.timedelta(seconds=90))
        midnight = local_midnight(FALL + dt.timedelta(days=1), NY)
        for metric in ("spo2", "hrv_intraday"):
            first = conn.execute(
                f"SELECT min(ts) FROM {metric} WHERE user_id = 2 AND ts >= %s AND ts < %s",
                (midnight, midnight + dt.timedelta(hours=12)),
            ).fetchone()[0]
            assert first is not None, f"no {metric} in the night before {midnight}"
            vanish(metric, 2, midnight - dt.timedelta(minutes=20), first + dt.timedelta(minutes=rng.randrange(2, 9)))
        azm_lo = local_midnight(redo, KOLKATA) + dt.timedelta(hours=rng.randrange(8, 20))
        vanish("active_zone_minutes", 1, azm_lo, azm_lo + dt.timedelta(hours=1))
        yield world


# --------------------------------------------------------------------------------------------
# tests


def test_refresh_makes_every_level_equal_the_oracle_across_dst(world, database_url):
    conn = world.conn
    assert pending(conn) > 0, "the data set should leave changes to refresh"
    stale = oracle_mismatches(conn)
    assert stale, "the re-ingest and the vanished rows should make the rollups stale before the refresh"

    result = fitpipe(database_url, "aggregate", "refresh")
    assert "refreshed" in result.stdout
    assert pending(conn) == 0
    assert_rollups_equal_oracle(conn)
    assert conn.execute("SELECT count(*) FROM rollup_1min WHERE n_imputed <> 0").fetchone()[0] == 0

    # DST: user 2's local days of 2024-03-10 (23 h) and 2024-11-03 (25 h).
    for day, hours in ((SPRING, 23), (FALL, 25)):
        lo, hi = local_midnight(day, NY), local_midnight(day + dt.timedelta(days=1), NY)
        assert hi - lo == dt.timedelta(hours=hours)
        buckets = [
            r[0]
            for r in conn.execute(
                "SELECT bucket FROM rollup_1d WHERE user_id = 2 AND metric = 'heart_rate' "
                "AND bucket >= %s AND bucket <= %s ORDER BY bucket",
                (lo, hi),
            ).fetchall()
        ]
        assert buckets == [lo, hi], f"1 d buckets around {day}: {buckets}"
        raw, first, last = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM heart_rate WHERE user_id = 2 "
            "AND ts >= (%s::timestamp AT TIME ZONE %s) AND ts < (%s::timestamp AT TIME ZONE %s)",
            (day, NY, day + dt.timedelta(days=1), NY),
        ).fetchone()
        assert last - first > dt.timedelta(hours=hours - 2), "the day should be worn from morning to night"
        n_measured = conn.execute(
            "SELECT n_measured FROM rollup_1d WHERE user_id = 2 AND metric = 'heart_rate' AND field = 'bpm' "
            "AND bucket = %s",
            (lo,),
        ).fetchone()[0]
        assert n_measured == raw > 0
        hourly = conn.execute(
            "SELECT count(*), sum(n_measured) FROM rollup_1h WHERE user_id = 2 AND metric = 'heart_rate' "
            "AND bucket >= %s AND bucket < %s",
            (lo, hi),
        ).fetchone()
        assert hourly[1] == raw and 22 <= hourly[0] <= hours


def test_incremental_refresh_touches_only_changed_buckets(world, database_url):
    conn = world.conn
    fitpipe(database_url, "aggregate", "refresh")
    before_days = set(ledger(conn, 2))
    before = snapshot(conn)

    fitpipe(database_url, "ingest", "--days", "1", "--user", "2", "--workers", "1", "--no-refresh")
    (new_day,) = set(ledger(conn, 2)) - before_days
    assert pending(conn) > 0, "--no-refresh must leave the change records for the next refresh"
    # The loader writes the day's 1-minute rows itself; the levels above wait for the refresh.
    upper = lambda snap: {k: v for k, v in snap.items() if k[0] != "1min"}  # noqa: E731
    assert upper(snapshot(conn)) == upper(before), (
        "an ingest with --no-refresh must not touch the hourly and daily rollups"
    )
    loaded_minutes = {k for k in snapshot(conn) if k[0] == "1min" and k[1] == 2} - set(before)
    assert loaded_minutes, "the loader must write the new day's 1-minute rows"

    result = fitpipe(database_url, "aggregate", "refresh")
    assert "refreshed 1 participant" in result.stdout, result.stdout
    assert pending(conn) == 0
    after = snapshot(conn)

    # The new day owns heart rate and AZM of the day, and the night that starts on its evening,
    # which reaches into the next local day.
    touched_lo = local_midnight(new_day, NY)
    touched_hi = local_midnight(new_day + dt.timedelta(days=2), NY)
    untouched = {k: v for k, v in before.items() if not (k[1] == 2 and touched_lo <= k[4] < touched_hi)}
    assert untouched, "there should be rows outside the new day"
    moved = {k: (v, after.get(k)) for k, v in untouched.items() if after.get(k) != v}
    assert not moved, f"{len(moved)} rollup rows of untouched days were rewritten, e.g. {list(moved.items())[:3]}"
    new_rows = {k for k in after if k[1] == 2 and touched_lo <= k[4] < touched_hi} - set(before)
    assert new_rows, "the new day has no rollup rows"
    for level in LEVELS:
        assert any(
            k[0] == level and k[2] == "heart_rate" and k[4] < local_midnight(new_day + dt.timedelta(days=1), NY)
            for k in new_rows
        ), f"no {level} heart_rate rows for {new_day}"
    assert ("1d", 2, "heart_rate", "bpm", touched_lo) in after
    assert_rollups_equal_oracle(conn)

    again = fitpipe(database_url, "aggregate", "refresh")
    assert "nothing to do" in again.stdout, again.stdout
    assert snapshot(conn) == after, "a refresh with nothing to do must change nothing"


def test_ingest_and_backfill_refresh_automatically_unless_told_not_to(world, database_url):
    conn = world.conn
    # While the data set was built (backfills of 3 and 2 user-days):
    assert world.pending_after["backfill"] == 0, "backfill must refresh what it loaded"
    assert world.pending_after["backfill --no-refresh"] > 0, "backfill --no-refresh must leave the change records"
    # (ingest --no-refresh: test_incremental_refresh_touches_only_changed_buckets)
    fitpipe(database_url, "aggregate", "refresh")
    before_days = set(ledger(conn, 1))

    fitpipe(database_url, "ingest", "--days", "1", "--user", "1", "--workers", "1")
    (new_day,) = set(ledger(conn, 1)) - before_days
    assert pending(conn) == 0, "ingest without --no-refresh must leave no change records behind"
    assert (
        conn.execute(
            "SELECT count(*) FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate' AND bucket = %s",
            (local_midnight(new_day, KOLKATA),),
        ).fetchone()[0]
        == 1
    )

    assert_rollups_equal_oracle(conn)


def test_full_rebuilds_everything(world, database_url):
    conn = world.conn
    fitpipe(database_url, "aggregate", "refresh")
    rng = random.Random(SEED + 1)
    for level in LEVELS:
        keys = conn.execute(f"SELECT ctid FROM rollup_{level} WHERE user_id = ANY(%s)", (list(USERS),)).fetchall()
        doomed = rng.sample(keys, max(1, len(keys) // 10))
        conn.execute(f"DELETE FROM rollup_{level} WHERE ctid = ANY(%s::tid[])", ([str(k[0]) for k in doomed],))
    conn.execute(
        "UPDATE rollup_1h SET sum_measured = sum_measured * 2 WHERE ctid = "
        "(SELECT ctid FROM rollup_1h WHERE user_id = 1 AND n_measured > 0 LIMIT 1)"
    )
    # A bucket with no raw data at all.
    conn.execute(
        "INSERT INTO rollup_1min (user_id, metric, field, bucket, n_measured, sum_measured, min_measured, "
        "max_measured, n_imputed, sum_imputed) VALUES (1, 'heart_rate', 'bpm', '2024-06-01 03:03+00', "
        "1, 80, 80, 80, 0, 0)"
    )
    assert oracle_mismatches(conn), "the damage should be visible to the oracle"
    assert "nothing to do" in fitpipe(database_url, "aggregate", "refresh").stdout

    result = fitpipe(database_url, "aggregate", "refresh", "--full")
    assert "refreshed" in result.stdout
    assert_rollups_equal_oracle(conn)


def test_refresh_during_backfill_loses_no_update(world, database_url):
    conn = world.conn
    fitpipe(database_url, "aggregate", "refresh")
    # Give the refresh work: every ingested day of both users is marked as changed.
    for user_id, timezone in ((1, KOLKATA), (2, NY)):
        for day in ledger(conn, user_id):
            for m in INTRADAY:
                conn.execute(
                    "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, %s, %s, %s)",
                    (
                        user_id,
                        m.name,
                        local_midnight(day, timezone),
                        local_midnight(day + dt.timedelta(days=1), timezone),
                    ),
                )
    read_by_refresh = pending(conn)
    last = ledger(conn, 1)[-1]
    first_new, last_new = last + dt.timedelta(days=1), last + dt.timedelta(days=2)

    # To be sure the two overlap, the refresh is held up inside its transaction (after it has read
    # the change records) by a row lock on one of user 1's rollup rows until the backfill is done.
    with psycopg.connect(database_url) as blocker:
        blocker.execute(
            "SELECT 1 FROM rollup_1min WHERE user_id = 1 AND metric = 'heart_rate' ORDER BY bucket LIMIT 1 FOR UPDATE"
        )
        refresh = popen(database_url, "aggregate", "refresh")
        load = popen(
            database_url,
            "backfill",
            "--start",
            first_new.isoformat(),
            "--end",
            last_new.isoformat(),
            "--user",
            "1",
            "--workers",
            "2",
            "--no-refresh",
        )
        try:
            deadline = time.monotonic() + 120
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM rollup%%'"
            ).fetchone()[0]:
                assert refresh.poll() is None, f"the refresh did not wait: {refresh.communicate()}"
                assert time.monotonic() < deadline, "the refresh never reached user 1's rollup rows"
                time.sleep(0.05)
            out, err = load.communicate(timeout=300)
            assert load.returncode == 0, err
            assert refresh.poll() is None, "the refresh should still be held up"
            assert {first_new, last_new} <= set(ledger(conn, 1))
            assert pending(conn) > read_by_refresh
        finally:
            blocker.rollback()
            out, err = refresh.communicate(timeout=120)
            for proc in (load, refresh):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert refresh.returncode == 0, err
    assert "refreshed 2 participant" in out, out
    # The records of the loads that committed during the refresh are still there...
    left = conn.execute("SELECT min(lo), max(hi) FROM rollup_invalidations WHERE user_id = 1").fetchone()
    assert left[0] is not None, "the refresh consumed change records it never read"
    assert left[0] <= local_midnight(first_new, KOLKATA) and left[1] >= local_midnight(last_new, KOLKATA)
    # ...and the next refresh brings the rollups up to date.
    fitpipe(database_url, "aggregate", "refresh")
    assert pending(conn) == 0
    assert_rollups_equal_oracle(conn)
    for day in (first_new, last_new):
        assert (
            conn.execute(
                "SELECT n_measured FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate' AND bucket = %s",
                (local_midnight(day, KOLKATA),),
            ).fetchone()
            is not None
        )


def test_measured_and_imputed_are_kept_apart(world, database_url):
    conn = world.conn
    fitpipe(database_url, "aggregate", "refresh")
    fitpipe(database_url, "impute", "--user", "1", "--user", "2")
    assert conn.execute("SELECT count(*) FROM imputed_values").fetchone()[0] > 0
    for level in LEVELS:
        n = conn.execute(f"SELECT count(*) FROM rollup_{level} WHERE n_imputed > 0").fetchone()[0]
        assert n > 0, f"no imputed values reached rollup_{level}"
    assert_rollups_equal_oracle(conn)

    # At 1 min, exactly the imputed minutes without a measurement count as imputed, weighted as the
    # samples they stand in for.
    for m in INTRADAY:
        if not m.imputable:
            continue
        imputed = f"""
            SELECT i.user_id, i.field, i.ts AS bucket, {m.samples_per_minute}::bigint AS n, i.value::float8 AS s
            FROM imputed_values i
            WHERE i.metric = '{m.name}' AND NOT EXISTS (
                SELECT 1 FROM {m.table} t WHERE t.user_id = i.user_id
                AND t.{m.time_column} >= i.ts AND t.{m.time_column} < i.ts + interval '1 minute')
        """
        rollup = (
            f"SELECT user_id, field::text, bucket, n_imputed::bigint, "
            f"sum_imputed / {m.samples_per_minute} FROM rollup_1min WHERE metric = '{m.name}' AND n_imputed > 0"
        )
        for a, b in ((imputed, rollup), (rollup, imputed)):
            diff = _imputed_diff(conn, a, b)
            assert not diff, f"{m.name}: imputed minutes and rollup_1min disagree: {diff}"


def _imputed_diff(conn, a: str, b: str) -> list:
    """Rows of a with no row of b at the same (user, field, minute) with the same count and value."""
    return conn.execute(
        f"""
        SELECT a.* FROM ({a}) a(user_id, field, bucket, n, s)
        WHERE NOT EXISTS (SELECT 1 FROM ({b}) b(user_id, field, bucket, n, s)
                          WHERE b.user_id = a.user_id AND b.field = a.field AND b.bucket = a.bucket
                          AND b.n = a.n AND abs(b.s - a.s) <= 1e-4 * greatest(1, abs(a.s)))
        LIMIT 5
        """
    ).fetchall()


def test_hours_follow_the_local_clock_in_a_half_hour_dst_zone(world, database_url):
    conn = world.conn
    fitpipe(
        database_url,
        "seed-users",
        "--count",
        "3",
        "--timezone",
        "Australia/Lord_Howe",
        "--start-date",
        "2024-06-10",
        "--no-wear-gaps",
    )
    fitpipe(database_url, "backfill", "--start", "2024-06-10", "--end", "2024-06-10", "--user", "3", "--workers", "1")
    assert pending(conn, (3,)) == 0
    assert_rollups_equal_oracle(conn, (3,))
