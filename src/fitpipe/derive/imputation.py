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
  towards the straight line. Because that reliability can be fooled by slow wandering, the
  shrunk profile, a flat one and the straight line are also tried on the participant's own
  pseudo-gaps, and one of the others replaces the profile if it fills them clearly better
  (fit_profile). Short gaps come out close to linear; long gaps return to the daily rhythm
  (lower at night, higher by day) instead of following a straight line.
- statespace: a structural time-series model fitted by maximum likelihood (fitpipe.derive.statespace).

Every method also gives, per imputed minute, a predictive standard deviation and a way to draw whole
gaps jointly (fitpipe.derive.uncertainty turns them into calibrated intervals and draws): linear is a
Brownian bridge between the edges, profile an AR(1) bridge of the departures from the profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

METHODS = ("profile", "linear", "statespace")
PROFILE_SMOOTHING_MINUTES = 31
MIN_DAYS_FOR_PROFILE = 3
# Bounds on the estimated AR(1) coefficient: below, departures would vanish within minutes;
# above, the bridge is numerically a straight line anyway.
PHI_RANGE = (0.5, 0.9999)
# From here on a gap is treated as a random walk pinned at both ends (a Brownian bridge).
RANDOM_WALK_PHI = 0.999999
# A flat profile or the straight line replaces the profile only when its mean error ratio to the
# profile's, over the pseudo-gap lengths, is below this.
SWITCH_FROM_PROFILE = 0.95


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


def daily_profile(measured: np.ndarray, minute_of_day: np.ndarray, weight: float | None = None) -> np.ndarray:
    """Typical value per local minute-of-day (1,440 values; NaN where too few days were seen),
    shrunk towards the flat mean by `weight` (default: how well it repeats from day to day)."""
    profile = _median_profile(measured, minute_of_day)
    level = np.nanmean(profile) if not np.isnan(profile).all() else np.nan
    if weight is None:
        weight = profile_reliability(measured, minute_of_day)
    return level + weight * (profile - level)


def fit_profile(measured: np.ndarray, minute_of_day: np.ndarray, max_gap: int) -> np.ndarray:
    """[weight, straight]: how far to trust the daily profile, and whether to use the straight line instead.

    The weight is the profile's split-half reliability, but that alone is fooled by slow
    wandering: two weeks of a random walk can give even and odd days similar-looking medians
    (reliability 0.7 in the benchmark) that predict nothing, and the profile then had 1.1-1.3
    times linear's error. So the candidates are put to the test the calibration uses: stretches
    of measured data up to max_gap long are hidden once and filled with the profile at that
    weight, with a flat profile (weight 0) and with the straight line; the one with the smallest
    error, averaged over the gap lengths as ratios (each length counts the same, so the many
    minutes of long gaps do not decide alone), is kept if it beats the profile clearly.
    """
    reliability = profile_reliability(measured, minute_of_day)
    from fitpipe.derive.uncertainty import CALIBRATION_LENGTHS, CALIBRATION_SEED, pseudo_gaps

    lengths = [length for length in CALIBRATION_LENGTHS if length <= max(max_gap, CALIBRATION_LENGTHS[0])]
    hidden = pseudo_gaps(measured, lengths, np.random.default_rng(CALIBRATION_SEED + 1))
    candidates = [np.array([reliability, 0.0]), np.array([0.0, 0.0]), np.array([0.0, 1.0])]
    if not hidden:
        return candidates[0]
    masked = measured.copy()
    for start, end in hidden:
        masked[start:end] = np.nan
    errors = []
    for candidate in candidates:
        mean = predict(masked, minute_of_day, "profile", max_gap, gaps=hidden, fitted=candidate).mean
        by_length: dict[int, list[np.ndarray]] = {}
        for start, end in hidden:
            by_length.setdefault(end - start, []).append(np.abs(measured[start:end] - mean[start:end]))
        errors.append({length: float(np.nanmean(np.concatenate(e))) for length, e in by_length.items()})
    reference = errors[0]
    scores = [np.mean([e[length] / reference[length] for length in reference if reference[length] > 0]) for e in errors]
    best = int(np.argmin(np.nan_to_num(scores, nan=np.inf)))
    # One round of pseudo-gaps holds only a few long ones: the profile gives way only to a clear win.
    return candidates[best] if scores[best] < SWITCH_FROM_PROFILE else candidates[0]


@dataclass
class Prediction:
    """A method's predictive distribution for every minute it imputes.

    mean and sd are NaN where nothing is imputed. sample(rng, draws) returns `draws` joint draws
    (draws x minutes; NaN outside the gaps): within a gap the minutes are drawn together, so the
    draws keep the correlation the model implies between neighbouring minutes.
    """

    mean: np.ndarray
    sd: np.ndarray
    gap_length: np.ndarray
    gaps: list[tuple[int, int]]
    sample: Callable[[np.random.Generator, int], np.ndarray]
    # The model's estimated parameters where fitting is costly (statespace), to reuse on the same data.
    fitted: np.ndarray | None = None


