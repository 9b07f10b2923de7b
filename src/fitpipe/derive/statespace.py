"""The statespace imputation method: a structural time-series model per participant, via statsmodels.

    y_t = cycle(minute of day) + level_t + ar_t + noise_t
    level_t = level_{t-1} + eta_t            (local level: slow drifts, days that start higher)
    ar_t    = phi * ar_{t-1} + zeta_t        (AR(1): departures that fade within minutes to hours)

The daily cycle is a harmonic regression (CYCLE_HARMONICS pairs of sines and cosines of the local
minute of day) fitted by least squares on every measured minute and shrunk by the profile's
split-half reliability, so data without a rhythm gets a flat cycle; keeping it out of the state
vector leaves a two-dimensional state, which is what makes a Kalman smoother over a month of
minutes take a fraction of a second. The variances and phi are maximum-likelihood estimates
(statsmodels' UnobservedComponents) on the FIT_DAYS best-covered consecutive days. The Kalman
smoother then runs over the whole series with those parameters: its mean and variance at the
missing minutes are the prediction, and its simulation smoother gives joint draws of whole gaps.
"""

from __future__ import annotations

import warnings

import numpy as np

from fitpipe.derive.imputation import Prediction, profile_reliability
from fitpipe.errors import BadInput

CYCLE_HARMONICS = 4
FIT_DAYS = 1
FIT_ITERATIONS = 25
# Draws come from the simulation smoother run on a window this much wider than each gap on both
# sides (the state is Markov, so data further out changes a gap's draws by next to nothing).
DRAW_MARGIN_MINUTES = 240
MIN_MEASURED = 120


class MissingImputeExtra(BadInput):
    def __init__(self) -> None:
        super().__init__(
            "the statespace method needs statsmodels, which is not installed; "
            "install it with: pip install 'fitpipe[impute]'"
        )


def require_statsmodels() -> None:
    """Raise the one-line error naming the extra when statsmodels is missing."""
    try:
        import statsmodels.tsa.statespace.structural  # noqa: F401
    except ImportError:
        raise MissingImputeExtra() from None


def _harmonics(minute_of_day: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * minute_of_day / 1440
    columns = [np.ones(len(minute_of_day))]
    for h in range(1, CYCLE_HARMONICS + 1):
        columns += [np.sin(h * angle), np.cos(h * angle)]
    return np.column_stack(columns)


def daily_cycle(measured: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray:
    """The fitted cycle at every minute (its mean level included), shrunk towards that level."""
    design = _harmonics(minute_of_day)
    seen = np.isfinite(measured)
    coefficients, *_ = np.linalg.lstsq(design[seen], measured[seen], rcond=None)
    shrink = profile_reliability(measured, minute_of_day)
    coefficients[1:] *= shrink
    return design @ coefficients


def _fit_window(measured: np.ndarray) -> slice:
    """The FIT_DAYS consecutive days with the most measured minutes (or everything, if shorter)."""
    width = FIT_DAYS * 1440
    if len(measured) <= width:
        return slice(0, len(measured))
    counts = np.concatenate([[0], np.cumsum(np.isfinite(measured))])
    starts = np.arange(0, len(measured) - width + 1, 1440)
    best = int(starts[np.argmax(counts[starts + width] - counts[starts])])
    return slice(best, best + width)


def _model(series: np.ndarray):
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    return UnobservedComponents(series, level="llevel", autoregressive=1)


def fit_parameters(departure: np.ndarray) -> np.ndarray:
    window = departure[_fit_window(departure)]
    model = _model(window)
    with warnings.catch_warnings():
        # Convergence chatter from the optimiser on near-zero variances; the estimates are still usable.
        warnings.simplefilter("ignore")
        result = model.fit(disp=False, maxiter=FIT_ITERATIONS)
    return np.asarray(result.params)


def _windows(gaps: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """[lo, hi) windows around the gaps, merged where they overlap."""
    merged: list[list[int]] = []
    for start, end in sorted(gaps):
        lo, hi = max(start - DRAW_MARGIN_MINUTES, 0), min(end + DRAW_MARGIN_MINUTES, n)
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def fit_for(measured: np.ndarray, minute_of_day: np.ndarray) -> np.ndarray | None:
    """The model's parameters for this series (None when it is too short to fit)."""
    require_statsmodels()
    if np.isfinite(measured).sum() < MIN_MEASURED:
        return None
    return fit_parameters(measured - daily_cycle(measured, minute_of_day))


def predict_statespace(
    measured: np.ndarray, minute_of_day: np.ndarray, gaps: list[tuple[int, int]], params: np.ndarray | None = None
) -> Prediction:
    """params: the variances and phi from an earlier fit on (nearly) the same series, to skip the fit."""
    require_statsmodels()
    n = len(measured)
    mean, sd = np.full(n, np.nan), np.full(n, np.nan)
    gap_length = np.zeros(n, dtype=np.int32)
    if not gaps or np.isfinite(measured).sum() < MIN_MEASURED:
        return Prediction(mean, sd, gap_length, [], lambda rng, draws: np.full((draws, n), np.nan))
    cycle = daily_cycle(measured, minute_of_day)
    departure = measured - cycle
    if params is None:
        params = fit_parameters(departure)
    from statsmodels.tsa.statespace.kalman_smoother import SMOOTHER_STATE, SMOOTHER_STATE_COV

    model = _model(departure)
    model.update(params)
    # Only the state and its variance: the results wrapper would also compute disturbances,
    # information criteria and the like, twice the cost here.
    smoothed = model.ssm.smooth(smoother_output=SMOOTHER_STATE | SMOOTHER_STATE_COV)
    # Predictive variance of an observation: the smoothed signal's variance plus the noise's.
    design = np.asarray(model.ssm["design"]).reshape(1, -1)
    forecast_mean = design[0] @ np.asarray(smoothed.smoothed_state)
    state_cov = np.asarray(smoothed.smoothed_state_cov)
    signal_var = np.einsum("i,ijt,j->t", design[0], state_cov, design[0])
    noise_var = float(params[0])
    inside = np.zeros(n, dtype=bool)
    for start, end in gaps:
        inside[start:end] = True
        gap_length[start:end] = end - start
    mean[inside] = (forecast_mean + cycle)[inside]
    sd[inside] = np.sqrt(np.maximum(signal_var + noise_var, 0.0))[inside]

    def sample(rng: np.random.Generator, draws: int) -> np.ndarray:
        from statsmodels.tsa.statespace.simulation_smoother import SIMULATION_STATE

        out = np.full((draws, n), np.nan)
        for lo, hi in _windows(gaps, n):
            window = _model(departure[lo:hi])
            window.update(params)
            simulator = window.simulation_smoother(simulation_output=SIMULATION_STATE)
            hidden = inside[lo:hi]
            for d in range(draws):
                simulator.simulate(rng=rng)
                signal = design[0] @ np.asarray(simulator.simulated_state)
                noise = rng.normal(0.0, np.sqrt(noise_var), size=hi - lo)
                out[d, lo:hi][hidden] = (signal + noise + cycle[lo:hi])[hidden]
        return out

    return Prediction(mean, sd, gap_length, list(gaps), sample, params)
