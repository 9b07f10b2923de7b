"""ingest and backfill against the real TimescaleDB: counts, determinism, re-ingest, DST, night
ownership, interruption, overlapping runs, quarantine, the cursor, CLI errors and status.

Expected results are derived from the source itself (SyntheticSource.fetch_day parsed with
parse_day, or fitpipe.sources.synthetic.wear_gaps), never hard-coded. Rollups are another suite's job:
every run here passes --no-refresh.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from fitpipe import locks
from fitpipe.catalogue import BY_NAME, METRICS, DayWindow
from fitpipe.days import DayContext
from fitpipe.errors import PartialFailure
from fitpipe.ingest.load import replace_day
from fitpipe.ingest.validate import ParsedDay
from fitpipe.participants import User, list_users
from fitpipe.sources.synthetic.parse import parse_payloads
from fitpipe.sources.synthetic.source import SyntheticSource
from fitpipe.sources.synthetic.wear_gaps import gaps_for
from support import ROOT
from support.cli import fitpipe, one_error_line
from support.db import ADMIN_URL, STATE_TABLES
from support.sources import fetch_now, payload_digest

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

NY = "America/New_York"
JAN1 = dt.date(2024, 1, 1)
ANSI = re.compile(r"\x1b")
# "done" means the day was already settled when the worker reached it.
SKIP_NOTES = ("note=held-by-another-run", "note=already-settled")


def days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(count)]


# --------------------------------------------------------------------------------------------
# running the CLI


def ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def seed(cli, count: int, timezone: str = "UTC", start: dt.date = JAN1) -> None:
    ok(cli("seed-users", "--count", str(count), "--timezone", timezone, "--start-date", start.isoformat()))


def backfill(cli, first: dt.date, last: dt.date, *extra: str):
    return ok(
        cli(
            "backfill",
            "--start",
            first.isoformat(),
            "--end",
            last.isoformat(),
            "--workers",
            "2",
            "--no-refresh",
            *extra,
        )
    )


def ingest(cli, n: int, *extra: str):
    return ok(cli("ingest", "--days", str(n), "--workers", "2", "--no-refresh", *extra))


def status(cli) -> dict:
    return json.loads(ok(cli("status", "--json")).stdout)


def user_status(report: dict, user_id: int) -> dict:
    (found,) = [u for u in report["users"] if u["user_id"] == user_id]
    return found


def backfill_argv(first: dt.date, last: dt.date, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fitpipe.cli",
        "backfill",
        "--start",
        first.isoformat(),
        "--end",
        last.isoformat(),
        "--workers",
        str(workers),
        "--no-refresh",
    ]


def popen(database_url: str, argv: list[str]) -> subprocess.Popen:
    # Its own session, so the run and its worker processes can be killed together by group id.
    return subprocess.Popen(
        argv,
        env={**os.environ, "FITPIPE_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, what: str, timeout: float = 120.0, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                raise AssertionError(f"{what}: process exited {proc.returncode}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def fitpipe_backends(db) -> int:
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'fitpipe%%'"
    ).fetchone()[0]


# --------------------------------------------------------------------------------------------
# expectations from the source


@pytest.fixture(scope="module", autouse=True)
def generator_imported():
    """Import wearipedia (~2.5 s) once here, so the forked workers of in-process runs inherit it."""
    import wearipedia.devices.fitbit.fitbit_sense_gen  # noqa: F401


@functools.lru_cache(maxsize=32)
def expected(user: User, day: dt.date) -> ParsedDay:
    """What a correct load of (user, day) holds: the source's payloads through the parsers."""
    payloads = SyntheticSource().fetch_day(user, day, fetch_now())
    return parse_payloads(payloads, DayContext(user.user_id, day, user.timezone))


def expected_rows(user: User, day: dt.date) -> dict[str, int]:
    parsed = expected(user, day)
    return {m.name: len(parsed.rows[m.table]) if m.table in parsed.rows else 0 for m in METRICS}


def expected_quarantine(user: User, day: dt.date) -> collections.Counter:
    return collections.Counter((q.metric, q.reason) for q in expected(user, day).quarantined)


def gap_mask(user: User, day: dt.date) -> np.ndarray:
    """True for each second after local midnight (wall clock) that the wear gaps remove."""
    off = np.zeros(86400, dtype=bool)
    for lo, hi in gaps_for(user.settings["seed"], day).intervals:
        off[max(lo, 0) : min(hi, 86400)] = True
    return off


def users(db, *ids: int) -> dict[int, User]:
    return {u.user_id: u for u in list_users(db, list(ids))}


# --------------------------------------------------------------------------------------------
# reading the database


