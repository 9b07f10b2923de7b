"""The google-health source against the local Google Health API (fitpipe.sources.google_health.standin): a
real HTTP server on 127.0.0.1 whose responses are built from Google's generated types, driven
through the real CLI and a real database."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import requests

from fitpipe.sources.google_health.standin import synthetic_seed
from support.cli import fitpipe, popen, run_fitpipe
from support.google_health import (
    ZONE,
    add_google_participant,
    assert_no_secrets,
    consent_as,
    database_text,
    ledger,
    status_of,
    tables_of,
)

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

# --- enrolment --------------------------------------------------------------------------------------------


def run_enroll(url: str, server, *args: str, account: str | None = None) -> subprocess.CompletedProcess:
    """`fitpipe enroll --no-browser` in a subprocess; the test is the participant's browser."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", "--database-url", url, "enroll", "--no-browser", *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("http://"):
            url_shown = line.strip() + (f"&login_hint={account}" if account else "")
            # Google consents and redirects to the loopback address fitpipe listens on.
            answer = requests.get(url_shown, timeout=20)
            assert answer.status_code == 200, answer.text
            break
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(lines) + out, err)


def test_enroll_runs_the_installed_app_flow_and_stores_the_grant_encrypted(health, database_url, db):
    health.api.add_account("alice", timezone=ZONE, seed=synthetic_seed(1))
    result = run_enroll(
        database_url, health, "--user", "41", "--timezone", ZONE, "--study-start", "2024-03-01", account="alice"
    )
    assert result.returncode == 0, result.stderr
    assert "participant 41 enrolled with google-health" in result.stdout
    shown = next(line for line in result.stdout.splitlines() if line.startswith("http://"))
    # Loopback redirect on 127.0.0.1, PKCE, offline access, the four read-only scopes and no more.
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in shown and "code_challenge_method=S256" in shown
    assert "access_type=offline" in shown
    assert shown.count("googlehealth.") == 4 and shown.count(".readonly") == 4
    assert ("authorization_code", health.api.client_id) in health.api.token_requests
    user = status_of(database_url, 41)
    assert user["credentials"] == "ok" and user["secret_stored_at"]
    assert_no_secrets(health, result.stdout, result.stderr, database_text(db))
    # Enrolling again renews the consent of the same participant.
    again = run_enroll(database_url, health, "--user", "41", account="alice")
    assert again.returncode == 0 and "re-consented" in again.stdout


def test_enroll_bad_input_is_one_line_without_traceback(health, database_url, monkeypatch):
    result = subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", "--database-url", database_url, "enroll", "--user", "5", "--no-browser"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--timezone" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.delenv("FITPIPE_GOOGLE_CLIENT_SECRETS")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fitpipe.cli",
            "--database-url",
            database_url,
            "enroll",
            "--user",
            "5",
            "--timezone",
            ZONE,
            "--no-browser",
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "FITPIPE_GOOGLE_CLIENT_SECRETS"},
    )
    assert result.returncode == 2 and "--client-secrets" in result.stderr and "Traceback" not in result.stderr


# --- end to end: the same days as the synthetic source ------------------------------------------------------


def _compare(conn, google: int, synthetic: int, sql: str) -> None:
    got = conn.execute(sql, (google,)).fetchall()
    want = conn.execute(sql, (synthetic,)).fetchall()
    assert got == want, f"{sql}: {len(got)} rows via the API, {len(want)} from the synthetic source"
    assert got, f"{sql}: no rows to compare"


