"""What the database holds now, per settled participant-day: one fingerprint per family.

- raw: the ledger's state, content hash and load time of the day. A re-ingest with new content
  (backfill --force, an import, a late-settled day) changes it; raw retention does not touch
  these columns, so days whose 1 Hz rows the database dropped keep their rows in the lake.
- derived: the day's rollup_1d rows (counts and exact double-precision sums, measured and
  imputed, per metric and field), which change whenever the day's rollups or imputed values do.
  A day with a pending rollup change record keeps the derived state the lake already has until
  a refresh has consumed it, so the lake never copies half-refreshed rollups.

Only settled days (complete or empty) are here: provisional and deferred days stay out of the lake.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

import psycopg

from fitpipe.days import ONE_DAY
from fitpipe.ingest.ledger import SETTLED
from fitpipe.participants import User, list_users

Key = tuple[int, dt.date]


def raw_fingerprints(conn: psycopg.Connection) -> dict[Key, str]:
    rows = conn.execute(
        "SELECT user_id, day, md5(state || '|' || coalesce(content_hash, '') || '|' || ingested_at::text) "
        "FROM ingested_days WHERE state = ANY(%s)",
        (list(SETTLED),),
    )
    return {(user_id, day): fingerprint for user_id, day, fingerprint in rows}


def _day_starts(user: User, days: Iterable[dt.date]) -> dict[dt.datetime, dt.date]:
    return {user.day_start(day): day for day in days}


def derived_fingerprints(
    conn: psycopg.Connection, users: dict[int, User], settled: Iterable[Key], previous: dict[Key, str]
) -> dict[Key, str]:
    """Fingerprints of the settled days' rollups; a day with a pending change keeps `previous`."""
    days_of: dict[int, list[dt.date]] = defaultdict(list)
    for user_id, day in settled:
        days_of[user_id].append(day)
    starts = {user_id: _day_starts(users[user_id], days) for user_id, days in days_of.items() if user_id in users}
    found: dict[Key, str] = {key: "" for key in settled}
    rows = conn.execute(
        "SELECT user_id, bucket, md5(string_agg(concat_ws(':', metric, field, n_measured, sum_measured, n_imputed, "
        "sum_imputed), '|' ORDER BY metric, field)) FROM rollup_1d GROUP BY user_id, bucket"
    )
    for user_id, bucket, fingerprint in rows:
        owner = starts.get(user_id, {}).get(bucket)
        if owner is not None:
            found[(user_id, owner)] = fingerprint
    for user_id, lo, hi in conn.execute("SELECT user_id, lo, hi FROM rollup_invalidations"):
        user = users.get(user_id)
        if user is None:
            continue
        day, last = user.local_day_of(lo), user.local_day_of(hi - dt.timedelta(microseconds=1))
        while day <= last:
            key = (user_id, day)
            if key in found:
                if key in previous:
                    found[key] = previous[key]
                else:
                    del found[key]
            day += ONE_DAY
    return found


def database_state(
    conn: psycopg.Connection, previous_derived: dict[Key, str]
) -> tuple[dict[str, dict[Key, str]], dict[int, User]]:
    """({family: {key: fingerprint}}, users by id) as the database holds them now."""
    users = {u.user_id: u for u in list_users(conn)}
    raw = raw_fingerprints(conn)
    derived = derived_fingerprints(conn, users, raw, previous_derived)
    return {"raw": raw, "derived": derived}, users