def owner_day_sql(metric) -> str:
    """SQL for the local day that owns a row, computed in PostgreSQL (independent of fitpipe)."""
    col = metric.time_column
    if metric.window is DayWindow.DATE:
        return col
    if metric.window is DayWindow.NIGHT:
        return f"(({col} AT TIME ZONE u.timezone) - interval '12 hours')::date"
    return f"({col} AT TIME ZONE u.timezone)::date"


def counts_by_owner(db) -> dict[str, dict[tuple[int, dt.date], int]]:
    """Rows per (user, owning local day), per metric."""
    out = {}
    for m in METRICS:
        rows = db.execute(
            f"SELECT t.user_id, {owner_day_sql(m)} AS owner, count(*) FROM {m.table} t JOIN users u USING (user_id) "
            f"GROUP BY 1, 2"
        ).fetchall()
        out[m.name] = {(uid, day): n for uid, day, n in rows}
    return out


def ledger(db) -> dict[tuple[int, dt.date], dict]:
    rows = db.execute(
        "SELECT user_id, day, rows_by_metric, quarantined, rows_loaded, run_id FROM ingested_days"
    ).fetchall()
    return {(u, d): {"rows": r, "quarantined": q, "rows_loaded": n, "run_id": run} for u, d, r, q, n, run in rows}


def assert_db_matches_ledger(db) -> dict[tuple[int, dt.date], dict]:
    """Every row lies in a ledger day's window and every ledger count is what the table holds."""
    book = ledger(db)
    counts = counts_by_owner(db)
    for m in METRICS:
        stray = set(counts[m.name]) - set(book)
        assert not stray, f"{m.name}: rows owned by days missing from the ledger: {sorted(stray)}"
        for key, entry in book.items():
            assert counts[m.name].get(key, 0) == entry["rows"].get(m.name, 0), (m.name, key)
    for key, entry in book.items():
        assert entry["rows_loaded"] == sum(entry["rows"].values()), key
    return book


def pk(metric) -> str:
    return ", ".join(("user_id", metric.time_column, *(c.name for c in metric.extra_key)))


def checksums(db) -> dict[str, tuple[int, str]]:
    """count and md5 of every metric table (ordered by its key), quarantine and the ledger."""
    out = {}
    for m in METRICS:
        out[m.table] = db.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY {pk(m)}), '')) FROM {m.table} t"
        ).fetchone()
    out["quarantine"] = db.execute(
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', user_id, day, metric, raw_value, reason), ',' "
        "ORDER BY user_id, day, metric, raw_value, reason), '')) FROM quarantine"
    ).fetchone()
    out["ingested_days"] = db.execute(
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', user_id, day, source, rows_loaded, "
        "rows_by_metric::text, quarantined), ',' ORDER BY user_id, day), '')) FROM ingested_days"
    ).fetchone()
    return out


def runs(db) -> list[dict]:
    cur = db.execute(
        "SELECT run_id, command, status, user_days, skipped, failed, unchanged, deferred, rows_loaded, error "
        "FROM ingest_runs ORDER BY run_id"
    )
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def truncate_data(db) -> None:
    """Empty metric and state tables, keeping the users."""
    tables = [m.table for m in METRICS] + list(STATE_TABLES)
    db.execute(f"TRUNCATE {', '.join(tables)} CASCADE")


# ============================================================================================
# counts


