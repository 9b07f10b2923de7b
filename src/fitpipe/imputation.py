"""Gap filling on a 1-minute grid: pure functions, no database.

A gap is a run of minutes without a measurement that has a measured minute on both sides.
Leading and trailing gaps, and gaps longer than the limit, stay empty: there is nothing
trustworthy to anchor them to.

Methods:
- linear: the straight line between the two edge minutes, on bucket start times. It is what
  TimescaleDB's interpolate() gives for time_bucket_gapfill buckets, and the reference.
- profile (default): the participant's own typical day (the median of each local minute-of-day
  over the other days, smoothed over +-15 minutes) shifted to meet the gap's edges: the
  difference between measured and typical at each edge is interpolated across the gap and added
  to the typical values. Short gaps behave like linear; long gaps follow the daily rhythm
  (lower at night, higher by day) instead of a straight line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("profile", "linear")
PROFILE_SMOOTHING_MINUTES = 31
MIN_DAYS_FOR_PROFILE = 3


def find_gaps(measured: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of interior NaN runs no longer than max_gap."""
    missing = np.isnan(measured)
    if not missing.any() or missing.all():
        return []
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends) if s > 0 and e < len(measured) and e - s <= max_gap]


def daily_profile(measured: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    """Typical value per local minute-of-day (1,440 values; NaN where too few days were seen)."""
    frame = pd.DataFrame({"minute": minute_of_day, "value": measured}).dropna()
    grouped = frame.groupby("minute")["value"]
    median = grouped.median().reindex(range(1440))
    seen = grouped.count().reindex(range(1440)).fillna(0)
    median[seen < MIN_DAYS_FOR_PROFILE] = np.nan
    # Circular smoothing: minute 0 neighbours minute 1439.
    half = PROFILE_SMOOTHING_MINUTES // 2
    wrapped = pd.concat([median.iloc[-half:], median, median.iloc[:half]])
    smooth = wrapped.rolling(PROFILE_SMOOTHING_MINUTES, center=True, min_periods=PROFILE_SMOOTHING_MINUTES // 2).mean()
    return smooth.iloc[half:half + 1440].to_numpy()


def fill(measured: np.ndarray, minute_of_day: np.ndarray, method: str, max_gap: int,
         profile: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Imputed values (NaN where not imputed) and the gap length of each imputed minute.

    `measured` is a contiguous 1-minute series with NaN for missing minutes; `minute_of_day`
    gives each minute's local minute-of-day (0..1439) for the profile.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    imputed = np.full(len(measured), np.nan)
    gap_length = np.zeros(len(measured), dtype=np.int32)
    gaps = find_gaps(measured, max_gap)
    if not gaps:
        return imputed, gap_length
    typical = None
    if method == "profile":
        table = profile if profile is not None else daily_profile(measured, minute_of_day)
        typical = table[minute_of_day]
    for start, end in gaps:
        left, right = start - 1, end
        span = right - left
        weight = (np.arange(start, end) - left) / span
        if typical is None or np.isnan(typical[[left, right]]).any() or np.isnan(typical[start:end]).any():
            values = measured[left] + (measured[right] - measured[left]) * weight
        else:
            residual_left = measured[left] - typical[left]
            residual_right = measured[right] - typical[right]
            values = typical[start:end] + residual_left + (residual_right - residual_left) * weight
        imputed[start:end] = values
        gap_length[start:end] = end - start
    return imputed, gap_length
