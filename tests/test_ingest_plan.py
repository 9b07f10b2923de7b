"""Which days a run loads, and when: deferral, provisional days, unchanged fetches, the cursor,
simulated sync lag, withdrawn participants, timezone history, and 'never past yesterday' in
each participant's own zone."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from fitpipe import sources as source_registry
from fitpipe.catalogue import METRICS, DayWindow
from fitpipe.ingest.runner import plan_ingest
from fitpipe.participants import add_participant, list_users
from fitpipe.sources import RetryLater
from fitpipe.sources.synthetic.source import SyntheticSource
from fitpipe.timezones import local_instant
from support.cli import fitpipe

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

START = dt.date(2024, 1, 1)


class FlakySource(SyntheticSource):
    """Says RetryLater a set number of times (counted in a file: workers are separate processes)."""

    name = "flaky-test"

    def fetch_day(self, participant, day, fetch):
        counter = Path(os.environ["FLAKY_COUNTER"])
        refusals = int(counter.read_text()) if counter.exists() else 0
        if refusals < int(os.environ["FLAKY_REFUSALS"]):
            counter.write_text(str(refusals + 1))
            raise RetryLater("503 from the test source", after=float(os.environ["FLAKY_AFTER"]))
        return super().fetch_day(participant, day, fetch)


@pytest.fixture(scope="module", autouse=True)
def flaky_source_registered():
    """FlakySource is known to fitpipe while this module runs, and only then: registered at import,
    it would join every other module's registered() (the contract suite's parameters among them)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(source_registry._loaded, FlakySource.name, FlakySource)
        yield


