"""Participants: enrolment, their timezone history, withdrawal, and looking them up."""

from __future__ import annotations

import bisect
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from fitpipe.catalogue import METRICS
from fitpipe.days import ONE_DAY, DayContext
from fitpipe.db import one_row
from fitpipe.errors import BadInput
from fitpipe.timezones import local_instant, validate_timezone


@dataclass(frozen=True)
class User:
    user_id: int
    display_name: str
    timezone: str  # the zone in force today
    source: str
    study_start: dt.date
    # The source's own settings (participant_sources.settings); only that source reads them.
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    # (effective_from, zone) in order; the first entry also covers the days before it.
    zones: tuple[tuple[dt.date, str], ...] = ()
    withdrawn_at: dt.datetime | None = None

    def zone_on(self, day: dt.date) -> str:
        if not self.zones:
            return self.timezone
        index = bisect.bisect_right([start for start, _ in self.zones], day) - 1
        return self.zones[max(index, 0)][1]

    def day_context(self, day: dt.date) -> DayContext:
        return DayContext(self.user_id, day, self.zone_on(day), self.zone_on(day + ONE_DAY))

    def day_start(self, day: dt.date, hour: int = 0) -> dt.datetime:
        """The instant local day `day` begins (midnight, or `hour`, in the zone in force that day)."""
        return local_instant(day, hour, self.zone_on(day))

    def zone_spans(self, lo: dt.datetime, hi: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """[lo, hi) cut where the participant's zone changes: (zone, span_lo, span_hi) in order."""
        cuts = [(self.day_start(start), zone) for start, zone in self.zones[1:]]
        spans, current = [], self.zones[0][1] if self.zones else self.timezone
        for instant, zone in cuts:
            if instant > lo:
                if instant >= hi:
                    break
                spans.append((current, lo, instant))
                lo = instant
            current = zone
        spans.append((current, lo, hi))
        return spans

    def local_day_of(self, instant: dt.datetime) -> dt.date:
        """The local day that owns a calendar instant, by the zone history."""
        from zoneinfo import ZoneInfo

        guess = instant.astimezone(ZoneInfo(self.zone_on(instant.astimezone(dt.UTC).date()))).date()
        for day in (guess - ONE_DAY, guess, guess + ONE_DAY):
            if self.day_start(day) <= instant < self.day_start(day + ONE_DAY):
                return day
        return guess


_SELECT = """
    SELECT u.user_id, u.display_name, u.timezone, u.source, u.study_start, u.withdrawn_at,
           coalesce(s.settings, '{}'::jsonb) AS settings,
           (SELECT coalesce(array_agg(ARRAY[h.effective_from::text, h.timezone] ORDER BY h.effective_from), '{}')
              FROM timezone_history h WHERE h.user_id = u.user_id) AS zones
    FROM users u LEFT JOIN participant_sources s ON s.user_id = u.user_id AND s.source = u.source
"""


def _user(row: dict) -> User:
    zones = tuple((dt.date.fromisoformat(start), zone) for start, zone in row.pop("zones") or [])
    return User(**row, zones=zones)


def list_users(
    conn: psycopg.Connection, user_ids: Sequence[int] | range | None = None, *, enrolled_only: bool = False
) -> list[User]:
    """Users by id (all when user_ids is empty/None); an unknown id is an error."""
    withdrawn = " AND u.withdrawn_at IS NULL" if enrolled_only else ""
    with conn.cursor(row_factory=dict_row) as cur:
        if user_ids:
            wanted = sorted(set(user_ids))
            cur.execute(_SELECT + f" WHERE u.user_id = ANY(%s){withdrawn} ORDER BY u.user_id", (wanted,))
            found = [_user(r) for r in cur.fetchall()]
            if not enrolled_only:
                missing = sorted(set(wanted) - {u.user_id for u in found})
                if missing:
                    raise BadInput(
                        f"unknown user id(s): {', '.join(map(str, missing))}; "
                        "create them with `fitpipe participants add` or `fitpipe seed-users`"
                    )
            return found
        cur.execute(_SELECT + (" WHERE true" + withdrawn if withdrawn else "") + " ORDER BY u.user_id")
        return [_user(r) for r in cur.fetchall()]


def add_participant(
    conn: psycopg.Connection,
    user_id: int,
    *,
    source: str,
    timezone: str,
    study_start: dt.date,
    display_name: str | None = None,
    settings: dict | None = None,
) -> bool:
    """Enrol a participant with a source. Returns False when the id already existed (left as it was)."""
    from fitpipe.sources import source_class

    if user_id < 1:
        raise BadInput("participant ids start at 1")
    validate_timezone(timezone)
    check_study_day(study_start, "study start")
    declared = source_class(source)
    settings = declared.check_settings(settings or {})
    state = "not_needed" if declared.credential_kind == "none" else "missing"
    with conn.transaction():
        created = conn.execute(
            "INSERT INTO users (user_id, display_name, timezone, source, study_start) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (user_id) DO NOTHING",
            (user_id, display_name or f"participant-{user_id:04d}", timezone, source, study_start),
        ).rowcount
        if not created:
            return False
        conn.execute(
            "INSERT INTO participant_sources (user_id, source, settings, credential_state) VALUES (%s, %s, %s, %s)",
            (user_id, source, json.dumps(declared.default_settings(user_id) | settings), state),
        )
        conn.execute(
            "INSERT INTO timezone_history (user_id, effective_from, timezone) VALUES (%s, %s, %s)",
            (user_id, study_start, timezone),
        )
    return True


# Rollups bucket local hours by the epoch (derive/rollups.py), which is only right from 1970
# on; a study that old does not exist, so earlier days are refused where they enter.
FIRST_STUDY_DAY = dt.date(1970, 1, 2)
# seed-users inserts participants one at a time; beyond this it is a typo, not a cohort.
MAX_SEED_USERS = 100_000


def check_study_day(day: dt.date, what: str) -> None:
    if day < FIRST_STUDY_DAY:
        raise BadInput(f"{what} {day} is before {FIRST_STUDY_DAY}; fitpipe keeps study days from 1970 on")


def seed_users(
    conn: psycopg.Connection,
    count: int,
    *,
    timezone: str = "UTC",
    start_date: dt.date = dt.date(2024, 1, 1),
    wear_gaps: bool = True,
    sync_lag_hours: int = 0,
) -> tuple[list[User], int]:
    """Make sure synthetic users 1..count exist. Existing users are left as they are.

    Returns all users 1..count and how many were created now.
    """
    if not 1 <= count <= MAX_SEED_USERS:
        raise BadInput(f"--count must be between 1 and {MAX_SEED_USERS:,}, got {count:,}")
    if sync_lag_hours < 0:
        raise BadInput("--sync-lag-hours must be 0 or more")
    validate_timezone(timezone)
    check_study_day(start_date, "--start-date")
    settings = {"wear_gaps": wear_gaps, "sync_lag_hours": sync_lag_hours}
    created = sum(
        add_participant(conn, user_id, source="synthetic", timezone=timezone, study_start=start_date, settings=settings)
        for user_id in range(1, count + 1)
    )
    return list_users(conn, range(1, count + 1)), created


def _refuse_recutting_rollup_only_days(
    conn: psycopg.Connection, user_id: int, timezone: str, effective_from: dt.date
) -> None:
    """A move re-cuts the days from the day before it on. A day whose raw rows retention dropped
    keeps only the rollups cut in the old zone: a rebuild would drop what it cannot recompute."""
    count, first, last = conn.execute(
        "SELECT count(*), min(day), max(day) FROM ingested_days "
        "WHERE user_id = %s AND day >= %s AND raw_dropped_at IS NOT NULL",
        (user_id, effective_from - ONE_DAY),
    ).fetchone() or (0, None, None)
    if count:
        raise BadInput(
            f"participant {user_id} has rollups only (raw rows dropped by retention) for {count} day(s) from "
            f"{first} to {last}, which a move to {timezone} from {effective_from} would cut again; bring their "
            f"raw rows back first (fitpipe backfill --user {user_id} --start {first} --end {last} --force, or import "
            "the archive again), "
            f"or record the move from {last + 2 * ONE_DAY} on"
        )


def set_timezone(conn: psycopg.Connection, user_id: int, timezone: str, effective_from: dt.date) -> list[dt.date]:
    """Record that the participant lives in `timezone` from local day `effective_from` on.

    Days already loaded from then on were cut by the old zone: they are marked for re-ingestion
    (their ledger rows become provisional) and returned, so the caller can say so.
    """
    validate_timezone(timezone)
    check_study_day(effective_from, "--from")
    list_users(conn, [user_id])
    with conn.transaction():
        from fitpipe.locks import lock_user_exclusive

        # Raw retention marks days under this lock: the check below sees every mark.
        lock_user_exclusive(conn, user_id)
        _refuse_recutting_rollup_only_days(conn, user_id, timezone, effective_from)
        conn.execute(
            "INSERT INTO timezone_history (user_id, effective_from, timezone) VALUES (%s, %s, %s) "
            "ON CONFLICT (user_id, effective_from) DO UPDATE SET timezone = excluded.timezone, recorded_at = now()",
            (user_id, effective_from, timezone),
        )
        # users.timezone is the zone in force today, for SQL readers (dashboards).
        conn.execute(
            "UPDATE users SET timezone = (SELECT timezone FROM timezone_history WHERE user_id = %(u)s "
            "AND effective_from <= %(today)s ORDER BY effective_from DESC LIMIT 1) WHERE user_id = %(u)s "
            "AND EXISTS (SELECT 1 FROM timezone_history WHERE user_id = %(u)s AND effective_from <= %(today)s)",
            {"u": user_id, "today": dt.date.today()},
        )
        # The day before the change ends where the changed day starts, so it is cut again too.
        stale = conn.execute(
            "UPDATE ingested_days SET state = 'provisional', content_hash = NULL, note = 'timezone changed' "
            "WHERE user_id = %s AND day >= %s AND state <> 'deferred' RETURNING day",
            (user_id, effective_from - ONE_DAY),
        ).fetchall()
    return sorted(day for (day,) in stale)


def withdraw(conn: psycopg.Connection, user_id: int, *, delete_data: bool) -> dict[str, int]:
    """Stop ingesting a participant; with delete_data, remove every row of theirs in every table.

    Returns rows deleted per table (empty without delete_data).
    """
    list_users(conn, [user_id])
    deleted = _withdraw(conn, user_id, delete_data)
    from fitpipe.sources import registered_classes

    # After the commit: no day of theirs loads any more, so nothing stages again.
    for source in registered_classes():
        source.forget(user_id)
    return deleted


def _withdraw(conn: psycopg.Connection, user_id: int, delete_data: bool) -> dict[str, int]:
    deleted: dict[str, int] = {}
    with conn.transaction():
        from fitpipe.locks import lock_user_exclusive

        # Waits for a load or imputation of this participant to finish, and keeps new ones out.
        lock_user_exclusive(conn, user_id)
        conn.execute("UPDATE users SET withdrawn_at = coalesce(withdrawn_at, now()) WHERE user_id = %s", (user_id,))
        if not delete_data:
            return deleted
        tables = [m.table for m in METRICS] + [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                "(tablename LIKE 'rollup\\_%%' "
                "OR tablename IN ('imputed_values', 'quarantine', 'rollup_invalidations'))"
            )
        ]
        for table in tables:
            deleted[table] = conn.execute(
                sql.SQL("DELETE FROM {} WHERE user_id = %s").format(sql.Identifier(table)), (user_id,)
            ).rowcount
        # The ledger, settings, credentials and timezone history go with the participant's row.
        for table in ("ingested_days", "source_credentials", "participant_sources", "timezone_history"):
            deleted[table] = one_row(
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE user_id = %s").format(sql.Identifier(table)), (user_id,)
                )
            )[0]
        # A run's record keeps no trace of the archive it read for them (its path names the person).
        conn.execute(
            "UPDATE ingest_runs SET arguments = arguments - 'archive' - 'sha256' "
            "WHERE arguments ? 'archive' AND arguments -> 'users' @> to_jsonb(%s::int)",
            (user_id,),
        )
        conn.execute("DELETE FROM users WHERE user_id = %s", (user_id,))
        deleted["users"] = 1
    return deleted