def test_end_to_end_equals_the_synthetic_source_across_both_dst_days(health, database_url, db, monkeypatch):
    """Participant 1 through the API, participant 2 from the synthetic source with the same seed:
    the same rows, times and local-day boundaries included, in America/New_York on both DST days."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-11-20")
    health.api.add_account("alice", timezone=ZONE, seed=synthetic_seed(1))
    add_google_participant(database_url, health, 1, "alice")
    fitpipe(
        database_url,
        "participants",
        "add",
        "2",
        "--source",
        "synthetic",
        "--timezone",
        ZONE,
        "--study-start",
        "2024-03-01",
        "--setting",
        f"seed={synthetic_seed(1)}",
    )
    outputs = []
    for day in ("2024-03-10", "2024-11-03"):
        outputs.append(
            fitpipe(database_url, "backfill", "--start", day, "--end", day, "--workers", "2", "--quiet").output
        )
        states = ledger(db, 1)
        assert states[day][0] == "complete"
    # Heart rate: Google's beats_per_minute is an integer, wearipedia's a float.
    _compare(db, 1, 2, "SELECT ts FROM heart_rate WHERE user_id = %s ORDER BY ts")
    worst = db.execute(
        "SELECT max(abs(g.bpm - s.bpm)) FROM heart_rate g JOIN heart_rate s USING (ts) "
        "WHERE g.user_id = 1 AND s.user_id = 2"
    ).fetchone()[0]
    assert worst <= 0.5
    # A minute outside every zone has no point in the API.
    _compare(
        db,
        1,
        2,
        "SELECT ts, active_zone_minutes, fat_burn_minutes, cardio_minutes, peak_minutes "
        "FROM active_zone_minutes WHERE user_id = %s AND active_zone_minutes > 0 ORDER BY ts",
    )
    _compare(db, 1, 2, "SELECT ts, spo2_pct FROM spo2 WHERE user_id = %s ORDER BY ts")
    # The API reports no coverage.
    _compare(db, 1, 2, "SELECT ts, rmssd, hf, lf FROM hrv_intraday WHERE user_id = %s ORDER BY ts")
    _compare(
        db,
        1,
        2,
        "SELECT day, full_sleep, deep_sleep, light_sleep, rem_sleep FROM breathing_rate "
        "WHERE user_id = %s ORDER BY day",
    )
    # The API reports no efficiency.
    _compare(
        db,
        1,
        2,
        "SELECT start_ts, end_ts, date_of_sleep, log_id, is_main_sleep, duration_s, minutes_asleep, "
        "minutes_awake, minutes_to_fall_asleep, minutes_after_wakeup, time_in_bed FROM sleep_sessions "
        "WHERE user_id = %s ORDER BY start_ts",
    )
    _compare(
        db,
        1,
        2,
        "SELECT start_ts, is_short, stage, seconds FROM sleep_stages WHERE user_id = %s "
        "ORDER BY start_ts, is_short, stage",
    )
    _compare(db, 1, 2, "SELECT day, resting_bpm FROM heart_rate_daily WHERE user_id = %s ORDER BY day")
    _compare(db, 1, 2, "SELECT day, steps FROM daily_activity WHERE user_id = %s ORDER BY day")
    _compare(db, 1, 2, "SELECT day, daily_rmssd, deep_rmssd FROM hrv_daily WHERE user_id = %s ORDER BY day")
    # The device's offsets agreed with the participant's zone: nothing to keep.
    assert db.execute("SELECT count(*) FROM device_utc_offsets").fetchone()[0] == 0
    # What the synthetic source quarantines (wearipedia's odd sleep segments) arrives and is set aside
    # alike; wall times in the spring-forward gap, which wearipedia makes and a device never
    # measures at, are not served by the API at all.
    _compare_quarantine = (
        "SELECT metric, reason, count(*) FROM quarantine WHERE user_id = %s "
        "AND reason NOT LIKE 'local time does not exist%%' GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert db.execute(_compare_quarantine, (1,)).fetchall() == db.execute(_compare_quarantine, (2,)).fetchall()
    assert_no_secrets(health, *outputs, database_text(db))
    # Every page (several of heart rate a day) went over the binary wire.
    assert set(health.api.served) == {"proto"} and health.api.served["proto"] > 2 * 9


def test_the_proto_wire_loads_what_the_json_wire_loads(health, database_url, db, monkeypatch):
    """fitpipe asks for `$alt=proto`; FITPIPE_HEALTH_API_WIRE=json asks for the JSON the generated
    client reads. Same account data, same tables; an error described in protobuf (google.rpc.Status)
    is retried like one described in JSON."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    _two_participants(health, database_url)
    health.api.inject("faulty", {"status": 503})
    health.api.inject("clean", {"status": 503})
    fitpipe(database_url, "backfill", "--start", "2024-03-08", "--end", "2024-03-08", "--user", "1")
    assert dict(health.api.served) == {"proto": 9}
    monkeypatch.setenv("FITPIPE_HEALTH_API_WIRE", "json")
    fitpipe(database_url, "backfill", "--start", "2024-03-08", "--end", "2024-03-08", "--user", "2")
    assert dict(health.api.served) == {"proto": 9, "json": 9}
    assert [s for _, _, _, s in health.api.requests].count(503) == 2
    assert ledger(db, 1)["2024-03-08"][0] == ledger(db, 2)["2024-03-08"][0] == "provisional"
    assert tables_of(db, 1) == tables_of(db, 2) and tables_of(db, 1)["heart_rate"]
    monkeypatch.setenv("FITPIPE_HEALTH_API_WIRE", "xml")
    assert (
        "FITPIPE_HEALTH_API_WIRE"
        in fitpipe(database_url, "backfill", "--start", "2024-03-07", "--end", "2024-03-07", ok=False).output
    )