def ledger(db, user_id):
    rows = db.execute(
        "SELECT day, state, rows_loaded, ingested_at, checked_at, attempts, note FROM ingested_days "
        "WHERE user_id = %s ORDER BY day",
        (user_id,),
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def flaky(monkeypatch, tmp_path, refusals: int, after: float) -> None:
    monkeypatch.setenv("FLAKY_COUNTER", str(tmp_path / "refusals"))
    monkeypatch.setenv("FLAKY_REFUSALS", str(refusals))
    monkeypatch.setenv("FLAKY_AFTER", str(after))


def test_retry_later_defers_the_day_then_a_later_run_loads_it(db, database_url, monkeypatch, tmp_path):
    add_participant(db, 1, source="flaky-test", timezone="UTC", study_start=START)
    flaky(monkeypatch, tmp_path, refusals=2, after=0.01)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-02")
    # --max-wait 0: every retry-later defers to the next run.
    first = fitpipe(database_url, "ingest", "--days", "1", "--workers", "1", "--max-wait", "0")
    assert "status=deferred" in first.stdout
    assert ledger(db, 1)[START][0] == "deferred"
    status = json.loads(fitpipe(database_url, "status", "--json").stdout)["users"][0]
    assert status["states"]["deferred"] == 1 and status["deferred"][0]["note"] == "503 from the test source"
    assert status["cursor"] is None
    fitpipe(database_url, "ingest", "--days", "1", "--workers", "1", "--max-wait", "0")
    state, rows, *_rest, attempts, _note = ledger(db, 1)[START]
    assert state == "deferred" and attempts == 2 and rows == 0
    fitpipe(database_url, "ingest", "--days", "1", "--workers", "1", "--max-wait", "0")
    state, rows, *_ = ledger(db, 1)[START]
    assert state == "complete" and rows > 0
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1").fetchone()[0] > 0
    runs = db.execute("SELECT status, deferred, user_days FROM ingest_runs ORDER BY run_id").fetchall()
    assert runs == [("ok", 1, 0), ("ok", 1, 0), ("ok", 0, 1)]


def test_a_short_retry_later_is_waited_out_within_the_run(db, database_url, monkeypatch, tmp_path):
    add_participant(db, 1, source="flaky-test", timezone="UTC", study_start=START)
    flaky(monkeypatch, tmp_path, refusals=2, after=0.2)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-02")
    result = fitpipe(database_url, "ingest", "--days", "1", "--workers", "1")
    assert "status=loaded state=complete" in result.stdout
    assert (tmp_path / "refusals").read_text() == "2"
    assert ledger(db, 1)[START][0] == "complete"


def lagged(db, user_id: int, lag: int = 30, seed: int | None = None, timezone: str = "UTC") -> None:
    settings = {"sync_lag_hours": lag} | ({"seed": seed} if seed else {})
    add_participant(db, user_id, source="synthetic", timezone=timezone, study_start=START, settings=settings)


def test_a_provisional_day_is_replaced_when_it_grows_and_left_alone_when_unchanged(db, database_url, monkeypatch):
    lagged(db, 1)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-03")  # 30 h lag: day 1 has synced until 18:00
    fitpipe(database_url, "ingest", "--days", "1")
    state, partial, ingested_at, checked_at, *_ = ledger(db, 1)[START]
    assert state == "provisional" and partial > 0
    last_hr = db.execute("SELECT max(ts) FROM heart_rate WHERE user_id = 1").fetchone()[0]
    assert last_hr < dt.datetime(2024, 1, 1, 18, tzinfo=dt.UTC)
    cursor = json.loads(fitpipe(database_url, "status", "--json").stdout)["users"][0]["cursor"]
    assert cursor is None  # the cursor does not pass an unsettled day

    again = fitpipe(database_url, "ingest", "--days", "1")
    assert "user=1 day=2024-01-01 status=unchanged state=provisional" in again.stdout
    state, rows, ingested_again, checked_again, *_ = ledger(db, 1)[START]
    assert (state, rows, ingested_again) == ("provisional", partial, ingested_at)
    assert checked_again > checked_at

    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-04")  # settled: the whole night has synced
    fitpipe(database_url, "ingest", "--days", "1")
    state, full, ingested_late, *_ = ledger(db, 1)[START]
    assert state == "complete" and full > partial and ingested_late > ingested_at
    assert json.loads(fitpipe(database_url, "status", "--json").stdout)["users"][0]["cursor"] == "2024-01-01"


def window_checksums(db, user_id: int, first: dt.date, days: int) -> dict[str, str]:
    """Per table, an md5 of the rows (without user_id) that local days first.. first+days-1 own (UTC)."""
    sums = {}
    for metric in METRICS:
        columns = ", ".join(metric.column_names[1:])
        if metric.window is DayWindow.DATE:
            where = f"{metric.time_column} BETWEEN %(first)s AND %(last)s"
        else:
            hour = 12 if metric.window is DayWindow.NIGHT else 0
            where = (
                f"{metric.time_column} >= %(first)s::timestamptz + interval '{hour} hours' "
                f"AND {metric.time_column} < %(end)s::timestamptz + interval '{hour} hours'"
            )
        sums[metric.table] = db.execute(
            f"SELECT count(*), md5(string_agg(row({columns})::text, '|' ORDER BY {columns})) FROM {metric.table} "
            f"WHERE user_id = %(user)s AND {where}",
            {
                "user": user_id,
                "first": first,
                "last": first + dt.timedelta(days=days - 1),
                "end": first + dt.timedelta(days=days),
            },
        ).fetchone()
    sums["rollup_1min"] = db.execute(
        "SELECT count(*), md5(string_agg(row(metric, field, bucket, n_measured, min_measured, max_measured)::text, '|' "
        "ORDER BY metric, field, bucket)) FROM rollup_1min WHERE user_id = %s AND bucket >= %s AND bucket < %s",
        (user_id, first, first + dt.timedelta(days=days)),
    ).fetchone()
    return sums


def test_nightly_runs_with_sync_lag_end_like_a_backfill_after_everything_settled(db, database_url, monkeypatch):
    seed = SyntheticSource.default_settings(1)["seed"]
    lagged(db, 1, seed=seed)
    lagged(db, 2, seed=seed)  # the same data, fetched once after it settled
    for offset in range(1, 9):
        monkeypatch.setenv("FITPIPE_TODAY", (START + dt.timedelta(days=offset)).isoformat())
        fitpipe(database_url, "ingest", "--days", "1", "--user", "1")
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-12")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--user", "2")
    states = {day: row[0] for day, row in ledger(db, 1).items()}
    assert [states[START + dt.timedelta(days=i)] for i in range(5)] == ["complete"] * 5
    nightly, settled = window_checksums(db, 1, START, 5), window_checksums(db, 2, START, 5)
    assert nightly["heart_rate"][0] > 300_000
    assert nightly == settled
    # Several of the nightly fetches saw a partial day, so the path provisional -> complete was taken.
    first_runs = db.execute("SELECT count(*) FROM ingest_runs WHERE arguments->'users' = '[1]'").fetchone()[0]
    assert first_runs == 8


