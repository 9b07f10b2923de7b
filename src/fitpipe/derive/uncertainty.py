"""Calibrated 90% predictive intervals and joint draws for imputed minutes: pure functions, no database.

A method's own predictive sd is only as good as its model, and heart rate is not Gaussian (activity
bursts, sleep transitions). So the interval is the method's mean +- k(L) * its sd, with the factor k
for a gap of length L measured on the participant's own data: stretches of measured minutes are
hidden (pseudo-gaps of several lengths, in a few rounds so that no round hides more than a quarter
of the data), filled by the same method from what is left, and k(L) is the 90% quantile of
|true - mean| / sd over the hidden minutes of gaps of that length (interpolated on log L between
the lengths tried). This is split-conformal calibration of the standardised residual, done per gap
length because a model's variance is often right for short gaps and wrong for long ones.

Draws (DRAW_KINDS). "residual", the default: each gap's draw is the standardised error path of one
of the participant's own pseudo-gaps of about the same length (a block bootstrap of whole gaps,
chosen at random, possibly reversed in time), stretched to the gap's length and rescaled to its
calibrated interval. The error paths are what the method really got wrong on that participant's
data, so a draw keeps the within-gap correlation, the skew and the activity bursts a Gaussian
cannot carry. "model": the method's joint predictive distribution (bridges or the simulation
smoother), standardised, mixed with one shift common to the gap, and rescaled the same way; it
is also what a gap gets when too few pseudo-gaps were scored near its length. Either way
draw = value + (upper - lower) / (2 * z_0.95) * standardised path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitpipe.derive.imputation import Prediction, fit_profile, predict

LEVEL = 0.90
Z_95 = 1.6448536269514722  # standard normal 95% quantile: a central 90% interval is +-Z_95 sd
CALIBRATION_LENGTHS = (2, 5, 15, 30, 60, 120, 240, 480, 960, 1440)
# More rounds mean more pseudo-gaps of the long lengths (each round hides at most a quarter of the
# data), which steadies their factor: at 6 rounds, k(2 h) of one participant varied by +-15%
# between benchmark batches, at 12 by +-10%.
CALIBRATION_ROUNDS = 12
STATESPACE_ROUNDS = 3  # each is a Kalman smoother pass over the whole series
NEIGHBOUR_WEIGHT = 0.5
MAX_HIDDEN_SHARE = 0.25  # of the measured minutes, per round
MAX_GAPS_PER_LENGTH = 40  # per round
MIN_GAPS_PER_LENGTH = 4  # per round, where they fit
MIN_HIDDEN_MINUTES = 30  # a length with fewer scored minutes borrows its neighbours' factor
# A measured stretch counts as a pseudo-gap when this share of its minutes is measured (real
# series have partial minutes and short dropouts); only measured minutes are scored.
MIN_MEASURED_SHARE = 0.8
MIN_GAPS_FOR_COMMON = 6
MAX_COMMON = 0.95
CALIBRATION_DRAWS = 12  # model draws per round, for the model's spread of a gap's mean
STATESPACE_CALIBRATION_DRAWS = 4  # each is a simulation-smoother pass; averaged over many gaps
CALIBRATION_SEED = 24  # fixed: re-running impute on the same data gives the same intervals
DRAW_KINDS = ("residual", "model")
MIN_PATHS = 12  # pseudo-gap error paths a gap's bootstrap needs (pooled over the nearest lengths)


PathOfLength = tuple[np.ndarray, float]  # a standardised error path and the factor k of its length


@dataclass
class Calibration:
    lengths: np.ndarray  # gap lengths tried (minutes)
    factors: np.ndarray  # k per length (NaN where too few minutes were scored)
    gaps: np.ndarray  # pseudo-gaps scored per length
    minutes: np.ndarray  # minutes scored per length
    # Share of each standardised draw that is one shift common to the whole gap, per length (see
    # _common_shares): what makes the spread of a gap's mean in the draws match the held-out gaps.
    common: np.ndarray
    # Standardised error paths (true - mean) / sd of the scored pseudo-gaps, per length; minutes
    # without a measurement are interpolated from their neighbours in the path.
    paths: list[list[np.ndarray]]

    def path_pool(self, gap_length: int) -> list[PathOfLength]:
        """(path, k of its length) from the lengths nearest gap_length on log scale, until MIN_PATHS."""
        pool: list[PathOfLength] = []
        order = np.argsort(np.abs(np.log(self.lengths) - np.log(max(gap_length, 1))), kind="stable")
        for i in order:
            if len(pool) >= MIN_PATHS:
                break
            if np.isfinite(self.factors[i]) and self.factors[i] > 0:
                pool += [(path, float(self.factors[i])) for path in self.paths[i]]
        return pool

    def common_share(self, gap_length: np.ndarray) -> np.ndarray:
        known = np.isfinite(self.common)
        if not known.any():
            return np.zeros(np.shape(gap_length))
        return np.interp(np.log(np.maximum(gap_length, 1)), np.log(self.lengths[known]), self.common[known])

    def factor(self, gap_length: np.ndarray) -> np.ndarray:
        known = np.isfinite(self.factors)
        if not known.any():
            # Nothing to calibrate on (a very short series): the model's own Gaussian interval.
            return np.full(np.shape(gap_length), Z_95)
        return np.interp(np.log(np.maximum(gap_length, 1)), np.log(self.lengths[known]), self.factors[known])


@dataclass
class Imputed:
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gap_length: np.ndarray
    prediction: Prediction
    calibration: Calibration

    def draws(self, rng: np.random.Generator, count: int, kind: str = "residual") -> np.ndarray:
        """count complete copies of the imputed minutes (count x minutes, NaN where not imputed)."""
        return rescaled_draws(self.prediction, self.value, self.lower, self.upper, rng, count, self.calibration, kind)


def standardised_draws(prediction: Prediction, rng: np.random.Generator, count: int) -> np.ndarray:
    """Model draws minus the model mean, over the model sd: unit variance, the model's correlation."""
    raw = prediction.sample(rng, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (raw - prediction.mean[None, :]) / np.where(prediction.sd > 0, prediction.sd, np.inf)[None, :]


def rescaled_draws(
    prediction: Prediction,
    value: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    rng: np.random.Generator,
    count: int,
    calibration: Calibration | None = None,
    kind: str = "residual",
) -> np.ndarray:
    """Joint draws of every gap, centred on `value` and scaled to the calibrated interval minute by minute.

    kind "residual" bootstraps the calibration's pseudo-gap error paths (gaps with too few paths
    near their length, and every gap without a calibration, get model draws). kind "model": the
    method's standardised joint draws; with a calibration each gap's draw is mixed with one N(0, 1)
    shift common to the gap, sqrt(1 - c) * model + sqrt(c) * shift, which keeps every minute's
    variance and raises the correlation within the gap to what the pseudo-gaps showed."""
    if kind not in DRAW_KINDS:
        raise ValueError(f"unknown kind of draws {kind!r}")
    standard = np.full((count, len(value)), np.nan)
    modelled = []
    for start, end in prediction.gaps:
        pool = calibration.path_pool(end - start) if calibration is not None and kind == "residual" else []
        if len(pool) >= MIN_PATHS:
            standard[:, start:end] = _bootstrapped(pool, end - start, rng, count)
        else:
            modelled.append((start, end))
    if modelled:
        model = standardised_draws(prediction, rng, count)
        for start, end in modelled:
            share = float(calibration.common_share(np.array([end - start]))[0]) if calibration is not None else 0.0
            if share > 0:
                shift = rng.normal(size=(count, 1))
                model[:, start:end] = np.sqrt(1 - share) * model[:, start:end] + np.sqrt(share) * shift
            standard[:, start:end] = model[:, start:end]
    half_width = (upper - lower) / 2
    return value[None, :] + standard * (half_width / Z_95)[None, :]


def _bootstrapped(pool: list[PathOfLength], length: int, rng: np.random.Generator, count: int) -> np.ndarray:
    """count paths for a gap of `length` minutes, each one pseudo-gap's error path on the draws' scale.

    A path of another length is stretched to this one by relative position (minute i of the gap
    takes the path's minute at the same fraction of its length), so the bridge shape (small near
    the measured edges, largest inside) is kept; reversing time is as plausible as the path itself.
    Dividing by its length's k and multiplying by Z_95 puts the path's 90% range at +-Z_95, the
    scale of a standard normal draw, which the caller turns into the gap's calibrated interval."""
    out = np.empty((count, length))
    # Stratified by the path's mean error (what an aggregate over the gap sees): the pool sorted by
    # it, cut into `count` equally likely strata, one path drawn from each, the strata dealt to the
    # draws in random order. Each draw is still a uniform pick from the pool, but a few draws
    # cover the tails in proportion: with iid picks, 20 draws from a pool whose tail is a few
    # burst paths often miss it, the between-draw variance comes out too small and Rubin's
    # interval too short.
    by_mean = np.argsort([path.mean() for path, _ in pool], kind="stable")
    strata = (rng.permutation(count) + rng.random(count)) / count
    chosen = by_mean[np.minimum((strata * len(pool)).astype(int), len(pool) - 1)]
    reverse = rng.random(count) < 0.5
    for d in range(count):
        path, k = pool[chosen[d]]
        if reverse[d]:
            path = path[::-1]
        at = ((np.arange(length) + 0.5) * len(path) / length).astype(int)
        out[d] = path[np.minimum(at, len(path) - 1)] * Z_95 / k
    return out


def _measured_prefix(measured: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.isfinite(measured))])


