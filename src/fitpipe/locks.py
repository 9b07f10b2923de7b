"""Advisory lock keys, so overlapping runs coordinate through the database, not files.

- user-day (two-int key space): held by the transaction that replaces that day. A second run
  that cannot take it skips the day and says so.
- user (bigint key space): ingest holds it shared while it writes a day; impute holds it
  exclusively, so it never reads a user's data halfway through a replace. Rollup refreshes do
  not need it: the change log keeps them correct.
- refresh (bigint key space): two rollup refreshes of one user take turns. A loader tries it
  before it rewrites the 1-minute rollup rows of the day it replaces, and leaves them to the
  refresh when it is taken, so a load never waits for a refresh.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from fitpipe.db import one_row

# Distinct bigint ranges per purpose; PostgreSQL keeps the (int, int) key space apart anyway.
_USER_BASE = 0x6669_7470_0001_0000_0000 >> 24  # "fitp" + purpose 1, shifted into bigint range
_REFRESH_BASE = _USER_BASE + (1 << 32)


def user_key(user_id: int) -> int:
    return _USER_BASE + user_id


def try_lock_user_day(conn: psycopg.Connection, user_id: int, day: dt.date) -> bool:
    return one_row(conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (user_id, day.toordinal())))[0]


def lock_user_shared(conn: psycopg.Connection, user_id: int) -> None:
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (user_key(user_id),))


def lock_user_exclusive(conn: psycopg.Connection, user_id: int) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (user_key(user_id),))


def lock_refresh(conn: psycopg.Connection, user_id: int) -> None:
    """Two rollup refreshes of one user take turns."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REFRESH_BASE + user_id,))


def try_lock_refresh(conn: psycopg.Connection, user_id: int) -> bool:
    return one_row(conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_REFRESH_BASE + user_id,)))[0]