def test_two_users_three_days_row_counts_match_the_payloads(cli, db):
    seed(cli, 2)
    span = days(JAN1, 3)
    result = backfill(cli, span[0], span[-1])
    assert "status=failed" not in result.stdout + result.stderr
    people = users(db, 1, 2)
    book = assert_db_matches_ledger(db)
    assert set(book) == {(u, d) for u in people for d in span}

    counts = counts_by_owner(db)
    for uid, user in people.items():
        for day in span:
            want = expected_rows(user, day)
            for m in METRICS:
                assert counts[m.name].get((uid, day), 0) == want[m.name], (uid, day, m.name)
                assert book[(uid, day)]["rows"].get(m.name, 0) == want[m.name], (uid, day, m.name)
            # Independently of the parser: every second and minute of the day minus the wear gaps.
            off = gap_mask(user, day)
            assert want["heart_rate"] == 86400 - int(off.sum()), (uid, day)
            assert want["active_zone_minutes"] == 1440 - int(off[::60].sum()), (uid, day)
            night_off = gaps_for(user.settings["seed"], day).night_off
            for name in ("spo2", "hrv_intraday", "sleep_sessions", "breathing_rate", "hrv_daily"):
                assert (want[name] == 0) == night_off, (uid, day, name)
            assert want["daily_activity"] == 1 and want["heart_rate_daily"] == 1
            assert book[(uid, day)]["quarantined"] == len(expected(user, day).quarantined)
            quarantined = collections.Counter(
                db.execute(
                    "SELECT metric, reason FROM quarantine WHERE user_id = %s AND day = %s", (uid, day)
                ).fetchall()
            )
            assert quarantined == expected_quarantine(user, day)

    # Stored values are the payload's, and the two users' heart rates differ at the same instants
    # (over a day both can sit at the generator's 50 bpm floor for hours, so compare the span).
    sums = dict(
        ((u, d), s)
        for u, d, s in db.execute(
            "SELECT user_id, (ts AT TIME ZONE 'UTC')::date, sum(bpm::float8) FROM heart_rate GROUP BY 1, 2"
        ).fetchall()
    )
    for uid, user in people.items():
        for day in span:
            want = float(expected(user, day).rows["heart_rate"].columns["bpm"].astype(np.float64).sum())
            assert sums[(uid, day)] == pytest.approx(want, rel=1e-9), (uid, day)
    same, common = db.execute(
        "SELECT count(*) FILTER (WHERE a.bpm = b.bpm), count(*) FROM heart_rate a JOIN heart_rate b "
        "ON a.ts = b.ts AND a.user_id = 1 AND b.user_id = 2"
    ).fetchone()
    assert common > 10_000 and common - same > common / 10, (same, common)

    last = runs(db)[-1]
    assert last["status"] == "ok" and last["user_days"] == 6 and last["failed"] == 0
    assert last["rows_loaded"] == sum(e["rows_loaded"] for e in book.values())


# ============================================================================================
# determinism of the source


def test_same_user_day_gives_identical_payloads_in_any_process():
    source = SyntheticSource()
    u1 = User(1, "p1", "UTC", "synthetic", JAN1, settings={"seed": 1111, "wear_gaps": True})
    u2 = User(2, "p2", "UTC", "synthetic", JAN1, settings={"seed": 2222, "wear_gaps": True})
    day, other_day = dt.date(2024, 2, 3), dt.date(2024, 2, 4)
    first = payload_digest(source.fetch_day(u1, day, fetch_now()))
    different_day = payload_digest(source.fetch_day(u1, other_day, fetch_now()))
    different_user = payload_digest(source.fetch_day(u2, day, fetch_now()))
    again = payload_digest(SyntheticSource().fetch_day(u1, day, fetch_now()))
    assert again == first
    assert len({first, different_day, different_user}) == 3

    # The other process imports the same digest from tests/support.
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from support.sources import payload_digest\n"
        "import datetime as dt\n"
        "from fitpipe.sources.contract import BudgetLedger, Fetch\n"
        "from fitpipe.sources.synthetic.source import SyntheticSource\n"
        "from fitpipe.participants import User\n"
        f"user = User(1, 'p1', 'UTC', 'synthetic', dt.date(2024, 1, 1), settings={u1.settings!r})\n"
        "fetch = Fetch(now=dt.datetime.now(dt.timezone.utc), budget=BudgetLedger(None))\n"
        f"day = dt.date({day.year}, {day.month}, {day.day})\n"
        "print(payload_digest(SyntheticSource().fetch_day(user, day, fetch)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "4242"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == first


# ============================================================================================
# re-ingest


def test_forced_reingest_gives_identical_contents(cli, db):
    seed(cli, 2)
    span = days(JAN1, 1)
    backfill(cli, span[0], span[-1])
    before = checksums(db)
    # Every table the synthetic source fills takes part (heart_rate_confidence and data_sources
    # come from Takeout imports only, device_utc_offsets from google-health).
    assert all(
        count > 0
        for table, (count, _) in before.items()
        if table not in ("heart_rate_confidence", "data_sources", "device_utc_offsets")
    ), before
    assert before["ingested_days"][0] == 2 * len(span)

    again = backfill(cli, span[0], span[-1])
    assert "user_days_planned=0" in again.stdout, again.stdout
    assert checksums(db) == before

    # --force rewrites every day, even with identical content, and gives identical tables.
    before_rows = db.execute("SELECT sum(rows_loaded) FROM ingested_days").fetchone()[0]
    forced_output = backfill(cli, span[0], span[-1], "--force")
    assert checksums(db) == before
    forced = runs(db)[-1]
    assert forced["status"] == "ok" and forced["skipped"] == 0 and forced["unchanged"] == 0
    assert forced["user_days"] == 2 * len(span) and forced["rows_loaded"] == before_rows
    assert forced_output.stdout.count("status=loaded state=complete") == 2 * len(span), forced_output.stdout
    assert {e["run_id"] for e in ledger(db).values()} == {forced["run_id"]}
    assert_db_matches_ledger(db)


# ============================================================================================
# DST