# --- faults ------------------------------------------------------------------------------------------------


def _two_participants(health, url, *, faulty: dict | None = None, clean: dict | None = None) -> None:
    """Participants 1 (account "faulty") and 2 ("clean"): same seed and data, one heart-rate point a minute."""
    health.api.add_account("faulty", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60, **(faulty or {}))
    health.api.add_account("clean", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60, **(clean or {}))
    add_google_participant(url, health, 1, "faulty")
    add_google_participant(url, health, 2, "clean")


def test_429_503_504_and_a_slow_response_are_retried_and_the_day_loads_unchanged(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    monkeypatch.setenv("FITPIPE_HEALTH_TIMEOUT", "10")  # the injected 11 s delay must time out
    _two_participants(health, database_url)
    health.api.inject(
        "faulty", {"status": 429, "retry_after": 1}, {"status": 429}, {"status": 503}, {"status": 504}, {"delay": 11}
    )
    result = fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "2")
    faulty, clean = ledger(db, 1)["2024-03-05"], ledger(db, 2)["2024-03-05"]
    assert faulty[0] == clean[0] == "complete"
    assert tables_of(db, 1) == tables_of(db, 2), "the retried day must hold exactly the rows of the clean one"
    statuses = [s for account, _, _, s in health.api.requests if account == "faulty"]
    assert statuses.count(429) == 2 and statuses.count(503) == 1 and statuses.count(504) == 1
    assert_no_secrets(health, result.output, database_text(db))


def test_rate_limit_past_the_cap_defers_the_day_and_the_others_load(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_ATTEMPTS", "2")
    _two_participants(health, database_url)
    # Two 429s without Retry-After use up the 2 attempts: the runner waits the back-off out and
    # tries the day again in the same run, which then meets a Retry-After of an hour: deferred.
    health.api.inject("faulty", {"status": 429}, {"status": 429}, {"status": 429, "retry_after": 3600})
    result = fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-06")
    assert [s for a, _, _, s in health.api.requests if a == "faulty"].count(429) == 3
    days = ledger(db, 1)
    assert days["2024-03-05"][0] == "deferred" and "HTTP 429" in days["2024-03-05"][2]
    assert days["2024-03-06"][0] == "complete"
    assert [state for state, _, _ in ledger(db, 2).values()] == ["complete", "complete"]
    user = status_of(database_url, 1)
    assert user["states"]["deferred"] == 1
    assert_no_secrets(health, result.output)


def test_expired_access_token_is_refreshed_by_google_auth(health, database_url, db):
    from fitpipe.participants import list_users
    from fitpipe.sources.contract import BudgetLedger, Fetch, RequestBudget
    from fitpipe.sources.google_health.source import GoogleHealthSource

    health.api.add_account("alice", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60)
    add_google_participant(database_url, health, 1, "alice")
    grant = consent_as(health, "alice")
    (user,) = list_users(db, [1])
    source = GoogleHealthSource()
    fetch = Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(RequestBudget(300, 60)), secret=lambda: grant)
    first = source.fetch_day(user, dt.date(2024, 3, 5), fetch)
    refreshes = [g for g, _ in health.api.token_requests].count("refresh_token")
    health.api.expire_access_tokens("alice")
    second = source.fetch_day(user, dt.date(2024, 3, 5), fetch)
    assert [s for _, _, _, s in health.api.requests].count(401) == 1
    assert [g for g, _ in health.api.token_requests].count("refresh_token") == refreshes + 1
    assert (
        sum(len(p.data_points) for p in second["heart-rate"])
        == sum(len(p.data_points) for p in first["heart-rate"])
        > 0
    )


