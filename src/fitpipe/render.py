"""Rich tables for the CLI. Kept apart so library modules never print."""

from __future__ import annotations

from typing import Iterable


def users_table(users: Iterable) -> "object":
    from rich.table import Table

    table = Table(title="participants")
    for column in ("id", "name", "timezone", "source", "seed", "wear gaps", "study start"):
        table.add_column(column)
    for u in users:
        table.add_row(str(u.user_id), u.display_name, u.timezone, u.source, str(u.synthetic_seed),
                      "yes" if u.wear_gaps else "no", u.study_start.isoformat())
    return table


def status_tables(report: dict) -> list:
    from rich.table import Table

    users = Table(title="ingestion status per participant")
    for column in ("id", "timezone", "study start", "cursor", "days ingested", "missing before cursor",
                   "days after a gap", "quarantined"):
        users.add_column(column)
    for u in report["users"]:
        users.add_row(
            str(u["user_id"]), u["timezone"], str(u["study_start"]), str(u["cursor"] or "-"),
            str(u["days_ingested"]), str(len(u["missing_days"])), str(u["days_after_gap"]), str(u["quarantined"]),
        )
    rows = Table(title="rows per metric")
    rows.add_column("user")
    metrics = list(report["metrics"])
    for name in metrics:
        rows.add_column(name, justify="right")
    for u in report["users"]:
        rows.add_row(str(u["user_id"]), *(f"{u['rows'].get(m, 0):,}" for m in metrics))
    last = report.get("last_run")
    runs = Table(title="last run")
    for column in ("run", "command", "status", "started", "finished", "user-days", "rows", "quarantined", "failed"):
        runs.add_column(column)
    if last:
        runs.add_row(str(last["run_id"]), last["command"], last["status"], str(last["started_at"]),
                     str(last["finished_at"] or "-"), str(last["user_days"]), f"{last['rows_loaded']:,}",
                     str(last["quarantined"]), str(last["failed"]))
    return [users, rows, runs]