def test_dst_days_load_with_correct_local_day_boundaries(cli, db):
    seed(cli, 1, NY, dt.date(2024, 3, 9))
    spring, autumn = days(dt.date(2024, 3, 9), 3), days(dt.date(2024, 11, 2), 3)
    for span in (spring, autumn):
        result = backfill(cli, span[0], span[-1])
        assert "status=failed" not in result.stdout + result.stderr
    user = users(db, 1)[1]
    book = assert_db_matches_ledger(db)
    assert set(book) == {(1, d) for d in spring + autumn}

    for m in METRICS:
        if m.window is not DayWindow.DATE:
            total, distinct = db.execute(f"SELECT count(*), count(DISTINCT ({pk(m)})) FROM {m.table}").fetchone()
            assert total == distinct, m.name
    counts = counts_by_owner(db)
    for day in spring + autumn:
        want = expected_rows(user, day)
        for m in METRICS:
            assert counts[m.name].get((1, day), 0) == want[m.name], (day, m.name)
        stored = collections.Counter(
            db.execute("SELECT metric, reason FROM quarantine WHERE user_id = 1 AND day = %s", (day,)).fetchall()
        )
        assert stored == expected_quarantine(user, day), day

    # 2024-03-10: 02:00-03:00 does not exist; its worn seconds and minutes are quarantined.
    day = spring[1]
    off = gap_mask(user, day)
    dst_hour = slice(2 * 3600, 3 * 3600)
    worn_in_gap_hour = 3600 - int(off[dst_hour].sum())
    dst_reason = f"local time does not exist in {NY} (DST gap)"
    q = dict(
        db.execute(
            "SELECT metric, count(*) FROM quarantine WHERE user_id = 1 AND day = %s AND reason = %s GROUP BY metric",
            (day, dst_reason),
        ).fetchall()
    )
    assert q.get("heart_rate", 0) == worn_in_gap_hour
    assert q.get("active_zone_minutes", 0) == 60 - int(off[dst_hour][::60].sum())
    raw = db.execute(
        "SELECT raw_value FROM quarantine WHERE user_id = 1 AND day = %s AND metric = 'heart_rate' "
        "AND reason = %s LIMIT 5",
        (day, dst_reason),
    ).fetchall()
    assert all(re.search(r"'time': '02:\d\d:\d\d'", r[0]) for r in raw), raw
    hr_rows, in_gap_hour, span_hours = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE extract(hour FROM ts AT TIME ZONE %s) = 2), "
        "extract(epoch FROM max(ts) - min(ts)) / 3600 FROM heart_rate WHERE (ts AT TIME ZONE %s)::date = %s",
        (NY, NY, day),
    ).fetchone()
    assert in_gap_hour == 0
    assert hr_rows == 86400 - 3600 - int(off.sum()) + int(off[dst_hour].sum())
    assert span_hours < 23

    # 2024-11-03: 25 hours. Every wall-clock second appears once, so the first 01:xx (EDT) holds it.
    day = autumn[1]
    off = gap_mask(user, day)
    rows, distinct, first, last = db.execute(
        "SELECT count(*), count(DISTINCT ts), min(ts), max(ts) FROM heart_rate WHERE (ts AT TIME ZONE %s)::date = %s",
        (NY, day),
    ).fetchone()
    assert rows == distinct == 86400 - int(off.sum())
    assert last - first <= dt.timedelta(hours=25)
    worn = np.flatnonzero(~off)
    zone = ZoneInfo(NY)
    local = [dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(s)) for s in (worn[0], worn[-1])]
    want_first, want_last = (t.replace(tzinfo=zone).astimezone(dt.UTC) for t in local)
    assert (first, last) == (want_first, want_last)
    if worn[0] < 3600 and worn[-1] >= 3600 * 23:
        assert last - first > dt.timedelta(hours=24)
    # Both 01:xx occurrences are inside the day's window; the second one is simply unworn here.
    assert (
        db.execute(
            "SELECT count(*) FROM quarantine WHERE user_id = 1 AND day = %s AND metric = 'heart_rate'", (day,)
        ).fetchone()[0]
        == 0
    )


# ============================================================================================
# night ownership


def three_nights_on(user_ids=range(1, 6)) -> tuple[int, dt.date]:
    """A user and a first day whose three nights are all worn (so every night has data)."""
    for uid in user_ids:
        seed = SyntheticSource.default_settings(uid)["seed"]
        for first in days(JAN1, 40):
            if not any(gaps_for(seed, d).night_off for d in days(first, 3)):
                return uid, first
    raise AssertionError("no three worn nights in a row")


