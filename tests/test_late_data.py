"""Late data (issue 21): a day settles by evidence that the participant's watch synced past it
(Google Health's users/me/pairedDevices), not by the calendar alone. Through the real CLI, a real
TimescaleDB and the local Google Health API (fitpipe.sources.google_health.standin)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from fitpipe.derive.adherence import FLAGS
from fitpipe.sources.google_health.standin import synthetic_seed
from support.cli import fitpipe
from support.google_health import ZONE, add_google_participant, ledger, status_of, tables_of

# Each test runs ingests against the stand-in: seconds to minutes.
pytestmark = pytest.mark.slow

# The watch last synced at 09:00 New York time on 4 March 2024.
LAST_SYNC = dt.datetime(2024, 3, 4, 9, tzinfo=ZoneInfo(ZONE))


def _states(conn, user_id: int) -> dict[str, str]:
    return {day: state for day, (state, _, _) in ledger(conn, user_id).items()}


def _adherence(url: str, as_of: str) -> dict[int, dict]:
    report = json.loads(fitpipe(url, "adherence", "--as-of", as_of, "--json").stdout)
    return {row["user_id"]: row for row in report["participants"]}


def _accounts(health, url, late: dict, clean: dict | None = None) -> None:
    """Participant 1 ("late") and 2 ("clean"): the same seed and data, one heart-rate point a minute."""
    health.api.add_account("late", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60, **late)
    health.api.add_account("clean", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60, **(clean or {}))
    add_google_participant(url, health, 1, "late")
    add_google_participant(url, health, 2, "clean")


def test_a_day_fetched_before_the_watch_synced_stays_provisional_and_loads_after_the_sync(
    health, database_url, db, monkeypatch
):
    _accounts(health, database_url, late={"synced_until": LAST_SYNC, "battery_level": 15})
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    fitpipe(database_url, "ingest", "--days", "10")
    late, clean = _states(db, 1), _states(db, 2)
    # By the calendar (3 settle days) 1..6 March are settled; the clean watch agrees.
    assert [clean[f"2024-03-0{d}"] for d in range(1, 7)] == ["complete"] * 6
    # The late watch synced on the 4th at 09:00: the days it delivered whole settle, the rest wait,
    # even those it has delivered nothing of, instead of settling empty for good.
    assert late["2024-03-01"] == late["2024-03-02"] == "complete"
    assert [late[f"2024-03-0{d}"] for d in range(3, 10)] == ["provisional"] * 7
    assert "empty" not in late.values()
    assert db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1 AND ts > %s", (LAST_SYNC,)).fetchone()[0] == 0

    # status shows the watch, its last sync and its battery; adherence flags the silent watch.
    (device,) = status_of(database_url, 1)["devices"]
    assert dt.datetime.fromisoformat(device["last_sync_time"]) == LAST_SYNC
    assert device["battery_level"] == 15 and device["battery_status"] == "Low"
    assert status_of(database_url, 1)["missing_after_sync"] == []
    text = fitpipe(database_url, "status").output
    assert "user 1 device Pixel Watch 3: last sync 2024-03-04" in text and "battery 15%" in text
    # The cohort page of `fitpipe serve` shows the same watch.
    from starlette.testclient import TestClient

    from fitpipe.web.app import create_app

    with TestClient(create_app(database_url)) as client:
        page = client.get("/").text
    row = page.split('data-user-id="1"', 1)[1].split("</tr>", 1)[0]
    expected_sync = LAST_SYNC.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert f'<td class="last-sync">{expected_sync}</td>' in row and '<td class="num battery">15 %</td>' in row
    flags = _adherence(database_url, "2024-03-09")
    # From the last sync to the end of 9 March in New York: 5 days and 15 hours.
    assert flags[1]["flag_device_not_synced"] is True and flags[1]["hours_since_sync"] == pytest.approx(135)
    assert flags[2]["flag_device_not_synced"] is False
    # Counted with the others (the late watch's missing data raises those too), worst first.
    assert flags[1]["flag_count"] == sum(flags[1][name] for name in FLAGS) == 4
    assert next(iter(flags)) == 1
    # A threshold the silence stays under raises nothing.
    relaxed = json.loads(
        fitpipe(database_url, "adherence", "--as-of", "2024-03-09", "--max-sync-hours", "200", "--json").stdout
    )
    assert not next(r for r in relaxed["participants"] if r["user_id"] == 1)["flag_device_not_synced"]

    # The phone syncs everything; the next ingest loads the waiting days and settles them.
    health.api.update_account("late", synced_until=None)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-11")
    fitpipe(database_url, "ingest", "--days", "10")
    late = _states(db, 1)
    assert [late[f"2024-03-0{d}"] for d in range(3, 8)] == ["complete"] * 5
    assert _states(db, 2) == late
    assert tables_of(db, 1) == tables_of(db, 2), "the late participant must end with every row of the clean one"
    assert not _adherence(database_url, "2024-03-10")[1]["flag_device_not_synced"]
    # The pairedDevices calls were few: one per participant and worker per run, not one per day.
    assert 0 < len([a for a, s in health.api.device_requests if a == "late"]) <= 2 * 2


def test_a_clock_running_ahead_does_not_settle_a_day_the_watch_has_not_delivered(health, database_url, db, monkeypatch):
    _accounts(health, database_url, late={"synced_until": LAST_SYNC})
    monkeypatch.setenv("FITPIPE_TODAY", "2025-01-01")  # months past the day's settle window
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05")
    assert _states(db, 1) == {"2024-03-05": "provisional"}
    assert _states(db, 2) == {"2024-03-05": "complete"}


def test_an_empty_day_the_watch_synced_past_is_missing_and_status_and_adherence_say_so(
    health, database_url, db, monkeypatch
):
    # "late" never synced past 4 March and has no data; "clean" synced (now) and has no data either.
    _accounts(health, database_url, late={"synced_until": LAST_SYNC, "no_data": True}, clean={"no_data": True})
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-06")
    assert _states(db, 2) == {"2024-03-05": "empty", "2024-03-06": "empty"}
    assert _states(db, 1) == {"2024-03-05": "provisional", "2024-03-06": "provisional"}
    assert status_of(database_url, 2)["missing_after_sync"] == ["2024-03-05", "2024-03-06"]
    assert status_of(database_url, 1)["missing_after_sync"] == []
    assert (
        "user 2 has no data although the device synced past: 2024-03-05, 2024-03-06"
        in fitpipe(database_url, "status").output
    )
    flags = _adherence(database_url, "2024-03-06")
    assert flags[2]["days_missing"] == 2 and flags[1]["days_missing"] == 0


def test_a_grant_without_the_settings_scope_keeps_the_calendar_rule(health, database_url, db, monkeypatch):
    """Participants who consented before fitpipe asked for googlehealth.settings.readonly: Google
    answers pairedDevices 403; their days settle by the calendar, as before, until they re-enrol."""
    from fitpipe.sources.google_health import consent

    with monkeypatch.context() as before:
        before.setattr(consent, "SCOPES", tuple(s for s in consent.SCOPES if not s.endswith("settings.readonly")))
        _accounts(health, database_url, late={"synced_until": LAST_SYNC, "no_data": True})
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05")
    assert _states(db, 1) == {"2024-03-05": "empty"}
    assert ("late", 403) in health.api.device_requests
    assert status_of(database_url, 1)["devices"] == []


def test_sources_without_sync_evidence_keep_the_calendar_rule(database_url, db, monkeypatch):
    from fitpipe.participants import list_users
    from fitpipe.sources import source_for
    from fitpipe.sources.contract import BudgetLedger, Fetch, synced_past

    monkeypatch.setenv("FITPIPE_TODAY", "2024-01-10")
    fitpipe(database_url, "seed-users", "--count", "1", "--start-date", "2024-01-01")
    fitpipe(database_url, "backfill", "--start", "2024-01-02", "--end", "2024-01-03")
    assert _states(db, 1) == {"2024-01-02": "complete", "2024-01-03": "complete"}
    (user,) = list_users(db, [1])
    fetch = Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(None))
    for name in ("synthetic", "takeout"):
        assert source_for(name).device_sync(user, fetch) is None
    assert synced_past(None, user.day_context(dt.date(2024, 1, 2)))
    assert db.execute("SELECT count(*) FROM participant_devices").fetchone()[0] == 0
    assert (
        status_of(database_url, 1)["devices"] == []
        and _adherence(database_url, "2024-01-03")[1]["last_device_sync"] is None
    )
