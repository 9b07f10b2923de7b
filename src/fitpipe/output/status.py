"""What is in the database and what is missing, per participant. Read from the ledger's
per-participant summary (ledger_summary, kept by the ledger's triggers), so it stays fast however
many rows the metric tables hold and however many days the ledger has."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from fitpipe.catalogue import METRICS
from fitpipe.db import one_row
from fitpipe.ingest.device_sync import devices_by_user, missing_days
from fitpipe.participants import list_users


def collect_status(conn: psycopg.Connection, user_ids: Sequence[int], *, storage: bool = True) -> dict:
    """The report of `fitpipe status --json`. storage=False leaves out the bytes per table, the one
    part whose cost grows with the number of chunks (the web cohort page does not show it)."""
    users = list_users(conn, user_ids)
    ids = [u.user_id for u in users]
    with conn.cursor(row_factory=dict_row) as cur:
        # The ledger's figures per participant, kept by the ledger's triggers (migration 0090): one
        # row each, where computing them here took three passes over every ledger row.
        cur.execute("SELECT * FROM ledger_summary WHERE user_id = ANY(%s)", (ids,))
        per_user = {row["user_id"]: row for row in cur.fetchall()}
        cur.execute(
            """
            SELECT run_id, command, status, started_at, finished_at, user_days, rows_loaded, quarantined,
                   skipped, failed, deferred, unchanged, error
            FROM ingest_runs ORDER BY run_id DESC LIMIT 1
            """
        )
        last_run = cur.fetchone()
        cur.execute(
            "SELECT user_id, day, retry_after, attempts, note FROM ingested_days "
            "WHERE user_id = ANY(%s) AND state = 'deferred' ORDER BY user_id, day",
            (ids,),
        )
        deferred: dict[int, list] = {}
        for row in cur.fetchall():
            deferred.setdefault(row.pop("user_id"), []).append(row)
        # Token health: the credential state, why it last changed, and when the secret was stored.
        cur.execute(
            "SELECT s.user_id, s.credential_state, s.credential_note, c.updated_at AS secret_stored_at "
            "FROM participant_sources s JOIN users u ON u.user_id = s.user_id AND u.source = s.source "
            "LEFT JOIN source_credentials c ON c.user_id = s.user_id AND c.source = s.source "
            "WHERE s.user_id = ANY(%s)",
            (ids,),
        )
        credentials = {row["user_id"]: row for row in cur.fetchall()}
    devices, synced_missing = devices_by_user(conn, ids), missing_days(conn, ids)
    report_users = []
    for user in users:
        info = per_user.get(user.user_id, {})
        cursor = info.get("cursor_day")
        last = info.get("last_ingested")
        report_users.append(
            {
                "user_id": user.user_id,
                "display_name": user.display_name,
                "timezone": user.timezone,
                "study_start": user.study_start,
                "cursor": cursor,
                "last_ingested": last,
                "days_ingested": int(info.get("days_ingested") or 0),
                # Between the study start and the last ingested day; the cursor stops at the first of them.
                "missing_days": list(info.get("missing_days") or []),
                # Ingested days past the first missing one: they wait for the gap to be filled.
                "days_after_gap": int(info.get("days_ingested") or 0)
                - ((cursor - user.study_start).days + 1 if cursor else 0),
                "quarantined": int(info.get("quarantined") or 0),
                "source": user.source,
                "withdrawn": user.withdrawn_at is not None,
                "credentials": credentials.get(user.user_id, {}).get("credential_state"),
                "credential_note": credentials.get(user.user_id, {}).get("credential_note"),
                "secret_stored_at": credentials.get(user.user_id, {}).get("secret_stored_at"),
                "timezone_history": [{"from": start, "timezone": zone} for start, zone in user.zones],
                "states": {
                    "complete": int(info.get("complete") or 0),
                    "empty": int(info.get("empty") or 0),
                    "provisional": len(info.get("provisional_days") or []),
                    "deferred": len(info.get("deferred_days") or []),
                },
                "provisional_days": list(info.get("provisional_days") or []),
                "deferred": deferred.get(user.user_id, []),
                "rows": {m.name: int((info.get("rows_by_metric") or {}).get(m.name) or 0) for m in METRICS},
                # Paired devices with their last sync and battery (sources that report them: google-health),
                # and the settled empty days a tracker has synced past: missing, not merely late.
                "devices": devices.get(user.user_id, []),
                "missing_after_sync": synced_missing.get(user.user_id, []),
                # Days whose raw 1 Hz rows raw retention dropped (fitpipe maintain --raw-retention-days).
                "rollup_only": {
                    "days": int(info.get("rollup_only") or 0),
                    "first": info.get("rollup_only_first"),
                    "last": info.get("rollup_only_last"),
                },
            }
        )
    from fitpipe.derive.maintain import storage_report
    from fitpipe.sources import registered_classes

    report = {
        "metrics": [m.name for m in METRICS],
        "users": report_users,
        "last_run": last_run,
        "storage": storage_report(conn) if storage else None,
    }
    for source in registered_classes():
        report.update(source.status_sections(conn, ids))
    return report


def participant_rows(conn: psycopg.Connection) -> list[dict]:
    """Every participant with source, zone history, credential state and withdrawal (no secrets)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT u.user_id, u.display_name, u.source, u.timezone, u.study_start, u.withdrawn_at,
                   s.credential_state, s.credential_note,
                   (SELECT json_agg(json_build_object('from', h.effective_from, 'timezone', h.timezone)
                                    ORDER BY h.effective_from)
                      FROM timezone_history h WHERE h.user_id = u.user_id) AS timezone_history
            FROM users u LEFT JOIN participant_sources s ON s.user_id = u.user_id AND s.source = u.source
            ORDER BY u.user_id
            """
        )
        return cur.fetchall()


def attention_counts(conn: psycopg.Connection) -> tuple[int, int]:
    """(days deferred now, enrolled participants needing re-consent), for the metrics file's alerts."""
    return one_row(
        conn.execute(
            """
        SELECT (SELECT count(*) FROM ingested_days d JOIN users u USING (user_id)
                 WHERE d.state = 'deferred' AND u.withdrawn_at IS NULL),
               (SELECT count(*) FROM participant_sources s JOIN users u ON u.user_id = s.user_id AND u.source = s.source
                 WHERE s.credential_state = 'needs_reconsent' AND u.withdrawn_at IS NULL)
        """
        )
    )
