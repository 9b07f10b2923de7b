"""Reading the ledger (ingested_days): cursors and which days a run still has to do."""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

import psycopg

from fitpipe.timezones import today_in
from fitpipe.participants import User


def cursors(conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[int, dt.date | None]:
    """Per user, the last day of the unbroken run of ingested days from the study start.

    Consecutive days share `day - row_number()`, and the run that begins at the study start
    has the value study_start - 1.
    """
    rows = conn.execute(
        """
        WITH numbered AS (
            SELECT d.user_id, d.day, u.study_start,
                   d.day - (row_number() OVER (PARTITION BY d.user_id ORDER BY d.day))::int AS island
            FROM ingested_days d JOIN users u USING (user_id)
            WHERE d.user_id = ANY(%s) AND d.day >= u.study_start
        )
        SELECT user_id, max(day) FROM numbered WHERE island = study_start - 1 GROUP BY user_id
        """,
        (list(user_ids),),
    ).fetchall()
    found = dict(rows)
    return {user_id: found.get(user_id) for user_id in user_ids}


def ingested(conn: psycopg.Connection, user_ids: Sequence[int], first: dt.date, last: dt.date) -> set[tuple[int, dt.date]]:
    rows = conn.execute(
        "SELECT user_id, day FROM ingested_days WHERE user_id = ANY(%s) AND day BETWEEN %s AND %s",
        (list(user_ids), first, last),
    ).fetchall()
    return {(u, d) for u, d in rows}


def last_complete_day(user: User, today: dt.date | None = None) -> dt.date:
    """Yesterday in the user's timezone: today is not over yet."""
    return (today or today_in(user.timezone)) - dt.timedelta(days=1)


def days_between(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    for offset in range((last - first).days + 1):
        yield first + dt.timedelta(days=offset)
