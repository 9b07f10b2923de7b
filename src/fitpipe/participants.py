"""Participants: creating them (seed-users) and looking them up."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import psycopg
from psycopg.rows import class_row

from fitpipe.errors import BadInput
from fitpipe.timezones import validate_timezone


@dataclass(frozen=True)
class User:
    user_id: int
    display_name: str
    timezone: str
    source: str
    synthetic_seed: int
    wear_gaps: bool
    study_start: dt.date


_USER_COLUMNS = "user_id, display_name, timezone, source, synthetic_seed, wear_gaps, study_start"


def synthetic_seed_for(user_id: int) -> int:
    # Multiplying by an odd constant is a bijection modulo 2**31, so seeds never collide,
    # yet neighbouring users get unrelated seeds.
    return (user_id * 2654435761) % (2**31)


def seed_users(
    conn: psycopg.Connection,
    count: int,
    *,
    timezone: str = "UTC",
    start_date: dt.date = dt.date(2024, 1, 1),
    wear_gaps: bool = True,
) -> tuple[list[User], int]:
    """Make sure users 1..count exist. Existing users are left as they are.

    Returns all users 1..count and how many were created now.
    """
    if count < 1:
        raise BadInput("--count must be at least 1")
    validate_timezone(timezone)
    with conn.transaction():
        created = 0
        with conn.cursor() as cur:
            for user_id in range(1, count + 1):
                cur.execute(
                    """
                    INSERT INTO users (user_id, display_name, timezone, synthetic_seed, wear_gaps, study_start)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON CONFLICT (user_id) DO NOTHING
                    """,
                    (user_id, f"participant-{user_id:04d}", timezone, synthetic_seed_for(user_id), wear_gaps, start_date),
                )
                created += cur.rowcount
    return list_users(conn, range(1, count + 1)), created


def list_users(conn: psycopg.Connection, user_ids: Sequence[int] | range | None = None) -> list[User]:
    """Users by id (all when user_ids is empty/None); an unknown id is an error."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        if user_ids:
            wanted = sorted(set(user_ids))
            cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ANY(%s) ORDER BY user_id", (wanted,))
            found = cur.fetchall()
            missing = sorted(set(wanted) - {u.user_id for u in found})
            if missing:
                raise BadInput(f"unknown user id(s): {', '.join(map(str, missing))}; create them with `fitpipe seed-users`")
            return found
        cur.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY user_id")
        return cur.fetchall()