def test_a_timezone_change_mid_study_moves_the_day_boundaries_and_rollups(db, database_url, monkeypatch):
    add_participant(
        db, 1, source="synthetic", timezone="America/New_York", study_start=START, settings={"wear_gaps": False}
    )
    result = fitpipe(database_url, "participants", "set-timezone", "1", "Asia/Tokyo", "--from", "2024-01-04")
    assert "Asia/Tokyo from 2024-01-04" in result.stdout
    user = list_users(db, [1])[0]
    assert [zone for _, zone in user.zones] == ["America/New_York", "Asia/Tokyo"]
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-08")
    fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-06")
    for offset in range(6):
        day = START + dt.timedelta(days=offset)
        zone = "America/New_York" if day < dt.date(2024, 1, 4) else "Asia/Tokyo"
        next_zone = "America/New_York" if day + dt.timedelta(days=1) < dt.date(2024, 1, 4) else "Asia/Tokyo"
        lo, hi = local_instant(day, 0, zone), local_instant(day + dt.timedelta(days=1), 0, next_zone)
        count, first, last = db.execute(
            "SELECT count(*), min(ts), max(ts) FROM heart_rate WHERE user_id = 1 AND ts >= %s AND ts < %s", (lo, hi)
        ).fetchone()
        assert count > 0 and first >= lo and last < hi
        # The daily rollup of that local day is labelled with its start and counts exactly its rows.
        bucket = db.execute(
            "SELECT n_measured FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate' AND bucket = %s", (lo,)
        ).fetchone()
        assert bucket == (count,), day
    # Nothing of the raw table is left out of the rollups, and no day is counted twice.
    total = db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1").fetchone()[0]
    rolled = db.execute("SELECT sum(n_measured) FROM rollup_1d WHERE user_id = 1 AND metric = 'heart_rate'").fetchone()[
        0
    ]
    assert rolled == total
    # The day that ends in the new zone (moving east: 14 hours shorter) quarantines its late readings.
    reasons = db.execute("SELECT DISTINCT reason FROM quarantine WHERE user_id = 1 AND day = '2024-01-03'").fetchall()
    assert reasons and all("outside local day" in r[0] for r in reasons)


def test_withdrawn_participants_are_not_ingested(db, database_url, monkeypatch):
    add_participant(db, 1, source="synthetic", timezone="UTC", study_start=START)
    add_participant(db, 2, source="synthetic", timezone="UTC", study_start=START)
    fitpipe(database_url, "participants", "withdraw", "2")
    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-02")
    fitpipe(database_url, "ingest", "--days", "1")
    assert db.execute("SELECT DISTINCT user_id FROM ingested_days").fetchall() == [(1,)]
    refused = fitpipe(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-01", "--user", "2", ok=False)
    assert refused.exit_code == 2 and "withdrew" in refused.stderr


@pytest.mark.parametrize("lag, settle", [(0, 0), (12, 1), (30, 2), (36, 2), (37, 3)])
def test_the_synthetic_settle_window_follows_the_lag(lag, settle):
    from fitpipe.participants import User

    user = User(1, "p", "UTC", "synthetic", START, settings={"sync_lag_hours": lag})
    assert SyntheticSource().settle_days_for(user) == settle


@pytest.fixture
def conn(loaded):
    """A connection to the database of `loaded` (participant 1, two days)."""
    with psycopg.connect(loaded) as connection:
        yield connection


def test_ingest_stops_at_yesterday_in_each_participants_own_zone(loaded, conn, monkeypatch):
    """Pago Pago (UTC-11) and Kiritimati (UTC+14): at any instant one of them is on another date
    than UTC, so a planner that takes "yesterday" in UTC gets one of them wrong."""
    monkeypatch.delenv("FITPIPE_TODAY", raising=False)
    zones = {2: "Pacific/Pago_Pago", 3: "Pacific/Kiritimati"}
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=5)
    for user_id, zone in zones.items():
        add_participant(conn, user_id, source="synthetic", timezone=zone, study_start=start)
    try:
        expected_before = {u: dt.datetime.now(ZoneInfo(z)).date() - dt.timedelta(days=1) for u, z in zones.items()}
        plan = plan_ingest(conn, list(zones), 100)
        expected_after = {u: dt.datetime.now(ZoneInfo(z)).date() - dt.timedelta(days=1) for u, z in zones.items()}
        for user_id in zones:
            last = max(t.day for t in plan.tasks if t.user.user_id == user_id)
            assert last in (expected_before[user_id], expected_after[user_id]), (zones[user_id], last)
    finally:
        conn.rollback()
        conn.execute("DELETE FROM users WHERE user_id = ANY(%s)", (list(zones),))
        conn.commit()
