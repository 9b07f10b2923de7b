"""Reading the ledger (ingested_days): cursors, day states, and which days a run has to do.

A day's state is one of:
- provisional: loaded before the source's settle window passed; later runs fetch it again;
- complete / empty: settled, with or without data; runs leave it alone (backfill --force aside);
- deferred: the source said retry later; nothing loaded; fetched again once retry_after passes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg

from fitpipe.days import ONE_DAY, days_between
from fitpipe.participants import User, list_users
from fitpipe.timezones import today_in

SETTLED = ("complete", "empty")
STATES = ("provisional", "complete", "empty", "deferred")


def cursors(conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[int, dt.date | None]:
    """Per user, the last day of the unbroken run of *settled* days from the study start.

    Consecutive days share `day - row_number()`, and the run that begins at the study start
    has the value study_start - 1.
    """
    rows = conn.execute(
        """
        WITH numbered AS (
            SELECT d.user_id, d.day, u.study_start,
                   d.day - (row_number() OVER (PARTITION BY d.user_id ORDER BY d.day))::int AS island
            FROM ingested_days d JOIN users u USING (user_id)
            WHERE d.user_id = ANY(%s) AND d.day >= u.study_start AND d.state IN ('complete', 'empty')
        )
        SELECT user_id, max(day) FROM numbered WHERE island = study_start - 1 GROUP BY user_id
        """,
        (list(user_ids),),
    ).fetchall()
    found: dict[int, dt.date] = dict(rows)
    return {user_id: found.get(user_id) for user_id in user_ids}


def day_states(
    conn: psycopg.Connection, user_ids: Sequence[int], first: dt.date, last: dt.date
) -> dict[tuple[int, dt.date], tuple[str, dt.datetime | None]]:
    """(user, day) -> (state, retry_after) for the ledger rows in [first, last]."""
    rows = conn.execute(
        "SELECT user_id, day, state, retry_after FROM ingested_days WHERE user_id = ANY(%s) AND day BETWEEN %s AND %s",
        (list(user_ids), first, last),
    ).fetchall()
    return {(u, d): (state, retry) for u, d, state, retry in rows}


def last_complete_day(user: User, today: dt.date | None = None) -> dt.date:
    """Yesterday in the user's timezone: today is not over yet."""
    return (today or today_in(user.timezone)) - ONE_DAY


def is_due(state: str | None, retry_after: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a run should fetch a day in this state now."""
    if state in SETTLED:
        return False
    return state != "deferred" or retry_after is None or retry_after <= now


__all__ = [
    "SETTLED",
    "STATES",
    "cursors",
    "day_states",
    "days_between",
    "is_due",
    "last_complete_day",
    "settled_horizon",
]


def settled_horizon(conn: psycopg.Connection) -> dt.datetime | None:
    """The earliest start of a not-yet-settled local day among enrolled participants."""
    users = list_users(conn, enrolled_only=True)
    if not users:
        return None
    cursor_of = cursors(conn, [u.user_id for u in users])
    starts = []
    for u in users:
        cursor = cursor_of[u.user_id]
        starts.append(u.day_start(cursor + dt.timedelta(days=1)) if cursor else u.day_start(u.study_start))
    return min(starts)
