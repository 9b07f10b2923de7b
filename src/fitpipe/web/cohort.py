"""The cohort view: one row per participant from the two library calls behind
`fitpipe adherence --json` and `fitpipe status --json`, joined on the participant."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from fitpipe.derive.adherence import FLAGS, Thresholds, adherence
from fitpipe.errors import BadInput
from fitpipe.output.status import collect_status

# Columns a coordinator can sort by; "worst" is adherence's own order (most flags first).
SORT_KEYS = (
    "worst",
    "participant",
    "source",
    "timezone",
    "last_data",
    "wear_share",
    "nights_captured",
    "credentials",
    "deferred",
    "flags",
)


def cohort(conn: psycopg.Connection, as_of: dt.date | None = None, sort: str = "worst") -> dict[str, Any]:
    if sort not in SORT_KEYS:
        raise BadInput(f"sort must be one of {', '.join(SORT_KEYS)}, got {sort[:40]!r}")
    status = collect_status(conn, [], storage=False)
    try:
        day, judged = adherence(conn, [], as_of, Thresholds())
        note = ""
    except BadInput as exc:  # nothing ingested yet: the status columns still say who is enrolled
        if as_of is not None:
            raise
        day, judged, note = None, [], str(exc)
    rank = {row["user_id"]: i for i, row in enumerate(judged)}
    by_user = {row["user_id"]: row for row in judged}
    rows = []
    for user in status["users"]:
        judged_row = by_user.get(user["user_id"], {})
        # The watch that synced last (sources that report devices: google-health); none otherwise.
        watch = (user.get("devices") or [None])[0]
        rows.append(
            {
                "user_id": user["user_id"],
                "display_name": user["display_name"],
                "source": user["source"],
                "timezone": user["timezone"],
                "withdrawn": user["withdrawn"],
                "last_ingested": user["last_ingested"],
                "days_ingested": user["days_ingested"],
                "missing_days": len(user["missing_days"]),
                "deferred_days": user["states"]["deferred"],
                "deferred": user["deferred"],
                "credentials": user["credentials"],
                "credential_note": user["credential_note"],
                "last_sync": watch["last_sync_time"] if watch else None,
                "battery": watch["battery_level"] if watch else None,
                "missing_after_sync": len(user.get("missing_after_sync") or []),
                "last_data": judged_row.get("last_data"),
                "hours_since_data": judged_row.get("hours_since_data"),
                "wear_share": judged_row.get("wear_share"),
                "worn_minutes": judged_row.get("worn_minutes"),
                "study_minutes": judged_row.get("study_minutes"),
                "nights_captured": judged_row.get("nights_captured"),
                "flags": [flag.removeprefix("flag_") for flag in FLAGS if judged_row.get(flag)],
                "flag_count": judged_row.get("flag_count"),
                "judged": user["user_id"] in by_user,
            }
        )
    rows.sort(key=lambda row: _sort_key(row, sort, rank))
    return {"as_of": day, "note": note, "sort": sort, "participants": rows, "last_run": status["last_run"]}


def _sort_key(row: dict, sort: str, rank: dict[int, int]) -> tuple:
    """Worst first for every column: least wear, oldest data, most deferred days, most flags."""
    missing_last = 1 if row.get(sort) is None else 0
    if sort == "worst":
        return (rank.get(row["user_id"], len(rank)), row["user_id"])
    if sort == "participant":
        return (row["user_id"],)
    if sort in ("source", "timezone", "credentials"):
        return (missing_last, str(row[sort] or ""), row["user_id"])
    if sort == "last_data":
        return (1 - missing_last, row["last_data"] or dt.datetime.min.replace(tzinfo=dt.UTC), row["user_id"])
    if sort in ("wear_share", "nights_captured"):
        return (1 - missing_last, row[sort] if row[sort] is not None else 0, row["user_id"])
    if sort == "deferred":
        return (-row["deferred_days"], row["user_id"])
    return (-len(row["flags"]), row["user_id"])