def test_revoked_consent_defers_marks_reconsent_and_the_run_goes_on(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    _two_participants(health, database_url)
    health.api.revoke("faulty")
    result = fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-06", "--workers", "2")
    assert result.exit_code == 0
    days = ledger(db, 1)
    assert [state for state, _, _ in days.values()] == ["deferred", "deferred"]
    assert all("invalid_grant" in note and "7 days" in note for _, _, note in days.values())
    assert [state for state, _, _ in ledger(db, 2).values()] == ["complete", "complete"]
    user = status_of(database_url, 1)
    assert user["credentials"] == "needs_reconsent" and "invalid_grant" in user["credential_note"]
    assert "user 1 credentials needs_reconsent" in fitpipe(database_url, "status").output
    flags = json.loads(fitpipe(database_url, "adherence", "--as-of", "2024-03-06", "--json").stdout)
    flagged = next(r for r in (flags if isinstance(flags, list) else flags["participants"]) if r["user_id"] == 1)
    assert flagged["flag_no_credentials"] is True
    assert_no_secrets(health, result.output, database_text(db))

    # The participant consents again: credentials ok, and the deferred days load at the next ingest.
    enrolled = run_enroll(database_url, health, "--user", "1", account="faulty")
    assert enrolled.returncode == 0, enrolled.stderr
    assert status_of(database_url, 1)["credentials"] == "ok"
    fitpipe(database_url, "ingest", "--days", "1", "--user", "1")
    assert [state for state, _, _ in ledger(db, 1).values()][:2] == ["complete", "complete"]
    assert_no_secrets(health, enrolled.stdout, enrolled.stderr, database_text(db))


def test_budget_holds_across_two_workers(health, database_url, db, monkeypatch):
    """Each participant's days run on either worker; the budget travels with them. Counted at
    the server, as Google counts: requests per participant in any window."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    monkeypatch.setenv("FITPIPE_HEALTH_REQUEST_BUDGET", "6/3")
    _two_participants(health, database_url)
    fitpipe(database_url, "backfill", "--start", "2024-03-04", "--end", "2024-03-06", "--workers", "2")
    for account in ("faulty", "clean"):
        arrivals = sorted(t for a, t, _, _ in health.api.requests if a == account)
        assert len(arrivals) == 3 * 9, "one page per data type and day"
        assert health.api.requests_per_window(account, 3.0) <= 6
        # The budget was binding: 27 requests at 6 per 3 s take at least (27 - 6) / 6 * 3 s.
        assert arrivals[-1] - arrivals[0] >= 10.5
    assert [s for _, _, _, s in health.api.requests if s == 429] == []
    assert [state for state, _, _ in ledger(db, 1).values()] == ["complete"] * 3


def test_requests_in_flight_are_capped_across_workers(health, database_url, db, monkeypatch):
    """FITPIPE_HEALTH_MAX_IN_FLIGHT is shared by the run's worker processes: counted at the server."""
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    monkeypatch.setattr(health.api, "latency", 0.05)  # long enough for two workers' requests to overlap
    _two_participants(health, database_url)
    fitpipe(database_url, "backfill", "--start", "2024-03-04", "--end", "2024-03-05", "--workers", "2")
    assert health.api.peak_in_flight == 2, "two workers without a cap should overlap"
    health.api.peak_in_flight = 0
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_IN_FLIGHT", "1")
    fitpipe(database_url, "backfill", "--start", "2024-03-04", "--end", "2024-03-05", "--workers", "2", "--force")
    assert health.api.peak_in_flight == 1
    assert [state for state, _, _ in ledger(db, 1).values()][:2] == ["complete", "complete"]
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_IN_FLIGHT", "none")
    bad = run_fitpipe(database_url, "backfill", "--start", "2024-03-04", "--end", "2024-03-04", "--force")
    assert bad.returncode != 0 and "FITPIPE_HEALTH_MAX_IN_FLIGHT must be a whole number" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_late_data_replaces_the_provisional_day_until_it_settles(health, database_url, db, monkeypatch):
    from zoneinfo import ZoneInfo

    _two_participants(health, database_url, faulty={"synced_until": dt.datetime(2024, 3, 5, 15, tzinfo=ZoneInfo(ZONE))})
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-06")
    fitpipe(database_url, "ingest", "--days", "10")
    early = ledger(db, 1)["2024-03-05"]
    assert early[0] == "provisional"
    partial = db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1").fetchone()[0]
    # The phone syncs the rest; later runs fetch the day again until it settles (3 days).
    health.api.update_account("faulty", synced_until=None)
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-07")
    fitpipe(database_url, "ingest", "--days", "10")
    grown = ledger(db, 1)["2024-03-05"]
    assert grown[0] == "provisional" and grown[1] != early[1]
    assert (
        db.execute("SELECT count(*) FROM heart_rate WHERE user_id = 1 AND ts < '2024-03-06 05:00+00'").fetchone()[0]
        > partial
    )
    written = db.execute("SELECT ingested_at FROM ingested_days WHERE user_id = 1 AND day = '2024-03-05'").fetchone()[0]
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-09")
    fitpipe(database_url, "ingest", "--days", "10")
    settled = ledger(db, 1)["2024-03-05"]
    assert settled[0] == "complete"
    # Unchanged content: the rows were not rewritten.
    assert (
        db.execute("SELECT ingested_at FROM ingested_days WHERE user_id = 1 AND day = '2024-03-05'").fetchone()[0]
        == written
    )
    # The final tables equal a participant fetched once after everything synced.
    assert tables_of(db, 1) == tables_of(db, 2)


def test_pages_out_of_order_and_a_phone_as_second_source_change_nothing(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account(
        "faulty", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=5, shuffle_pages=True, phone_duplicates=True
    )
    health.api.add_account("clean", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=5)
    add_google_participant(database_url, health, 1, "faulty")
    add_google_participant(database_url, health, 2, "clean")
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05")
    assert tables_of(db, 1) == tables_of(db, 2)
    steps = db.execute("SELECT user_id, steps FROM daily_activity ORDER BY user_id").fetchall()
    assert steps[0][1] == steps[1][1] > 0
    # The phone's copies are really there: the list endpoint (no reconcile) returns both sources.
    token = health.api._access_token("faulty", "")["access_token"]
    listed = requests.get(
        f"{health.url}/v4/users/me/dataTypes/steps/dataPoints",
        headers={"Authorization": f"Bearer {token}"},
        params={
            "filter": 'steps.interval.start_time >= "2024-03-05T05:00:00Z" '
            'AND steps.interval.start_time < "2024-03-06T05:00:00Z"',
            "pageSize": "1000",
        },
        timeout=30,
    ).json()
    assert sum(int(p["steps"]["count"]) for p in listed["dataPoints"]) == 2 * steps[0][1]
    assert {p["dataSource"]["device"]["formFactor"] for p in listed["dataPoints"]} == {"WATCH", "PHONE"}


def test_a_participant_without_data_gets_empty_days(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account("nobody", timezone=ZONE, seed=1, no_data=True)
    add_google_participant(database_url, health, 1, "nobody")
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05")
    assert ledger(db, 1)["2024-03-05"][0] == "empty"


def test_a_device_on_another_clock_is_recorded_in_device_utc_offsets(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account(
        "traveller", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60, device_offset_s=9 * 3600
    )
    add_google_participant(database_url, health, 1, "traveller")
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05")
    rows = db.execute("SELECT day, utc_offset_s, points FROM device_utc_offsets WHERE user_id = 1").fetchall()
    assert [(str(d), o) for d, o, _ in rows] == [("2024-03-05", 32400)] and rows[0][2] > 1000


def test_back_off_grows_with_jitter_honours_retry_after_and_stops_at_the_cap():
    from google.api_core import exceptions

    from fitpipe.sources.contract import BudgetLedger, RequestBudget, RetryLater
    from fitpipe.sources.google_health.calls import CallPolicy, StudyRetry, retry_after_seconds

    class Answer:
        def __init__(self, headers):
            self.headers = headers

    def throttled(retry_after=None):
        return exceptions.TooManyRequests("quota", response=Answer({"Retry-After": retry_after} if retry_after else {}))

    assert retry_after_seconds(throttled("7")) == 7
    assert retry_after_seconds(throttled("Wed, 21 Oct 2026 07:28:10 GMT"), now=lambda: 1792567690.0 - 5) == 5
    assert retry_after_seconds(throttled()) is None

    pauses = []
    retry = StudyRetry(
        CallPolicy(max_attempts=4), BudgetLedger(RequestBudget(300, 60)), sleep=pauses.append, jitter=lambda: 1.0
    )
    calls = []

    def always_throttled():
        calls.append(1)
        raise throttled()

    with pytest.raises(RetryLater) as deferred:
        retry(always_throttled)()
    assert len(calls) == 4 and pauses == [1.0, 2.0, 4.0]  # exponential; jitter at its top
    assert "HTTP 429" in deferred.value.reason and deferred.value.after >= 8
    assert StudyRetry(CallPolicy(), BudgetLedger(None), jitter=lambda: 0.0).backoff(3) == 2.0  # half at the bottom

    asked = []
    answers = iter([throttled("3"), "page"])

    def then_answers():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert StudyRetry(CallPolicy(), BudgetLedger(None), sleep=asked.append)(then_answers)() == "page"
    assert asked == [3.0]
    # A Retry-After beyond what a fetch may wait defers the day at once, with that wait.
    with pytest.raises(RetryLater) as later:
        StudyRetry(CallPolicy(), BudgetLedger(None), sleep=asked.append)(
            lambda: (_ for _ in ()).throw(throttled("3600"))
        )()
    assert later.value.after == 3600 and asked == [3.0]


# --- issue 21: bounded fetches, https only --------------------------------------------------------------


def _endless(health, url, monkeypatch) -> None:
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account("paging", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60)
    add_google_participant(url, health, 1, "paging")
    monkeypatch.setattr(health.api, "endless_pages", {"paging"})  # cleared after the test


def test_a_server_that_never_stops_paging_fails_the_day_at_the_page_bound(health, database_url, db, monkeypatch):
    _endless(health, database_url, monkeypatch)
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_PAGES", "7")
    result = run_fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    assert result.returncode == 5, result.stderr
    assert len([r for r in health.api.requests if r[0] == "paging"]) == 7
    state, _, _ = ledger(db, 1).get("2024-03-05", (None, None, None))
    assert state is None  # failed: left as it was (never loaded)
    error = db.execute("SELECT error FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
    assert "kept sending page tokens for heart-rate: over 7 pages for one day" in error


def test_a_days_fetch_past_its_wall_time_is_deferred(health, database_url, db, monkeypatch):
    _endless(health, database_url, monkeypatch)
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_PAGES", "1000000")
    monkeypatch.setenv("FITPIPE_HEALTH_DAY_SECONDS", "2")
    result = run_fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    assert result.returncode == 0, result.stderr
    state, _, note = ledger(db, 1)["2024-03-05"]
    assert state == "deferred" and "took longer than 2 s (FITPIPE_HEALTH_DAY_SECONDS)" in note


@pytest.mark.slow
def test_sigterm_stops_a_day_that_is_paging_at_its_next_request(health, database_url, db, monkeypatch):
    import signal
    import time

    _endless(health, database_url, monkeypatch)
    monkeypatch.setenv("FITPIPE_HEALTH_MAX_PAGES", "1000000")
    process = popen(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")

    def paging() -> int:
        return sum(1 for request in health.api.requests if request[0] == "paging")

    try:
        for _ in range(2400):  # until the day has sent 20 requests (2 minutes at most)
            if paging() >= 20 or process.poll() is not None:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    finally:
        process.kill()  # nothing to do once it has ended
    assert process.returncode == 130, "a stopped run exits 130 (interrupted)"
    assert db.execute("SELECT status FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone() == ("interrupted",)
    sent = paging()
    time.sleep(1)
    assert paging() == sent >= 20, "a worker kept paging"


@pytest.mark.parametrize(
    "where,url",
    [("env", "http://health.example.org/"), ("setting", "http://10.0.0.7:8080"), ("env", "ftp://127.0.0.1/")],
)
def test_the_bearer_token_goes_only_over_https_or_to_loopback(health, database_url, db, monkeypatch, where, url):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    health.api.add_account("plain", timezone=ZONE, seed=synthetic_seed(1), heart_rate_every=60)
    add_google_participant(database_url, health, 1, "plain")
    if where == "env":
        monkeypatch.setenv("FITPIPE_HEALTH_API_URL", url)
    else:
        db.execute(
            "UPDATE participant_sources SET settings = settings || jsonb_build_object('api_url', %s::text) "
            "WHERE user_id = 1",
            (url,),
        )
    result = run_fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    assert result.returncode == 5, result.stderr
    error = db.execute("SELECT error FROM ingest_runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
    assert "refusing to send the participant's access token to" in error and "must be https" in error
    assert health.api.requests == []  # nothing reached even the stand-in


def test_a_retry_after_of_nan_or_inf_is_no_answer_and_the_day_loads(health, database_url, db, monkeypatch):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    _two_participants(health, database_url)
    health.api.inject("faulty", {"status": 429, "retry_after": "NaN"}, {"status": 429, "retry_after": "inf"})
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "2")
    assert ledger(db, 1)["2024-03-05"][0] == ledger(db, 2)["2024-03-05"][0] == "complete"
    assert tables_of(db, 1) == tables_of(db, 2)


@pytest.mark.parametrize("retry_after", ["1e308", "Thu, 01 Jan 2099 00:00:00 GMT"])
def test_a_far_retry_after_defers_the_day_for_six_hours_at_most(health, database_url, db, monkeypatch, retry_after):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    _two_participants(health, database_url)
    health.api.inject("faulty", {"status": 429, "retry_after": retry_after})
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "2")
    state, wait = db.execute(
        "SELECT state, extract(epoch FROM retry_after - now()) FROM ingested_days WHERE user_id = 1"
    ).fetchone()
    assert state == "deferred" and 5 * 3600 < wait <= 6 * 3600
    assert ledger(db, 2)["2024-03-05"][0] == "complete"


@pytest.mark.parametrize("status", [401, 403])
def test_a_data_api_refusal_marks_the_participant_for_reconsent(health, database_url, db, monkeypatch, status):
    monkeypatch.setenv("FITPIPE_TODAY", "2024-03-10")
    _two_participants(health, database_url)
    # google-auth refreshes the token and repeats a request answered 401, twice at most: refuse all.
    health.api.inject("faulty", *[{"status": status}] * 3)
    fitpipe(database_url, "backfill", "--start", "2024-03-05", "--end", "2024-03-05", "--workers", "1")
    state, note = db.execute(
        "SELECT credential_state, credential_note FROM participant_sources WHERE user_id = 1"
    ).fetchone()
    assert state == "needs_reconsent" and f"HTTP {status}" in note
    assert ledger(db, 1)["2024-03-05"][0] == "deferred"
    assert ledger(db, 2)["2024-03-05"][0] == "complete"
