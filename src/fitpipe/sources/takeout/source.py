"""The Takeout source: a participant's own Google Takeout archive, brought in with `fitpipe import`.

Its credential is a file. `fitpipe import` indexes the archive once and stages its records per
local day (fitpipe.sources.takeout); this source hands one staged day to the loader, so each day
goes through the same per-day transaction as `ingest`. The participant's settings record the
last archive imported (path, sha256, layout, time-zone assumptions); the full record of every
archive is in takeout_imports.

Nightly `ingest` for a participant enrolled with this source has nothing to fetch until a newer
archive is imported: such a day is deferred, and `status` says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from psycopg.rows import dict_row

from fitpipe.sources.contract import Fetch, RetryLater, Source

if TYPE_CHECKING:
    import psycopg

    from fitpipe.ingest.validate import Parser
    from fitpipe.participants import User as Participant
    from fitpipe.sources.takeout.index import Stage

NOT_IMPORTED = "not in any imported Takeout archive yet; import a newer archive with `fitpipe import`"


@dataclass(frozen=True)
class TakeoutSettings:
    """Nothing to set by hand: `fitpipe import` records the last archive here (path, sha256,
    layout, days, time-zone assumptions)."""

    archive: dict | None = None


class TakeoutSource(Source):
    name = "takeout"
    credential_kind = "file"
    # An archive is what it is: a day in it is settled once it is over. A newer archive still
    # replaces it (imports never skip settled days).
    settle_days = 0
    settings = TakeoutSettings
    commands: ClassVar[Mapping[str, str]] = {"import": "fitpipe.sources.takeout.cli:import_archive"}
    produces = (
        "heart_rate",
        "heart_rate_confidence",
        "spo2",
        "hrv_intraday",
        "hrv_daily",
        "breathing_rate",
        "heart_rate_daily",
        "sleep_sessions",
        "sleep_stages",
        "active_zone_minutes",
        "daily_activity",
        "data_sources",
    )

    @classmethod
    def parsers(cls) -> Sequence[Parser]:
        from fitpipe.sources.takeout.parse import PARSERS

        return PARSERS

    @classmethod
    def status_sections(cls, conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[str, list[dict]]:
        return {"imports": imports_of(conn, user_ids)}

    @classmethod
    def status_lines(cls, report: Mapping[str, Any]) -> list[str]:
        """Each participant's Takeout imports, newest first, with the clock each file family was read in
        and their time-zone assumptions."""
        from rich.markup import escape

        lines = []
        for i in report.get("imports", []):
            lines.append(
                f"user {i['user_id']} Takeout import {i['import_id']} ({i['status']}): {i['layout']}, sha256 "
                f"{i['sha256'][:12]}, {i['first_day']} .. {i['last_day']}, {i['rows']:,} rows, run {i['run_id']}, "
                f"{i['imported_at']:%Y-%m-%d %H:%M %Z}"
            )
            for family, clock in (i.get("clocks") or {}).items():
                lines.append(f"  clock of {escape(family)}: {clock['clock']} (by {clock['by']})")
            for assumption in i["assumptions"]:
                lines.append(f"  assumption: {escape(assumption)}")
        return lines

    @classmethod
    def forget(cls, user_id: int) -> None:
        """A withdrawn participant's staged days go, a running or crashed import's included."""
        from fitpipe.sources.takeout.staging import remove_stage_dirs_of

        remove_stage_dirs_of(user_id)

    def __init__(self, stage: Stage | None = None):
        # Only `fitpipe import` makes a source with a stage, for its own run's tasks: the folder
        # never comes from the database, so no stored setting can point the loader at files.
        self.stage = stage

    def fetch_day(self, participant: Participant, day: dt.date, fetch: Fetch) -> dict[str, Any]:
        if self.stage is None:
            raise RetryLater(NOT_IMPORTED, after=dt.timedelta(days=1))
        return {"items": self.stage.read(day)}


def imports_of(conn: psycopg.Connection, user_ids: Sequence[int]) -> list[dict]:
    """The Takeout archives imported for these participants (fitpipe import), newest first, with
    the time-zone assumptions each import made."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT import_id, user_id, status, layout, sha256, path, first_day, last_day, assumptions, clocks, run_id,
                   imported_at, (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(rows_by_metric)) AS rows
            FROM takeout_imports WHERE user_id = ANY(%s) ORDER BY user_id, import_id DESC
            """,
            (list(user_ids),),
        )
        return [{**row, "rows": int(row["rows"])} for row in cur.fetchall()]
