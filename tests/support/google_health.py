"""The local Google Health API (fitpipe.sources.google_health.standin) as the tests use it: consent
without a browser, enrolling a participant through the real CLI, and what to compare afterwards.
The `server` and `health` fixtures are in conftest.py."""

from __future__ import annotations

import json
import os

import psycopg
import requests

from support.cli import fitpipe

ZONE = "America/New_York"


def consent_as(server, account: str) -> str:
    """What `fitpipe enroll` stores, obtained through the server's OAuth endpoints (PKCE and all)
    without a browser: for tests about ingest rather than enrolment."""
    from google_auth_oauthlib.flow import Flow

    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    from fitpipe.sources.google_health.consent import SCOPES

    flow = Flow.from_client_config(server.api.client_secrets(), scopes=list(SCOPES), redirect_uri="http://127.0.0.1:9/")
    url, _ = flow.authorization_url(access_type="offline", login_hint=account)
    redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    flow.fetch_token(authorization_response=redirect.replace("http", "https", 1))
    return flow.credentials.to_json(strip=["token", "expiry"])


def add_google_participant(url, server, user_id: int, account: str, study_start: str = "2024-03-01") -> None:
    fitpipe(
        url,
        "participants",
        "add",
        str(user_id),
        "--source",
        "google-health",
        "--timezone",
        ZONE,
        "--study-start",
        study_start,
    )
    from typer.testing import CliRunner

    from fitpipe.cli import app

    result = CliRunner().invoke(
        app, ["--database-url", url, "secrets", "set", "--user", str(user_id)], input=consent_as(server, account)
    )
    assert result.exit_code == 0, result.output


def assert_no_secrets(server, *texts: str) -> None:
    issued = server.api.issued_secrets()
    for text in texts:
        for secret in issued:
            assert secret not in (text or ""), "a token or client secret leaked"


def database_text(conn: psycopg.Connection) -> str:
    """Everything fitpipe wrote as text where a secret could end up."""
    rows = conn.execute(
        "SELECT concat_ws(' ', (SELECT string_agg(coalesce(error, ''), ' ') FROM ingest_runs),"
        " (SELECT string_agg(coalesce(note, ''), ' ') FROM ingested_days),"
        " (SELECT string_agg(coalesce(credential_note, '') || settings::text, ' ') FROM participant_sources),"
        " (SELECT string_agg(raw_value || reason, ' ') FROM quarantine),"
        " (SELECT string_agg(encode(ciphertext, 'escape'), ' ') FROM source_credentials))"
    ).fetchone()
    return rows[0] or ""


def status_of(url: str, user_id: int) -> dict:
    report = json.loads(fitpipe(url, "status", "--json").stdout)
    return next(u for u in report["users"] if u["user_id"] == user_id)


def tables_of(conn, user_id: int) -> dict:
    """Every metric row of a participant, without the user id: to compare two participants."""
    from fitpipe.catalogue import METRICS

    snapshot = {}
    for metric in METRICS:
        columns = ", ".join(metric.column_names[1:])
        snapshot[metric.table] = conn.execute(
            f"SELECT {columns} FROM {metric.table} WHERE user_id = %s ORDER BY {columns}", (user_id,)
        ).fetchall()
    return snapshot


def ledger(conn, user_id: int) -> dict:
    return {
        str(day): (state, digest, note)
        for day, state, digest, note in conn.execute(
            "SELECT day, state, content_hash, note FROM ingested_days WHERE user_id = %s ORDER BY day", (user_id,)
        )
    }