def window_checksum(db, metric, user_id: int, day: dt.date) -> tuple[int, str]:
    return db.execute(
        f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY {pk(metric)}), '')) "
        f"FROM {metric.table} t JOIN users u USING (user_id) WHERE t.user_id = %s AND {owner_day_sql(metric)} = %s",
        (user_id, day),
    ).fetchone()


def test_nights_belong_to_their_evening_and_neighbours_never_collide(cli, db):
    timezone = "America/Los_Angeles"
    uid, first = three_nights_on()
    seed(cli, uid, timezone, first)
    span = days(first, 3)
    backfill(cli, span[0], span[-1], "--user", str(uid))
    user = users(db, uid)[uid]
    book = assert_db_matches_ledger(db)  # rows of day D are exactly those in D's window
    assert set(book) == {(uid, d) for d in span}

    night = [m for m in METRICS if m.window is DayWindow.NIGHT]
    assert {m.name for m in night} >= {"spo2", "hrv_intraday", "sleep_sessions", "sleep_stages"}
    counts = counts_by_owner(db)
    for day in span:
        want = expected_rows(user, day)
        for m in night:
            assert want[m.name] > 0, (day, m.name)
            assert counts[m.name].get((uid, day), 0) == want[m.name], (day, m.name)
        # Explicitly: [D 12:00, D+1 12:00) local.
        for m in night:
            inside = db.execute(
                f"SELECT count(*) FROM {m.table} WHERE user_id = %s AND {m.time_column} >= "
                f"(%s::date + time '12:00') AT TIME ZONE %s AND {m.time_column} < ((%s::date + 1) + time '12:00') "
                f"AT TIME ZONE %s",
                (uid, day, timezone, day, timezone),
            ).fetchone()[0]
            assert inside == want[m.name], (day, m.name)

    watched = list(METRICS)
    before = {(m.name, d): window_checksum(db, m, uid, d) for m in watched for d in span}
    backfill(cli, span[1], span[1], "--user", str(uid), "--force")
    after = {(m.name, d): window_checksum(db, m, uid, d) for m in watched for d in span}
    assert after == before
    assert ledger(db)[(uid, span[1])]["run_id"] == runs(db)[-1]["run_id"]
    # The forced day was rewritten, with the same rows as before.
    assert runs(db)[-1]["user_days"] == 1 and runs(db)[-1]["unchanged"] == 0
    assert_db_matches_ledger(db)


# ============================================================================================
# interruption


