"""Fitbit-style devices report local "floating" times. This is the one place they become instants.

Rules, applied by `local_to_utc`:
- A local time that does not exist (the hour skipped when clocks go forward) becomes NaT for
  samples: it cannot be a real reading, and mapping it onto the next hour would collide with
  the real readings there. The parser quarantines those records.
- A local time that exists twice (the hour repeated when clocks go back) maps to its first
  occurrence (daylight time). When the same wall time appears again later in the same
  series, that second occurrence maps to the second instant (standard time). So the mapping
  is deterministic and a device that really reports the repeated hour keeps both copies.
- Boundaries (midnight, noon) go through `local_instant`: a day that starts in a gap starts at
  the first instant that exists, the transition itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fitpipe.errors import BadInput

if TYPE_CHECKING:
    import numpy as np

# What local_to_utc makes of a wall time that does not exist (a DST gap), as pandas names it.
Nonexistent = Literal["shift_forward", "shift_backward", "NaT", "raise"]


# The longest IANA name is 32 characters; anything much longer is not a zone, and echoing it
# back whole would flood the terminal.
_MAX_ZONE_NAME = 64
# Present in the tz database files but not zones a participant lives in: their meaning depends
# on each host's configuration (localtime, posixrules) or is a placeholder (Factory).
_HOST_DEPENDENT_ZONES = frozenset({"localtime", "posixrules", "Factory", "posix/localtime", "right/localtime"})


def _unknown(name: str) -> BadInput:
    shown = name if len(name) <= _MAX_ZONE_NAME else name[:_MAX_ZONE_NAME] + "..."
    return BadInput(f"unknown timezone {shown!r}; use an IANA name such as Europe/Berlin")


def validate_timezone(name: str) -> str:
    """Return the IANA zone name, or raise BadInput for an unknown one."""
    if len(name) > _MAX_ZONE_NAME:
        raise _unknown(name)  # before the cache, so it never holds huge keys
    return _validate_zone_name(name)


@functools.cache
def _validate_zone_name(name: str) -> str:
    if not name or name.startswith(("/", ".")) or ".." in name or name in _HOST_DEPENDENT_ZONES:
        raise _unknown(name)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _unknown(name) from None
    if name not in available_timezones() and name != "UTC":
        raise _unknown(name)
    return name


def local_to_utc(local: np.ndarray, timezone: str, *, nonexistent: Nonexistent = "NaT") -> np.ndarray:
    """Map naive local datetime64 values to naive UTC datetime64[us] values (see module rules)."""
    import numpy as np
    import pandas as pd

    index = pd.DatetimeIndex(np.asarray(local, dtype="datetime64[us]"))
    if timezone == "UTC":
        return index.to_numpy(dtype="datetime64[us]")
    # Which occurrence of its wall time each value is: 0 for the first, 1 for a repeat.
    occurrence = pd.Series(index).groupby(index).cumcount().to_numpy()
    aware = index.tz_localize(timezone, ambiguous=occurrence == 0, nonexistent=nonexistent)
    return aware.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[us]")


def local_instant(day: dt.date, hour: int, timezone: str) -> dt.datetime:
    """The aware UTC instant of `hour`:00 local on `day`, by the module's boundary rules.

    The scalar twin of `local_to_utc(..., nonexistent="shift_forward")`, written with zoneinfo
    alone so that commands which only need day boundaries (export, rollups) do not pay for
    importing pandas; tests/test_timezones.py checks that the two agree hour by hour.
    """
    zone = ZoneInfo(timezone)
    wall = dt.datetime(day.year, day.month, day.day, hour)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists; for a repeated time fold=0 is the first occurrence
    # In a gap: the day starts at the first instant that exists, the transition itself. It lies
    # between the two readings of the wall time (fold=1 uses the later offset).
    low = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def aware_utc(value: np.datetime64) -> dt.datetime:
    """A naive-UTC numpy datetime64 as an aware datetime, for SQL parameters."""
    return value.astype("datetime64[us]").item().replace(tzinfo=dt.UTC)


ENV_TODAY = "FITPIPE_TODAY"


def simulated_today() -> dt.date | None:
    """FITPIPE_TODAY=YYYY-MM-DD makes every participant's today that day, at local midnight:
    for simulations of nightly runs (tests, the demo), never needed in production."""
    value = os.environ.get(ENV_TODAY)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{ENV_TODAY} must be a date like 2024-01-31, got {value!r}") from None


def today_in(timezone: str) -> dt.date:
    return simulated_today() or dt.datetime.now(ZoneInfo(timezone)).date()


def now_in(timezone: str) -> dt.datetime:
    """The current instant (aware UTC); under FITPIPE_TODAY, that day's local midnight."""
    simulated = simulated_today()
    return local_instant(simulated, 0, timezone) if simulated else dt.datetime.now(dt.UTC)
