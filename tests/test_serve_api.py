"""`fitpipe serve`'s app through Starlette's TestClient, on a real TimescaleDB loaded by the real
CLI: the cohort's numbers are adherence's and status's, a data request returns exactly the
export's rows for the same range and budget (a DST day included), errors are clear, and a secret
is demanded when configured."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import threading
import time

import psycopg
import pytest

from support.serve import (
    DST_DAY,
    FIRST_DAY,
    HOSTILE_NAME,
    LAST_DAY,
    OUTAGE,
    build_store,
    export_csv,
    fitpipe,
    free_port,
    parse_export,
    start_server,
    stop_server,
)

pytest.importorskip("starlette", reason="the web extra is not installed")
from starlette.testclient import TestClient

from fitpipe.derive.adherence import FLAGS
from fitpipe.web.app import create_app
from fitpipe.web.auth import Auth
from fitpipe.web.database import PoolSettings

pytestmark = pytest.mark.slow
SECRET = "a-long-enough-secret-for-tests"


@pytest.fixture(scope="module")
def store(database_url):
    return build_store(database_url)


@pytest.fixture(scope="module")
def client(store):
    with TestClient(create_app(store), raise_server_exceptions=False) as test_client:
        yield test_client


def instant(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def as_text(value) -> str:
    """A JSON value as COPY's CSV writes it."""
    if value is None:
        return ""
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, float) and value.is_integer():
        return repr(value)[:-2] if repr(value).endswith(".0") else repr(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# the cohort: the same numbers as the CLI


def test_cohort_numbers_are_adherence_and_status(store, client):
    adherence = json.loads(fitpipe(store, "adherence", "--json").stdout)
    status = json.loads(fitpipe(store, "status", "--json").stdout)
    response = client.get("/api/v1/participants")
    assert response.status_code == 200
    cohort = response.json()
    assert cohort["as_of"] == adherence["as_of"]
    judged = {row["user_id"]: row for row in adherence["participants"]}
    by_status = {row["user_id"]: row for row in status["users"]}
    assert [row["user_id"] for row in cohort["participants"]][: len(judged)] == [
        row["user_id"] for row in adherence["participants"]
    ], "worst first, in adherence's order"
    assert {row["user_id"] for row in cohort["participants"]} == {1, 2, 3}
    for row in cohort["participants"]:
        mine, theirs, state = row, judged[row["user_id"]], by_status[row["user_id"]]
        assert mine["wear_share"] == pytest.approx(theirs["wear_share"], rel=1e-6)
        assert mine["nights_captured"] == theirs["nights_captured"]
        assert mine["worn_minutes"] == theirs["worn_minutes"]
        assert instant(mine["last_data"]) == instant(theirs["last_data"])
        assert mine["flags"] == [f.removeprefix("flag_") for f in FLAGS if theirs[f]]
        assert mine["deferred_days"] == state["states"]["deferred"]
        assert mine["missing_days"] == len(state["missing_days"])
        assert mine["last_ingested"] == state["last_ingested"]
        assert mine["credentials"] == state["credentials"]
    # Participant 3 has no data: adherence flags it as silent.
    three = next(r for r in cohort["participants"] if r["user_id"] == 3)
    assert "no_recent_data" in three["flags"]


def test_cohort_page_escapes_names_and_sends_a_strict_policy(store, client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.text
    assert HOSTILE_NAME not in body and "<script>alert" not in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in body
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # Every participant is a row linking to its page, worst first by default.
    for user_id in (1, 2, 3):
        assert f'href="/participants/{user_id}"' in body
    by_wear = client.get("/?sort=wear_share")
    assert by_wear.status_code == 200


def test_participant_page_carries_its_config_as_escaped_data(store, client):
    response = client.get(f"/participants/1?start={DST_DAY}&end={DST_DAY}")
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert 'src="/static/vendor/uPlot.iife.min.js"' in response.text
    vendor = client.get("/static/vendor/uPlot.iife.min.js")
    assert vendor.status_code == 200 and len(vendor.content) > 40_000


# ---------------------------------------------------------------------------------------------
# the data API: exactly the export's rows


@pytest.mark.parametrize(
    ("metric", "start", "end", "points"),
    [
        ("heart_rate", DST_DAY, DST_DAY, 3000),  # one (23-hour) day: 1-minute rows
        ("heart_rate", FIRST_DAY, LAST_DAY, 200),  # four days on a small budget: hourly rows
        ("heart_rate", FIRST_DAY, LAST_DAY, 10),  # daily rows
        ("spo2", FIRST_DAY, LAST_DAY, 20000),
        ("hrv_intraday", FIRST_DAY, LAST_DAY, 2000),
        ("sleep_stages", FIRST_DAY, LAST_DAY, 2000),
        ("daily_activity", FIRST_DAY, LAST_DAY, 2000),
        ("breathing_rate", FIRST_DAY, LAST_DAY, 2000),
        ("active_zone_minutes", DST_DAY, DST_DAY, 2000),
    ],
)
def test_series_equals_the_export_for_the_same_range_and_budget(store, client, metric, start, end, points):
    response = client.get(f"/api/v1/participants/1/series/{metric}?start={start}&end={end}&points={points}")
    assert response.status_code == 200, response.text
    series = response.json()
    text, note = export_csv(store, metric, 1, start, end, "--max-rows", str(points))
    exported = parse_export(text)
    assert series["columns"] == list(exported)
    assert series["rows"] == len(next(iter(exported.values()))) > 0
    if series["resolution"] != "raw" or metric in ("heart_rate", "spo2"):
        assert f"auto resolution: {series['resolution']}" in note
    for name, values in exported.items():
        mine = [as_text(v) for v in series["data"][name]]
        if name in series["columns"] and all(_is_number(v) for v in values if v):
            assert [float(v) if v else None for v in values] == [float(v) if v else None for v in mine], name
        else:
            assert values == mine, name
    assert series["t"] == sorted(series["t"])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_resolution_follows_the_range(store, client):
    def resolution(start, end, points):
        url = f"/api/v1/participants/1/series/heart_rate?start={start}&end={end}&points={points}"
        return client.get(url).json()["resolution"]

    assert resolution(DST_DAY, DST_DAY, 2000) == "1min"
    assert resolution(FIRST_DAY, LAST_DAY, 200) == "1h"
    assert resolution(FIRST_DAY, LAST_DAY, 10) == "1d"
    assert resolution(DST_DAY, DST_DAY, 20000) == "1min"  # a 1 Hz day is ~80k rows: raw only on request
    raw = client.get(f"/api/v1/participants/1/series/heart_rate?start={DST_DAY}&end={DST_DAY}&resolution=raw").json()
    assert raw["resolution"] == "raw" and raw["rows"] > 10_000


def test_a_spring_forward_day_is_23_hours_in_local_time(store, client):
    hourly = client.get(f"/api/v1/participants/1/series/heart_rate?start={DST_DAY}&end={DST_DAY}&resolution=1h").json()
    lo, hi = hourly["window"]
    assert hi - lo == 23 * 3600
    times = hourly["data"]["bucket"]
    assert len(times) <= 23
    assert any(t.endswith("-05:00") for t in times) and any(t.endswith("-04:00") for t in times)
    assert not any(t.startswith(f"{DST_DAY}T02:") for t in times), "02:00 does not exist that night"
    assert all(lo <= t < hi for t in hourly["t"])


def test_download_is_byte_for_byte_the_export(store, client, tmp_path):
    query = f"start={DST_DAY}&end={DST_DAY}&resolution=1min"
    response = client.get(f"/api/v1/participants/1/export/heart_rate.csv?{query}")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    text, _ = export_csv(store, "heart_rate", 1, DST_DAY, DST_DAY, "--resolution", "1min")
    assert response.content.decode() == text
    pyarrow = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "hr.parquet"
    fitpipe(store, "export", "--metric", "heart_rate", "--user", "1", "--start", str(DST_DAY), "--end", str(DST_DAY),
            "--resolution", "1min", "--tz", "local", "--format", "parquet", "--output", str(target))  # fmt: skip
    parquet = client.get(f"/api/v1/participants/1/export/heart_rate.parquet?{query}")
    assert parquet.status_code == 200
    assert pyarrow.read_table(io.BytesIO(parquet.content)).equals(pyarrow.read_table(target))


# ---------------------------------------------------------------------------------------------
# bad input: the right status and one clear line, never a traceback


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/v1/participants/99", 404, "no participant 99"),
        (f"/api/v1/participants/99/series/heart_rate?start={DST_DAY}&end={DST_DAY}", 404, "no participant 99"),
        (f"/api/v1/participants/1/series/heart_rate?start={LAST_DAY}&end={FIRST_DAY}", 400, "before"),
        ("/api/v1/participants/1/series/heart_rate?start=2024-13-01&end=2024-03-10", 400, "start must be a date"),
        ("/api/v1/participants/1/series/heart_rate?start=2030-01-01&end=2030-01-02", 404, "no heart_rate data"),
        (f"/api/v1/participants/3/series/spo2?start={FIRST_DAY}&end={LAST_DAY}", 404, "no spo2 data"),
        (f"/api/v1/participants/1/series/pulse?start={DST_DAY}&end={DST_DAY}", 400, "unknown metric"),
        (f"/api/v1/participants/1/series/heart_rate?start={DST_DAY}&end={DST_DAY}&points=999999", 400, "points"),
        (f"/api/v1/participants/1/series/heart_rate?start={DST_DAY}&end={DST_DAY}&resolution=5s", 400, "resolution"),
        ("/api/v1/participants/1/series/heart_rate?end=2024-03-10", 400, "give start and end"),
        (f"/api/v1/participants/1/export/heart_rate.xlsx?start={DST_DAY}&end={DST_DAY}", 404, "no download format"),
        ("/api/v1/nothing-here", 404, "not found"),
    ],
)
def test_api_errors_are_json_with_the_right_status(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and words in body["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/participants/99", 404, "no participant 99"),
        ("/participants/1?start=2024-03-10&end=2024-03-01", 400, "before"),
        ("/participants/1?start=yesterday", 400, "start must be a date"),
        ("/?sort=%3Cscript%3E", 400, "sort must be one of"),
        ("/participants/abc", 404, "not found"),
    ],
)
def test_page_errors_are_pages_with_the_right_status(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text and "Traceback" not in response.text
    assert "<script>" not in response.text


def test_pipeline_shows_the_failed_run_and_its_reason(store, client):
    data = client.get("/api/v1/pipeline").json()
    failed = [run for run in data["failed_runs"] if run["status"] == "failed"]
    assert len(failed) == 1 and OUTAGE in failed[0]["error"] and str(LAST_DAY) in failed[0]["error"]
    assert [run["command"] for run in data["runs"]] == ["backfill"] * 3
    page = client.get("/pipeline")
    assert page.status_code == 200 and OUTAGE in page.text
    assert any(row["table"] == "heart_rate" for row in data["storage"])


# ---------------------------------------------------------------------------------------------
# safety: the secret, the statement timeout, the bind check


def test_with_a_secret_every_request_must_carry_it(store):
    with TestClient(create_app(store, auth=Auth(SECRET.encode()))) as locked:
        for path in ("/", "/pipeline", "/participants/1", "/api/v1/participants", "/static/app.css"):
            refused = locked.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic")
            assert "participant" not in refused.text.lower().replace("participants", "") or path.startswith("/api")
            assert locked.get(path, headers={"Authorization": "Bearer wrong-secret-of-some-length"}).status_code == 401
            assert locked.get(path, auth=("anyone", "wrong")).status_code == 401
        assert locked.get("/api/v1/participants", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
        assert locked.get("/", auth=("coordinator", SECRET)).status_code == 200
        assert locked.get("/static/app.css", auth=("coordinator", SECRET)).status_code == 200


@contextlib.contextmanager
def users_locked(store: str, settings: PoolSettings):
    """An app on `store`, and the session holding a lock on the users table (rollback() frees it)."""
    app = create_app(store, pool=settings)
    with TestClient(app, raise_server_exceptions=False) as app_client, psycopg.connect(store) as holder:
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        yield app_client, holder


def test_a_slow_query_is_cancelled_and_answered_503(store):
    """A lock held elsewhere stands in for a slow query: the app's statement timeout ends it."""
    with users_locked(store, PoolSettings(max_connections=2, statement_timeout_s=0.5, wait_s=2)) as (slow, holder):
        started = time.monotonic()
        response = slow.get("/api/v1/participants")
        elapsed = time.monotonic() - started
        holder.rollback()
        assert slow.get("/api/v1/participants").status_code == 200, "the pool recovered"
    assert response.status_code == 503 and "statement timeout" in response.json()["error"]
    assert elapsed < 5


def test_a_busy_pool_answers_503_instead_of_queueing_for_ever(store):
    with users_locked(store, PoolSettings(max_connections=1, statement_timeout_s=5, wait_s=0.3)) as (small, holder):
        first = threading.Thread(target=lambda: small.get("/api/v1/participants"))
        first.start()
        time.sleep(0.5)  # the one connection now waits on the lock
        second = small.get("/api/v1/pipeline")
        holder.rollback()
        first.join()
    assert second.status_code == 503 and "busy" in second.json()["error"]


def test_serve_refuses_to_listen_beyond_loopback_without_a_secret(store, monkeypatch):
    monkeypatch.delenv("FITPIPE_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("FITPIPE_SERVE_PASSWORD_FILE", raising=False)
    result = fitpipe(store, "serve", "--host", "0.0.0.0", "--port", str(free_port()), code=2)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: refusing to serve health data on 0.0.0.0 without authentication")
    monkeypatch.setenv("FITPIPE_SERVE_TOKEN", "short")
    result = fitpipe(store, "serve", "--host", "0.0.0.0", "--port", str(free_port()), code=2)
    assert "shorter than 16 characters" in result.stderr and "short" not in result.stderr.replace("shorter", "")


def test_serve_command_answers_on_loopback_and_with_a_secret_beyond_it(store, tmp_path):
    import httpx

    port = free_port()
    server = start_server(store, port)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "Cohort" in page.text
    finally:
        stderr = stop_server(server)
    assert f"http://127.0.0.1:{port}/" in stderr
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    port = free_port()
    server = start_server(store, port, "--host", "0.0.0.0", env={"FITPIPE_SERVE_PASSWORD_FILE": str(secret_file)})
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("x", SECRET), timeout=30).status_code == 200
    finally:
        stderr = stop_server(server)
    assert SECRET not in stderr
