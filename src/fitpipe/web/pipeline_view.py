"""The data manager's view of the pipeline: recent runs, deferred and failed days with their
reasons, quarantine by reason, imports on record, storage per table. Imports and storage come
from the calls `fitpipe status` makes; the run log and quarantine are read here, read-only."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from fitpipe.derive.maintain import storage_report
from fitpipe.sources import registered_classes

RECENT_RUNS = 50
MAX_LISTED = 500


def pipeline(conn: psycopg.Connection) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT run_id, command, status, started_at, finished_at,
                   extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS seconds,
                   user_days, rows_loaded, quarantined, skipped, failed, deferred, unchanged, error
            FROM ingest_runs ORDER BY run_id DESC LIMIT %s
            """,
            (RECENT_RUNS,),
        )
        runs = cur.fetchall()
        cur.execute(
            """
            SELECT d.user_id, u.display_name, d.day, d.state, d.attempts, d.retry_after, d.note, d.run_id
            FROM ingested_days d JOIN users u USING (user_id)
            WHERE d.state = 'deferred' ORDER BY d.day DESC, d.user_id LIMIT %s
            """,
            (MAX_LISTED,),
        )
        deferred = cur.fetchall()
        cur.execute(
            """
            SELECT metric, reason, count(*) AS records, count(DISTINCT user_id) AS participants,
                   min(day) AS first_day, max(day) AS last_day
            FROM quarantine GROUP BY metric, reason ORDER BY records DESC LIMIT %s
            """,
            (MAX_LISTED,),
        )
        quarantine = cur.fetchall()
        ids = [row[0] for row in conn.execute("SELECT user_id FROM users ORDER BY user_id").fetchall()]
    sections: dict[str, list] = {}
    for source in registered_classes():
        sections.update(source.status_sections(conn, ids))
    return {
        "runs": runs,
        "failed_runs": [run for run in runs if run["status"] in ("failed", "interrupted") or run["error"]],
        "deferred": deferred,
        "quarantine": quarantine,
        "imports": sections.get("imports", []),
        "sections": sections,
        "storage": storage_report(conn),
    }
