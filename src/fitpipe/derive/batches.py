"""How a rebuild cuts its work into statements of bounded size: runs of consecutive days in one
zone, and the batch's bounds as plain values. Shared by the rollups and wear_days."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fitpipe.participants import User

# Longest stretch rebuilt in one statement, to keep each statement's sort and WAL modest.
MAX_DAYS_PER_STATEMENT = 31
# Bounds of the whole batch as plain values, so the planner excludes chunks outside them.
BATCH_BOUNDS = "{col} >= %(batch_lo)s AND {col} < %(batch_hi)s"


def day_runs(days: set[dt.date], user: User) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days in one zone grouped into [first, last] runs of at most MAX_DAYS_PER_STATEMENT days."""
    runs: list[list[dt.date]] = []
    for day in sorted(days):
        if (
            runs
            and day - runs[-1][1] == dt.timedelta(days=1)
            and (day - runs[-1][0]).days < MAX_DAYS_PER_STATEMENT
            and user.zone_on(day) == user.zone_on(runs[-1][0])
        ):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [(a, b) for a, b in runs]
