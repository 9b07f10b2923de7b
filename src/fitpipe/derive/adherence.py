"""The study team's adherence flags, computed by the SQL function fitpipe_adherence()
(migrations/0004_adherence.sql), which the Grafana Adherence dashboard calls too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from fitpipe.errors import BadInput
from fitpipe.participants import list_users

MAX_SILENCE_HOURS = 24 * 3653
FLAGS = ("flag_low_wear", "flag_no_recent_data", "flag_low_sleep_capture", "flag_no_credentials")


@dataclass(frozen=True)
class Thresholds:
    min_wear_share: float = 0.7
    max_silence_hours: float = 48
    min_nights: int = 5
    min_sleep_minutes: int = 180

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


def adherence(
    conn: psycopg.Connection,
    user_ids: Sequence[int] = (),
    as_of: dt.date | None = None,
    thresholds: Thresholds = Thresholds(),
) -> tuple[dt.date, list[dict]]:
    """Rows of fitpipe_adherence, worst first. as_of defaults to the newest ingested day."""
    thresholds.validate()
    users = list_users(conn, user_ids)
    if as_of is None:
        as_of = conn.execute(
            "SELECT max(day) FROM ingested_days WHERE user_id = ANY(%s)", ([u.user_id for u in users],)
        ).fetchone()[0]
        if as_of is None:
            raise BadInput("nothing has been ingested yet; give --as-of or run `fitpipe ingest` first")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM fitpipe_adherence(%s::date, %s::real, make_interval(secs => %s::float8), %s::integer, %s::integer) "
            "WHERE user_id = ANY(%s)",
            (
                as_of,
                thresholds.min_wear_share,
                thresholds.max_silence_hours * 3600,
                thresholds.min_nights,
                thresholds.min_sleep_minutes,
                [u.user_id for u in users],
            ),
        )
        return as_of, cur.fetchall()