def pseudo_gaps(measured: np.ndarray, lengths: list[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """Non-overlapping stretches to hide, of each length, whose edge minutes are measured."""
    n = len(measured)
    finite = np.isfinite(measured)
    prefix = _measured_prefix(measured)
    taken = np.zeros(n, dtype=bool)
    budget = MAX_HIDDEN_SHARE * finite.sum() / max(len(lengths), 1)
    chosen: list[tuple[int, int]] = []
    for length in sorted(lengths, reverse=True):  # the long ones are the hardest to place
        if length + 2 > n:
            continue
        starts = np.arange(1, n - length)
        ok = finite[starts - 1] & finite[starts + length]
        ok &= (prefix[starts + length] - prefix[starts]) >= MIN_MEASURED_SHARE * length
        candidates = rng.permutation(starts[ok])
        wanted = int(min(MAX_GAPS_PER_LENGTH, max(MIN_GAPS_PER_LENGTH, budget // length)))
        placed = 0
        margin = max(length // 2, 1)
        for start in candidates:
            if placed >= wanted:
                break
            lo, hi = max(start - 1 - margin, 0), min(start + length + 1 + margin, n)
            if taken[lo:hi].any():
                continue
            taken[lo:hi] = True
            chosen.append((int(start), int(start + length)))
            placed += 1
    return sorted(chosen)


def calibrate(
    measured: np.ndarray,
    minute_of_day: np.ndarray,
    method: str,
    max_gap: int,
    rounds: int | None = None,
    fitted: np.ndarray | None = None,
) -> Calibration:
    """fitted: the method's parameters from the full series (statespace: the model's; profile: the
    profile's weight and whether the line replaces it), kept fixed across rounds: re-estimating
    them per round would multiply the cost for a negligible change."""
    if rounds is None:
        rounds = STATESPACE_ROUNDS if method == "statespace" else CALIBRATION_ROUNDS
    if method == "statespace" and fitted is None:
        from fitpipe.derive.statespace import fit_for

        fitted = fit_for(measured, minute_of_day)
    if method == "profile" and fitted is None:
        fitted = fit_profile(measured, minute_of_day, max_gap)
    lengths = [length for length in CALIBRATION_LENGTHS if length <= max_gap]
    if not lengths or lengths[-1] < max_gap:
        lengths += [length for length in CALIBRATION_LENGTHS if length > max_gap][:1]
    rng = np.random.default_rng(CALIBRATION_SEED)
    scores: dict[int, list[np.ndarray]] = {length: [] for length in lengths}
    signed: dict[int, list[np.ndarray]] = {length: [] for length in lengths}
    model_mean_var: dict[int, list[float]] = {length: [] for length in lengths}
    counts = dict.fromkeys(lengths, 0)
    paths: dict[int, list[np.ndarray]] = {length: [] for length in lengths}
    for _ in range(rounds):
        hidden = pseudo_gaps(measured, lengths, rng)
        if not hidden:
            break
        masked = measured.copy()
        for start, end in hidden:
            masked[start:end] = np.nan
        prediction = predict(masked, minute_of_day, method, max_gap=max(lengths), gaps=hidden, fitted=fitted)
        model = standardised_draws(
            prediction, rng, STATESPACE_CALIBRATION_DRAWS if method == "statespace" else CALIBRATION_DRAWS
        )
        for start, end in hidden:
            truth = measured[start:end]
            sd = prediction.sd[start:end]
            keep = np.isfinite(truth) & (sd > 0)
            z = (truth[keep] - prediction.mean[start:end][keep]) / sd[keep]
            scores[end - start].append(np.abs(z))
            if keep.any():
                signed[end - start].append(z)
                paths[end - start].append(_whole_path(keep, z))
                model_mean_var[end - start].append(float(np.var(model[:, start:end][:, keep].mean(axis=1))))
            counts[end - start] += 1
    pooled = [np.concatenate(scores[length]) if scores[length] else np.empty(0) for length in lengths]
    factors = [_smoothed_quantile(pooled, i) for i in range(len(lengths))]
    # Like the factors, each length borrows from its neighbours: a gap-mean quantile from a few
    # dozen gaps is noisy, and the share changes slowly with log length.
    common = []
    for i in range(len(lengths)):
        near = [lengths[j] for j in (i - 1, i, i + 1) if 0 <= j < len(lengths) and np.isfinite(factors[j])]
        common.append(
            _common_share(
                [z * factors[i] / factors[lengths.index(n)] for n in near for z in signed[n]],
                [v for n in near for v in model_mean_var[n]],
                factors[i],
            )
        )
    return Calibration(
        np.array(lengths, dtype=float),
        np.array(factors),
        np.array([counts[length] for length in lengths]),
        np.array([sum(len(z) for z in scores[length]) for length in lengths]),
        np.array(common),
        [paths[length] for length in lengths],
    )


def _whole_path(scored: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The error path over every minute of a pseudo-gap: the scored minutes' z, the others interpolated."""
    where = np.flatnonzero(scored)
    return np.interp(np.arange(len(scored)), where, z)


def _common_share(signed: list[np.ndarray], model_mean_var: list[float], k: float) -> float:
    """How much of a gap's error is one shift of the whole gap, beyond what the model's draws have.

    On the scale of the draws (a minute's standardised error times Z_95 / k has the spread of a
    standardised draw), the held-out gaps give the LEVEL quantile q of |mean error over the gap|
    and the model's draws give m = E[var(mean of a draw over the gap)]. Mixing a common N(0, 1)
    shift with share c into unit-variance draws gives the gap mean a variance of (1 - c) m + c, so
    its central LEVEL interval is +-Z_95 sqrt((1 - c) m + c); matching q gives
    c = ((q / Z_95)^2 - m) / (1 - m), kept within [0, MAX_COMMON]. Matching the quantile rather
    than the variance keeps a few gaps with activity bursts from setting the spread of all."""
    if len(signed) < MIN_GAPS_FOR_COMMON or not np.isfinite(k) or k <= 0:
        return np.nan
    q = float(np.quantile([abs(z.mean() * Z_95 / k) for z in signed], LEVEL))
    model = float(np.mean(model_mean_var))
    if model >= 1:
        return 0.0
    return float(np.clip(((q / Z_95) ** 2 - model) / (1 - model), 0.0, MAX_COMMON))


def _smoothed_quantile(pooled: list[np.ndarray], i: int) -> float:
    """The LEVEL quantile of length i's scores, borrowing from the lengths either side at half weight.

    Long pseudo-gaps are few, and one activity burst more or less moves their own quantile a lot;
    the factor changes slowly with log length, so the neighbours steady it."""
    if len(pooled[i]) < MIN_HIDDEN_MINUTES:
        return np.nan
    values, weights = [], []
    for j, share in ((i - 1, NEIGHBOUR_WEIGHT), (i, 1.0), (i + 1, NEIGHBOUR_WEIGHT)):
        if 0 <= j < len(pooled) and len(pooled[j]):
            values.append(pooled[j])
            weights.append(np.full(len(pooled[j]), share / len(pooled[j])))
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v)
    cumulative = np.cumsum(w[order]) / w.sum()
    return float(v[order][min(int(np.searchsorted(cumulative, LEVEL)), len(v) - 1)])


def impute_with_intervals(
    measured: np.ndarray,
    minute_of_day: np.ndarray,
    method: str,
    max_gap: int,
    low: float | None = None,
    high: float | None = None,
) -> Imputed:
    """Fill the gaps of up to max_gap minutes with values and calibrated 90% intervals, clipped to [low, high]."""
    low = -np.inf if low is None else low
    high = np.inf if high is None else high
    prediction = predict(measured, minute_of_day, method, max_gap)
    calibration = calibrate(measured, minute_of_day, method, max_gap, fitted=prediction.fitted)
    imputed = np.isfinite(prediction.mean)
    k = np.where(imputed, calibration.factor(prediction.gap_length), np.nan)
    half = k * np.where(prediction.sd > 0, prediction.sd, 0.0)
    value = np.clip(prediction.mean, low, high)
    lower = np.clip(prediction.mean - half, low, high)
    upper = np.clip(prediction.mean + half, low, high)
    return Imputed(
        value, np.minimum(lower, value), np.maximum(upper, value), prediction.gap_length, prediction, calibration
    )