def test_interrupted_backfill_resumes_with_only_the_missing_days(cli, db, database_url):
    seed(cli, 1)
    span = days(JAN1, 6)
    # Dead runs are detected by the absence of a connection named fitpipe-run-<id> anywhere on the
    # server (see test_dead_run_detection_is_scoped_to_this_database); start from an id that other
    # test databases on the same server are unlikely to be using right now.
    db.execute(
        "SELECT setval(pg_get_serial_sequence('ingest_runs', 'run_id'), %s)", (secrets.randbelow(10**9) + 10**9,)
    )
    proc = popen(database_url, backfill_argv(span[0], span[-1], workers=1))
    try:
        wait_for(
            lambda: db.execute("SELECT count(*) FROM ingested_days").fetchone()[0] >= 1,
            "the first ingested day",
            procs=[proc],
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the backfill finished before it could be killed"
    # The server notices the dead connections; their open transactions roll back.
    wait_for(lambda: fitpipe_backends(db) == 0, "the killed run's connections to go away")

    (killed,) = runs(db)
    assert killed["status"] == "running"
    book = assert_db_matches_ledger(db)  # no half-loaded day
    done_before = len(book)
    assert 1 <= done_before < len(span)

    resumed = backfill(cli, span[0], span[-1])
    assert f"user_days_planned={len(span) - done_before}" in resumed.stdout
    killed, second = runs(db)
    assert killed["status"] == "interrupted"
    assert second["status"] == "ok" and second["skipped"] == 0
    book = assert_db_matches_ledger(db)
    assert set(book) == {(1, d) for d in span}
    loaded_by_killed = sum(1 for e in book.values() if e["run_id"] == killed["run_id"])
    assert loaded_by_killed == done_before
    assert second["user_days"] + loaded_by_killed == len(span)
    resumed_sums = checksums(db)

    truncate_data(db)
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
    backfill(cli, span[0], span[-1])
    assert checksums(db) == resumed_sums


def test_dead_run_detection_is_scoped_to_this_database(cli, db):
    # A participant whose study starts in the future: `ingest` starts (and logs) a run that has
    # nothing to do, which is all this test needs.
    seed(cli, 1, "UTC", dt.datetime.now(dt.UTC).date() + dt.timedelta(days=5))
    dead_sql = "INSERT INTO ingest_runs (command) VALUES ('backfill') RETURNING run_id"  # as a killed run leaves it

    control = db.execute(dead_sql).fetchone()[0]
    ingest(cli, 1)
    assert {r["run_id"]: r["status"] for r in runs(db)}[control] == "interrupted"

    dead = db.execute(dead_sql).fetchone()[0]
    with psycopg.connect(ADMIN_URL, application_name=f"fitpipe-run-{dead}") as elsewhere:
        assert elsewhere.info.dbname != db.info.dbname
        ingest(cli, 1)
    assert {r["run_id"]: r["status"] for r in runs(db)}[dead] == "interrupted"


# ============================================================================================
# overlapping runs


def test_two_overlapping_backfills_load_each_day_once(cli, db, database_url):
    seed(cli, 2)
    span = days(JAN1, 3)
    # Hold every user's exclusive lock (as a rollup refresh would) until both runs have planned,
    # so both really plan all six user-days and then compete for them.
    for uid in (1, 2):
        db.execute("SELECT pg_advisory_lock(%s)", (locks.user_key(uid),))
    procs = []
    try:
        # One worker each: two runs of one worker already keep both CPUs of a small machine busy.
        procs = [popen(database_url, backfill_argv(span[0], span[-1], workers=1)) for _ in range(2)]
        wait_for(
            lambda: db.execute("SELECT count(*) FROM ingest_runs").fetchone()[0] == 2, "both runs to start", procs=procs
        )
        assert db.execute("SELECT count(*) FROM ingested_days").fetchone()[0] == 0
    finally:
        db.execute("SELECT pg_advisory_unlock_all()")
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=240))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                outputs.append(proc.communicate())

    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out, err)
        assert not ANSI.search(out) and not ANSI.search(err), (out, err)
        assert "user_days_planned=6" in out, out

    lines = [line for out, _ in outputs for line in out.splitlines() if " user=" in line]
    loaded = collections.Counter(
        re.search(r"user=(\d+) day=(\S+)", line).groups() for line in lines if "status=loaded" in line
    )
    skipped = [line for line in lines if any(note in line for note in SKIP_NOTES)]
    assert sorted(loaded) == sorted((str(u), d.isoformat()) for u in (1, 2) for d in span)
    assert set(loaded.values()) == {1}
    assert len(skipped) == 6, lines
    assert len(lines) == 12

    book = assert_db_matches_ledger(db)
    assert set(book) == {(u, d) for u in (1, 2) for d in span}
    both = runs(db)
    assert [r["status"] for r in both] == ["ok", "ok"]
    assert sum(r["user_days"] for r in both) == 6
    assert sum(r["skipped"] for r in both) == 6
    for r in both:
        assert sum(1 for e in book.values() if e["run_id"] == r["run_id"]) == r["user_days"]
    total, distinct = db.execute("SELECT count(*), count(DISTINCT (user_id, ts)) FROM heart_rate").fetchone()
    assert total == distinct == sum(e["rows"]["heart_rate"] for e in book.values())


# ============================================================================================
# quarantine through the library