@dataclass(frozen=True)
class _Bridge:
    """One gap as an AR(1) process (a random walk when phi is 1) pinned at both edge minutes."""

    start: int
    end: int
    before: float  # the process at the left edge minute
    after: float  # ... and at the right edge minute
    phi: float
    innovation_var: float
    offset: np.ndarray  # added to the process inside the gap (the profile; zero for linear)

    def _pull(self) -> np.ndarray:
        """c_k = Cov(x_k, x_n | x_0) / Var(x_n | x_0): how much of the miss at the right edge x_k takes."""
        n = self.end - self.start + 1
        k = np.arange(1, n, dtype=float)
        if self.phi >= RANDOM_WALK_PHI:
            return k / n
        return self.phi ** (n - k) * (1 - self.phi ** (2 * k)) / (1 - self.phi ** (2 * n))

    def mean(self) -> np.ndarray:
        n = self.end - self.start + 1
        k = np.arange(1, n, dtype=float)
        if self.phi >= RANDOM_WALK_PHI:
            return self.offset + self.before + (self.after - self.before) * k / n
        return self.offset + ar1_bridge(self.before, self.after, n - 1, self.phi)

    def sd(self) -> np.ndarray:
        n = self.end - self.start + 1
        k = np.arange(1, n, dtype=float)
        if self.phi >= RANDOM_WALK_PHI:
            return np.sqrt(self.innovation_var * k * (n - k) / n)
        unpinned = (1 - self.phi ** (2 * k)) / (1 - self.phi**2)
        at_edge = (1 - self.phi ** (2 * n)) / (1 - self.phi**2)
        return np.sqrt(np.maximum(self.innovation_var * (unpinned - self._pull() ** 2 * at_edge), 0.0))

    def sample(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """Simulate forward from the left edge, then move each path so that it ends at the right
        edge (x | x_0, x_n = x_sim + c (x_n - x_n_sim)): exact for a Gaussian AR(1), O(length)."""
        n = self.end - self.start + 1
        shocks = rng.normal(0.0, np.sqrt(self.innovation_var), size=(draws, n))
        path = np.empty((draws, n))
        state = np.full(draws, self.before, dtype=float)
        phi = min(self.phi, 1.0)
        for step in range(n):
            state = phi * state + shocks[:, step]
            path[:, step] = state
        pinned = path[:, :-1] + self._pull()[None, :] * (self.after - path[:, -1:])
        return self.offset[None, :] + pinned


def _linear_bridges(measured: np.ndarray, gaps: list[tuple[int, int]]) -> list[_Bridge]:
    steps = np.diff(measured)
    variance = float(np.nanmean(steps**2)) if np.isfinite(steps).sum() >= 30 else 1.0
    return [_Bridge(s, e, measured[s - 1], measured[e], 1.0, variance, np.zeros(e - s)) for s, e in gaps]


def _profile_bridges(
    measured: np.ndarray,
    minute_of_day: np.ndarray,
    gaps: list[tuple[int, int]],
    profile: np.ndarray | None,
    weight: float | None,
) -> list[_Bridge]:
    table = profile if profile is not None else daily_profile(measured, minute_of_day, weight)
    typical = table[minute_of_day]
    departure = measured - typical
    phi = ar1_coefficient(departure)
    spread = float(np.nanvar(departure)) if np.isfinite(departure).sum() >= 30 else 1.0
    linear = _linear_bridges(measured, gaps)
    bridges = []
    for (start, end), straight in zip(gaps, linear, strict=True):
        left, right = start - 1, end
        if np.isnan(typical[left : right + 1]).any():
            # Too few days seen at these minutes of the day for a profile: fall back to the line.
            bridges.append(straight)
        else:
            innovation = spread * (1 - phi**2) if phi < RANDOM_WALK_PHI else spread * 1e-4
            bridges.append(_Bridge(start, end, departure[left], departure[right], phi, innovation, typical[start:end]))
    return bridges


def predict(
    measured: np.ndarray,
    minute_of_day: np.ndarray,
    method: str,
    max_gap: int,
    profile: np.ndarray | None = None,
    gaps: list[tuple[int, int]] | None = None,
    fitted: np.ndarray | None = None,
) -> Prediction:
    """The predictive mean, sd and joint draws of every gap of up to max_gap minutes (or of `gaps`).

    `measured` is a contiguous 1-minute series with NaN for missing minutes; `minute_of_day`
    gives each minute's local minute-of-day (0..1439) for the daily cycle. `fitted`: parameters
    estimated earlier on (nearly) the same series (statespace: the model's; profile: [weight]),
    returned in Prediction.fitted so that the calibration rounds reuse them.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    chosen = find_gaps(measured, max_gap) if gaps is None else gaps
    if method == "statespace":
        from fitpipe.derive.statespace import predict_statespace

        return predict_statespace(measured, minute_of_day, chosen, fitted)
    n = len(measured)
    mean, sd = np.full(n, np.nan), np.full(n, np.nan)
    gap_length = np.zeros(n, dtype=np.int32)
    if method == "linear":
        bridges = _linear_bridges(measured, chosen)
    else:
        if fitted is None and profile is None and chosen:
            longest = max(max_gap, max(end - start for start, end in chosen))
            fitted = fit_profile(measured, minute_of_day, longest)
        if fitted is not None and fitted[1] > 0:
            bridges = _linear_bridges(measured, chosen)
        else:
            weight = None if fitted is None else float(fitted[0])
            bridges = _profile_bridges(measured, minute_of_day, chosen, profile, weight) if chosen else []
    for bridge in bridges:
        mean[bridge.start : bridge.end] = bridge.mean()
        sd[bridge.start : bridge.end] = bridge.sd()
        gap_length[bridge.start : bridge.end] = bridge.end - bridge.start

    def sample(rng: np.random.Generator, draws: int) -> np.ndarray:
        out = np.full((draws, n), np.nan)
        for bridge in bridges:
            out[:, bridge.start : bridge.end] = bridge.sample(rng, draws)
        return out

    return Prediction(mean, sd, gap_length, list(chosen), sample, fitted if method == "profile" else None)


def fill(
    measured: np.ndarray, minute_of_day: np.ndarray, method: str, max_gap: int, profile: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Imputed values (NaN where not imputed) and the gap length of each imputed minute."""
    prediction = predict(measured, minute_of_day, method, max_gap, profile)
    return prediction.mean, prediction.gap_length


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
