"""Adherence: the derived table wear_days (worn minutes and main sleep per participant-day,
rebuilt by each rollup refresh from the fresh 1-minute rollup) and the study team's flags read
from it by the SQL function fitpipe_adherence() (migrations 0040, 0051, 0060), which the Grafana
Adherence dashboard calls too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from fitpipe.db import one_row
from fitpipe.derive.batches import BATCH_BOUNDS, MAX_DAYS_PER_STATEMENT, day_runs
from fitpipe.errors import BadInput
from fitpipe.participants import User, list_users

MAX_SILENCE_HOURS = 24 * 3653
FLAGS = (
    "flag_low_wear",
    "flag_no_recent_data",
    "flag_low_sleep_capture",
    "flag_no_credentials",
    "flag_device_not_synced",
)


@dataclass(frozen=True)
class Thresholds:
    min_wear_share: float = 0.7
    max_silence_hours: float = 48
    min_nights: int = 5
    min_sleep_minutes: int = 180
    # A watch that has not synced for this long holds data back (docs/late-data.md).
    max_sync_hours: float = 72

    def validate(self) -> None:
        # `not a <= x <= b` is also true for NaN, so NaN is refused with the range.
        if not 0 <= self.min_wear_share <= 1:
            raise BadInput("--min-wear must be between 0 and 1")
        if not 0 <= self.max_silence_hours <= MAX_SILENCE_HOURS:
            raise BadInput(f"--max-silence-hours must be between 0 and {MAX_SILENCE_HOURS:,} (ten years)")
        if not 0 <= self.min_nights <= 7:
            raise BadInput("--min-nights must be between 0 and 7 (it counts the last 7 nights)")
        if not 0 <= self.min_sleep_minutes <= 24 * 60:
            raise BadInput("--min-sleep-minutes must be between 0 and 1440 (a day)")
        if not 0 <= self.max_sync_hours <= MAX_SILENCE_HOURS:
            raise BadInput(f"--max-sync-hours must be between 0 and {MAX_SILENCE_HOURS:,} (ten years)")


def archive_sources() -> list[str]:
    """Sources whose data arrives only in archives (credential "file", e.g. takeout): a participant
    of one is measured up to the last day their archives hold, and marked ended after it."""
    from fitpipe.sources import registered_classes

    return [source.name for source in registered_classes() if source.credential_kind == "file"]


def adherence(
    conn: psycopg.Connection,
    user_ids: Sequence[int] = (),
    as_of: dt.date | None = None,
    thresholds: Thresholds = Thresholds(),
) -> tuple[dt.date, list[dict]]:
    """Rows of fitpipe_adherence, worst first, each over the participant's own window (window_end,
    ended). as_of defaults to the newest ingested day."""
    thresholds.validate()
    users = list_users(conn, user_ids)
    if as_of is None:
        as_of = one_row(
            conn.execute("SELECT max(day) FROM ingested_days WHERE user_id = ANY(%s)", ([u.user_id for u in users],))
        )[0]
        if as_of is None:
            raise BadInput("nothing has been ingested yet; give --as-of or run `fitpipe ingest` first")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM fitpipe_adherence(%s::date, %s::real, make_interval(secs => %s::float8), %s::integer, "
            "%s::integer, %s::text[]) WHERE user_id = ANY(%s)",
            (
                as_of,
                thresholds.min_wear_share,
                thresholds.max_silence_hours * 3600,
                thresholds.min_nights,
                thresholds.min_sleep_minutes,
                archive_sources(),
                [u.user_id for u in users],
            ),
        )
        rows = cur.fetchall()
    return as_of, with_device_sync(conn, rows, users, thresholds.max_sync_hours)


def with_device_sync(
    conn: psycopg.Connection, rows: list[dict], users: list[User], max_sync_hours: float
) -> list[dict]:
    """Adherence rows with the watch's sync (participants whose source reports one): the latest
    sync, hours from it to the end of the window, the flag when that is over max_sync_hours, and
    the days of the window that are missing although the watch synced past them. Worst first again."""
    from fitpipe.ingest.device_sync import last_syncs, missing_days

    user_of = {u.user_id: u for u in users}
    ids = [row["user_id"] for row in rows]
    synced, missing = last_syncs(conn, ids), missing_days(conn, ids)
    for row in rows:
        user_id = row["user_id"]
        period_end = user_of[user_id].day_start(row["window_end"] + dt.timedelta(days=1))
        last = synced.get(user_id)
        hours = None if last is None else max((period_end - last).total_seconds(), 0) / 3600
        row["last_device_sync"] = last
        row["hours_since_sync"] = hours
        row["flag_device_not_synced"] = user_id in synced and (hours is None or hours > max_sync_hours)
        row["days_missing"] = sum(1 for day in missing.get(user_id, []) if day <= row["window_end"])
        row["flag_count"] += int(row["flag_device_not_synced"])
    return sorted(rows, key=lambda r: (-r["flag_count"], r["wear_share"], r["user_id"]))


_WEAR_WINDOWS = """
    w AS (SELECT * FROM unnest(%(w_user)s::int[], %(w_lo)s::timestamptz[], %(w_hi)s::timestamptz[], %(w_tz)s::text[],
                               %(w_last_start)s::timestamptz[], %(w_first)s::date[], %(w_last)s::date[])
                        AS w(user_id, lo, hi, tz, last_start, first_day, last_day))"""


def rebuild_wear_days(cur: psycopg.Cursor, days_of: dict[int, tuple[User, set[dt.date]]]) -> None:
    """Rebuild wear_days for the local days a refresh touched, from the fresh 1-minute rollup.

    A minute belongs to the local day whose window holds it (the same rule as rollup_1d), and the
    main sleep to the day it ends on (date_of_sleep), as adherence has always counted them.
    """
    if not days_of:
        return
    runs = [(user, first, last) for user, days in days_of.values() for first, last in day_runs(days, user)]
    # Statements of bounded size, like the rollups' own.
    batch: list[tuple[User, dt.date, dt.date]] = []
    for run in runs:
        batch.append(run)
        if sum((last - first).days + 1 for _, first, last in batch) >= MAX_DAYS_PER_STATEMENT * 4:
            _rebuild_wear_batch(cur, batch)
            batch = []
    if batch:
        _rebuild_wear_batch(cur, batch)
    update_running_totals(cur, list(days_of), [min(days) for _, days in days_of.values()])


def update_running_totals(cur: psycopg.Cursor, user_ids: list[int], since: list[dt.date]) -> None:
    """wear_days' running totals from each participant's `since` day on (a night's refresh: a few rows)."""
    cur.execute(
        """
        UPDATE wear_days w SET worn_minutes_to_date = s.worn, last_measured_to_date = s.last
        FROM (SELECT d.user_id, d.day,
                     coalesce(sum(CASE WHEN d.day >= u.study_start THEN d.worn_minutes END)
                              OVER (PARTITION BY d.user_id ORDER BY d.day), 0) AS worn,
                     max(CASE WHEN d.day >= u.study_start THEN d.last_measured END)
                         OVER (PARTITION BY d.user_id ORDER BY d.day) AS last
              FROM wear_days d JOIN users u USING (user_id) WHERE d.user_id = ANY(%(users)s)) s,
             unnest(%(users)s::int[], %(since)s::date[]) AS touched(user_id, since)
        WHERE w.user_id = s.user_id AND w.day = s.day AND touched.user_id = w.user_id AND w.day >= touched.since
        """,
        {"users": user_ids, "since": since},
    )


def _rebuild_wear_batch(cur: psycopg.Cursor, runs: list[tuple[User, dt.date, dt.date]]) -> None:
    window_starts = [u.day_start(first) for u, first, _ in runs]
    window_ends = [u.day_start(last + dt.timedelta(days=1)) for u, _, last in runs]
    params = {
        "w_user": [u.user_id for u, _, _ in runs],
        "w_lo": window_starts,
        "w_hi": window_ends,
        "w_tz": [u.zone_on(first) for u, first, _ in runs],
        "w_last_start": [u.day_start(last) for u, _, last in runs],
        "w_first": [first for _, first, _ in runs],
        "w_last": [last for _, _, last in runs],
        "batch_lo": min(window_starts),
        "batch_hi": max(window_ends),
    }
    cur.execute(
        f"WITH {_WEAR_WINDOWS} DELETE FROM wear_days d USING w "
        "WHERE d.user_id = w.user_id AND d.day BETWEEN w.first_day AND w.last_day",
        params,
    )
    cur.execute(
        f"""
        WITH {_WEAR_WINDOWS},
        minutes AS (
            SELECT w.user_id, r.bucket,
                   CASE WHEN r.bucket < w.last_start THEN (time_bucket('1 day', r.bucket, w.tz) AT TIME ZONE w.tz)::date
                        ELSE w.last_day END AS day
            FROM w JOIN rollup_1min r ON r.user_id = w.user_id AND r.metric = 'heart_rate' AND r.field = 'bpm'
                                      AND r.bucket >= w.lo AND r.bucket < w.hi AND r.n_measured > 0
            WHERE {BATCH_BOUNDS.format(col="r.bucket")}
        ),
        worn AS (
            SELECT user_id, day, count(*) AS minutes, min(bucket) AS first_measured,
                   max(bucket) + interval '1 minute' AS last_measured
            FROM minutes GROUP BY 1, 2
        ),
        sleep AS (
            SELECT s.user_id, s.date_of_sleep AS day, max(s.duration_s) AS seconds
            FROM w JOIN sleep_sessions s ON s.user_id = w.user_id AND s.is_main_sleep
                                         AND s.date_of_sleep BETWEEN w.first_day AND w.last_day
            GROUP BY 1, 2
        )
        INSERT INTO wear_days (user_id, day, worn_minutes, first_measured, last_measured, main_sleep_seconds)
        SELECT w.user_id, g.day::date, coalesce(worn.minutes, 0), worn.first_measured, worn.last_measured, sleep.seconds
        FROM w CROSS JOIN LATERAL generate_series(w.first_day, w.last_day, interval '1 day') AS g(day)
        LEFT JOIN worn ON worn.user_id = w.user_id AND worn.day = g.day::date
        LEFT JOIN sleep ON sleep.user_id = w.user_id AND sleep.day = g.day::date
        """,
        params,
    )
