"""Gap filling on a 1-minute grid: pure functions, no database.

A gap is a run of minutes without a measurement that has a measured minute on both sides.
Leading and trailing gaps, and gaps longer than the limit, stay empty: there is nothing
trustworthy to anchor them to.

Methods:
- linear: the straight line between the two edge minutes, on bucket start times. It is what
  TimescaleDB's interpolate() gives for time_bucket_gapfill buckets, and the reference.
- profile (default): the participant's own typical day (the median of each local minute-of-day
  over the other days, smoothed over +-15 minutes) plus the departure from it seen at the gap's
  edges, faded into the gap as an AR(1) process would (the conditional mean of an AR(1) bridge,
  with the coefficient estimated from the participant's own minute-to-minute departures). The
  profile is trusted only as far as it repeats from day to day: it is shrunk towards the flat
  mean by its split-half reliability (the correlation between the profiles of even and odd
  days), so data without a daily rhythm gets a nearly flat profile and the method falls back
  towards the straight line. Short gaps come out close to linear; long gaps return to the daily
  rhythm (lower at night, higher by day) instead of following a straight line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("profile", "linear")
PROFILE_SMOOTHING_MINUTES = 31
MIN_DAYS_FOR_PROFILE = 3
# Bounds on the estimated AR(1) coefficient: below, departures would vanish within minutes;
# above, the bridge is numerically a straight line anyway.
PHI_RANGE = (0.5, 0.9999)


def find_gaps(measured: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of interior NaN runs no longer than max_gap."""
    missing = np.isnan(measured)
    if not missing.any() or missing.all():
        return []
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (int(s), int(e)) for s, e in zip(starts, ends, strict=True) if s > 0 and e < len(measured) and e - s <= max_gap
    ]


def _median_profile(measured: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"minute": minute_of_day, "value": measured}).dropna()
    grouped = frame.groupby("minute")["value"]
    median = grouped.median().reindex(range(1440))
    seen = grouped.count().reindex(range(1440)).fillna(0)
    median[seen < MIN_DAYS_FOR_PROFILE] = np.nan
    # Circular smoothing: minute 0 neighbours minute 1439.
    half = PROFILE_SMOOTHING_MINUTES // 2
    wrapped = pd.concat([median.iloc[-half:], median, median.iloc[:half]])
    smooth = wrapped.rolling(PROFILE_SMOOTHING_MINUTES, center=True, min_periods=PROFILE_SMOOTHING_MINUTES // 2).mean()
    return smooth.iloc[half : half + 1440].to_numpy()


def profile_reliability(measured: np.ndarray, minute_of_day: np.ndarray) -> float:
    """Split-half reliability of the daily profile, 0..1 (Spearman-Brown of the even/odd correlation)."""
    day = np.arange(len(measured)) // 1440
    halves = []
    for parity in (0, 1):
        only = np.where(day % 2 == parity, measured, np.nan)
        halves.append(_median_profile(only, minute_of_day))
    both = ~np.isnan(halves[0]) & ~np.isnan(halves[1])
    if both.sum() < 60 or np.std(halves[0][both]) == 0 or np.std(halves[1][both]) == 0:
        return 0.0
    r = float(np.corrcoef(halves[0][both], halves[1][both])[0, 1])
    return max(0.0, 2 * r / (1 + r)) if r > 0 else 0.0


def daily_profile(measured: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    """Typical value per local minute-of-day (1,440 values; NaN where too few days were seen),
    shrunk towards the flat mean by how well it repeats from day to day."""
    profile = _median_profile(measured, minute_of_day)
    level = np.nanmean(profile) if not np.isnan(profile).all() else np.nan
    return level + profile_reliability(measured, minute_of_day) * (profile - level)


def fill(
    measured: np.ndarray, minute_of_day: np.ndarray, method: str, max_gap: int, profile: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
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
    if method == "linear":
        for start, end in gaps:
            left, right = start - 1, end
            weight = (np.arange(start, end) - left) / (right - left)
            imputed[start:end] = measured[left] + (measured[right] - measured[left]) * weight
            gap_length[start:end] = end - start
        return imputed, gap_length
    table = profile if profile is not None else daily_profile(measured, minute_of_day)
    typical = table[minute_of_day]
    departure = measured - typical
    phi = ar1_coefficient(departure)
    for start, end in gaps:
        left, right = start - 1, end
        if np.isnan(typical[left : right + 1]).any():
            # Too few days seen at these minutes of the day for a profile: fall back to the line.
            weight = (np.arange(start, end) - left) / (right - left)
            imputed[start:end] = measured[left] + (measured[right] - measured[left]) * weight
        else:
            bridge = ar1_bridge(departure[left], departure[right], end - start, phi)
            imputed[start:end] = typical[start:end] + bridge
        gap_length[start:end] = end - start
    return imputed, gap_length


def ar1_coefficient(departure: np.ndarray) -> float:
    """Lag-1 autocorrelation of the departures over consecutive measured minutes."""
    pairs = ~np.isnan(departure[:-1]) & ~np.isnan(departure[1:])
    if pairs.sum() < 30:
        return PHI_RANGE[1]
    x, y = departure[:-1][pairs], departure[1:][pairs]
    x, y = x - x.mean(), y - y.mean()
    denominator = float((x * x).sum())
    phi = float((x * y).sum()) / denominator if denominator else PHI_RANGE[1]
    return min(max(phi, PHI_RANGE[0]), PHI_RANGE[1])


def ar1_bridge(before: float, after: float, length: int, phi: float) -> np.ndarray:
    """E[x_a | x_0 = before, x_n = after] for a zero-mean AR(1), a = 1..length, n = length + 1."""
    n = length + 1
    a = np.arange(1, n, dtype=float)
    denominator = 1 - phi ** (2 * n)
    return (before * (phi**a - phi ** (2 * n - a)) + after * (phi ** (n - a) - phi ** (n + a))) / denominator