def test_malformed_and_out_of_range_records_are_quarantined_and_the_rest_loads(cli, db, database_url):
    seed(cli, 1)
    user = users(db, 1)[1]
    day = JAN1
    clean = expected(user, day)
    payloads = SyntheticSource().fetch_day(user, day, fetch_now())
    dataset = payloads["intraday_heart_rate"][0]["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]
    abc, untimed, too_fast = dataset[1000], dataset[2000], dataset[3000]
    abc["value"] = "abc"
    untimed_time = untimed.pop("time")
    untimed_value = float(untimed["value"])
    too_fast["value"] = 400
    bad_times = [f"{day}T{abc['time']}+00", f"{day}T{untimed_time}+00", f"{day}T{too_fast['time']}+00"]

    ctx = DayContext(1, day, user.timezone)
    with psycopg.connect(database_url) as conn:
        assert not conn.autocommit
        outcome = replace_day(
            conn, ctx, lambda: parse_payloads(payloads, ctx), source="synthetic", run_id=None, skip_if_done=False
        )
    assert outcome.status == "loaded"
    assert outcome.quarantined == len(clean.quarantined) + 3

    rows = db.execute(
        "SELECT raw_value, reason, run_id FROM quarantine WHERE user_id = 1 AND day = %s AND metric = 'heart_rate'",
        (day,),
    ).fetchall()
    assert len(rows) == 3
    by_raw = {raw: reason for raw, reason, _ in rows}
    (abc_reason,) = [r for raw, r in by_raw.items() if "'abc'" in raw]
    assert "not a number" in abc_reason or "malformed" in abc_reason
    (fast_reason,) = [r for raw, r in by_raw.items() if "400" in raw and too_fast["time"] in raw]
    assert "range" in fast_reason
    (untimed_reason,) = [r for raw, r in by_raw.items() if repr(untimed_value) in raw]
    assert "malformed" in untimed_reason
    assert {run for _, _, run in rows} == {None}

    want = expected_rows(user, day)
    counts = counts_by_owner(db)
    for m in METRICS:
        assert counts[m.name].get((1, day), 0) == want[m.name] - (3 if m.name == "heart_rate" else 0), m.name
    assert (
        db.execute(
            "SELECT count(*) FROM heart_rate WHERE user_id = 1 AND ts = ANY(%s::timestamptz[])", (bad_times,)
        ).fetchone()[0]
        == 0
    )
    book = assert_db_matches_ledger(db)
    assert book[(1, day)]["quarantined"] == outcome.quarantined
    assert (
        db.execute("SELECT count(*) FROM quarantine WHERE user_id = 1 AND day = %s", (day,)).fetchone()[0]
        == outcome.quarantined
    )

    # Replacing the day with clean payloads replaces its quarantine too.
    with psycopg.connect(database_url) as conn:
        replace_day(conn, ctx, lambda: clean, source="synthetic", run_id=None, skip_if_done=False)
    assert (
        db.execute(
            "SELECT count(*) FROM quarantine WHERE user_id = 1 AND day = %s AND metric = 'heart_rate'", (day,)
        ).fetchone()[0]
        == 0
    )
    assert counts_by_owner(db)["heart_rate"][(1, day)] == want["heart_rate"]
    assert ledger(db)[(1, day)]["quarantined"] == len(clean.quarantined)


# ============================================================================================
# the cursor


def test_ingest_walks_forward_one_day_at_a_time(cli, db):
    seed(cli, 1)
    for k in range(3):
        ingest(cli, 1)
        me = user_status(status(cli), 1)
        assert me["cursor"] == (JAN1 + dt.timedelta(days=k)).isoformat()
        assert me["days_ingested"] == k + 1 and me["missing_days"] == []
        assert set(ledger(db)) == {(1, d) for d in days(JAN1, k + 1)}
    assert [r["user_days"] for r in runs(db)] == [1, 1, 1]


def test_ingest_never_goes_past_yesterday(cli, db):
    today = dt.datetime.now(dt.UTC).date()
    seed(cli, 1, "UTC", today - dt.timedelta(days=2))
    ingest(cli, 10)
    after = dt.datetime.now(dt.UTC).date()
    loaded = {d for _, d in ledger(db)}
    start = today - dt.timedelta(days=2)
    # (If midnight UTC passed during the run, one more day may have become complete.)
    assert loaded == set(days(start, 2)) or (after != today and loaded == set(days(start, 3)))
    assert max(loaded) < after
    assert user_status(status(cli), 1)["cursor"] == max(loaded).isoformat()
    midnight = dt.datetime.combine(max(loaded) + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert db.execute("SELECT count(*) FROM heart_rate WHERE ts >= %s", (midnight,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM heart_rate").fetchone()[0] > 0

    again = ingest(cli, 10)
    assert "user_days_planned=0" in again.stdout
    assert runs(db)[-1]["user_days"] == 0


def test_backfill_past_a_gap_does_not_move_the_cursor_beyond_it(cli, db):
    seed(cli, 1)
    d = days(JAN1, 4)
    backfill(cli, d[0], d[0])
    backfill(cli, d[3], d[3])
    me = user_status(status(cli), 1)
    assert me["cursor"] == d[0].isoformat()
    assert me["missing_days"] == [d[1].isoformat(), d[2].isoformat()]
    assert me["days_after_gap"] == 1
    assert me["days_ingested"] == 2 and me["last_ingested"] == d[3].isoformat()

    # ingest continues from the cursor, i.e. fills the gap rather than going past the last day.
    ingest(cli, 1)
    assert set(ledger(db)) == {(1, x) for x in (d[0], d[1], d[3])}
    me = user_status(status(cli), 1)
    assert me["cursor"] == d[1].isoformat()
    assert me["missing_days"] == [d[2].isoformat()]
    assert me["days_after_gap"] == 1
    ingest(cli, 1)
    me = user_status(status(cli), 1)
    assert me["cursor"] == d[3].isoformat() and me["missing_days"] == [] and me["days_after_gap"] == 0
    assert me["days_ingested"] == 4


# ============================================================================================
# CLI errors


def test_a_failing_user_day_fails_the_run_naming_it_and_keeps_the_others(cli, db, monkeypatch):
    seed(cli, 1)
    span = days(JAN1, 3)
    bad = span[1]
    original = SyntheticSource.fetch_day

    def flaky(self, user, day, fetch):
        if day == bad:
            raise RuntimeError("synthetic outage")
        return original(self, user, day, fetch)

    # The runner's worker processes are forked, so they inherit the patch.
    monkeypatch.setattr(SyntheticSource, "fetch_day", flaky)
    result = cli(
        "backfill", "--start", span[0].isoformat(), "--end", span[-1].isoformat(), "--workers", "2", "--no-refresh"
    )
    assert result.exit_code == PartialFailure.exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    final = result.stderr.strip().splitlines()[-1]
    assert final.startswith("error: ") and f"user 1 day {bad}" in final, result.stderr
    assert set(ledger(db)) == {(1, span[0]), (1, span[2])}
    (run,) = runs(db)
    assert run["status"] == "failed" and run["failed"] == 1 and run["user_days"] == 2
    assert "synthetic outage" in run["error"] and str(bad) in run["error"]
    assert user_status(status(cli), 1)["cursor"] == span[0].isoformat()
    assert_db_matches_ledger(db)


# ============================================================================================
# status --json


def test_status_json_shape(cli, db):
    seed(cli, 2)
    span = days(JAN1, 2)
    backfill(cli, span[0], span[-1], "--user", "1")
    report = status(cli)
    assert report["metrics"] == [m.name for m in METRICS]
    assert [u["user_id"] for u in report["users"]] == [1, 2]
    people = users(db, 1, 2)

    one, two = user_status(report, 1), user_status(report, 2)
    assert one["cursor"] == span[-1].isoformat() and one["days_ingested"] == 2
    assert one["missing_days"] == [] and one["days_after_gap"] == 0
    assert one["study_start"] == JAN1.isoformat() and one["timezone"] == "UTC"
    counts = counts_by_owner(db)
    for m in METRICS:
        assert one["rows"][m.name] == sum(n for (uid, _), n in counts[m.name].items() if uid == 1), m.name
        assert one["rows"][m.name] == sum(expected_rows(people[1], d)[m.name] for d in span), m.name
    assert one["quarantined"] == sum(len(expected(people[1], d).quarantined) for d in span)
    assert two["cursor"] is None and two["days_ingested"] == 0 and two["missing_days"] == []
    assert set(two["rows"]) == set(BY_NAME) and not any(two["rows"].values())

    last = report["last_run"]
    (run,) = runs(db)
    assert last["run_id"] == run["run_id"] and last["status"] == "ok" and last["command"] == "backfill"
    assert last["user_days"] == 2 and last["failed"] == 0 and last["finished_at"]


def test_a_killed_worker_fails_its_days_instead_of_hanging(db, database_url):
    """The OOM killer or a crash can take out a worker: the run must end, name the lost days and
    leave them for the next run, not wait forever for a result that will never come."""
    fitpipe(database_url, "seed-users", "--count", "1", "--start-date", "2024-02-01")
    run = popen(database_url, backfill_argv(dt.date(2024, 2, 1), dt.date(2024, 2, 8), workers=2))
    try:
        wait_for(lambda: db.execute("SELECT count(*) FROM ingested_days").fetchone()[0], "a first day", procs=[run])
        workers = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
        assert workers, "the run has worker processes"
        os.kill(int(workers[0]), signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 5, stderr
    assert "worker process died" in stdout + stderr
    status, failed = db.execute("SELECT status, failed FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert status == "failed" and failed >= 1
    loaded = db.execute("SELECT count(*) FROM ingested_days").fetchone()[0]
    assert loaded < 8
    fitpipe(database_url, "backfill", "--start", "2024-02-01", "--end", "2024-02-08", "--workers", "2", "--no-refresh")
    assert db.execute("SELECT count(*) FROM ingested_days").fetchone()[0] == 8


def test_cli_errors_are_one_line_without_traceback(cli, db):
    seed(cli, 1)
    future = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    cases = [
        (("backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--user", "99"), ("99",)),
        (("ingest", "--days", "1", "--user", "99"), ("99",)),
        (("status", "--user", "99"), ("99",)),
        (("backfill", "--start", "2024-13-01", "--end", "2024-12-01"), ("--start", "2024-13-01")),
        (("backfill", "--start", "2024-01-01", "--end", "2024-02-30"), ("--end",)),
        (("backfill", "--start", "2024-01-05", "--end", "2024-01-01"), ("--end", "before", "--start")),
        (("backfill", "--start", "2024-01-01", "--end", future.isoformat()), ("--end", future.isoformat())),
    ]
    for args, words in cases:
        extra = ("--no-refresh",) if args[0] in ("backfill", "ingest") else ()
        one_error_line(cli(*args, *extra), *words, code=2)
    assert runs(db) == [] and ledger(db) == {}
