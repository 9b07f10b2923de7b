"""Multiple imputation: M complete 1-minute series per participant, each gap a joint random draw.

Measured minutes are the same in every draw (their 1-minute means); imputed minutes (those
`fitpipe impute` wrote) are drawn jointly per gap around their stored values, each minute's spread
scaled to its stored calibrated 90% interval (fitpipe.derive.uncertainty.rescaled_draws): the
shape of a gap's draw is the error path of one of the participant's own pseudo-gaps of about that
length (the calibration is recomputed on the same data, with its fixed seed), or the imputing
method's joint model draw where too few pseudo-gaps were scored near that length. The random numbers come from
numpy's generator seeded with (seed, user_id), so a participant's draws are the same whichever
other participants are selected.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import psycopg

from fitpipe.catalogue import Metric
from fitpipe.catalogue import metric as metric_named
from fitpipe.derive.imputation import METHODS, predict
from fitpipe.derive.impute import PROFILE_CONTEXT_DAYS, local_minute_of_day, minute_means
from fitpipe.derive.uncertainty import Z_95, calibrate, rescaled_draws
from fitpipe.errors import BadInput
from fitpipe.participants import User

MAX_DRAWS = 1000
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def check_request(metric_name: str, draws: int) -> Metric:
    metric = metric_named(metric_name)
    if not metric.imputable:
        raise BadInput(f"metric {metric.name!r} is never imputed, so it has no draws; drop --draws")
    if not 1 <= draws <= MAX_DRAWS:
        raise BadInput(f"--draws must be between 1 and {MAX_DRAWS}, got {draws}")
    return metric


def _imputed_rows(conn: psycopg.Connection, user: User, metric: Metric, lo: dt.datetime, hi: dt.datetime):
    return conn.execute(
        "SELECT field, ts, value, lower, upper, method FROM imputed_values "
        "WHERE user_id = %s AND metric = %s AND ts >= %s AND ts < %s ORDER BY field, ts",
        (user.user_id, metric.name, lo, hi),
    ).fetchall()


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive grid positions."""
    if not len(positions):
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate([[positions[0]], positions[breaks + 1]])
    ends = np.concatenate([positions[breaks] + 1, [positions[-1] + 1]])
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def user_draws(
    conn: psycopg.Connection,
    user: User,
    metric: Metric,
    lo: dt.datetime,
    hi: dt.datetime,
    draws: int,
    seed: int,
) -> pd.DataFrame:
    """One participant's draws in [lo, hi): columns user_id, bucket (UTC), draw, the value columns, imputed."""
    context = dt.timedelta(days=PROFILE_CONTEXT_DAYS)
    # Open-ended ranges come as 1970 / year 9999: keep the context arithmetic inside datetime's range.
    lo_context = max(lo, EARLIEST + context) - context
    hi_context = min(hi, LATEST - context) + context
    rows = minute_means(conn, user, metric, lo_context, hi_context)
    imputed = _imputed_rows(conn, user, metric, lo, hi)
    columns = [c.name for c in metric.values]
    if not rows:
        return pd.DataFrame(columns=["user_id", "bucket", "draw", *columns, "imputed"])
    times = [r[0] for r in rows] + [r[1] for r in imputed]
    grid = pd.date_range(min(times), max(times), freq="1min")
    measured = pd.DataFrame([r[1:] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows]), columns=columns)
    measured = measured.reindex(grid)
    minute_of_day = local_minute_of_day(user, grid)
    rng = np.random.default_rng([seed, user.user_id])
    drawn = {name: np.repeat(measured[name].to_numpy(dtype=float)[None, :], draws, axis=0) for name in columns}
    was_imputed = np.zeros(len(grid), dtype=bool)
    for name in columns:
        mine = [r for r in imputed if r[0] == name]
        if not mine:
            continue
        position = np.asarray(grid.get_indexer(pd.DatetimeIndex([r[1] for r in mine])))
        value = np.full(len(grid), np.nan)
        value[position] = [r[2] for r in mine]
        series = measured[name].to_numpy(dtype=float)
        methods = {r[5] for r in mine}
        method = max(methods, key=lambda m: sum(r[5] == m for r in mine))
        if method not in METHODS:
            raise BadInput(f"imputed values of {metric.name}.{name} use method {method!r}, which this fitpipe lacks")
        prediction = predict(series, minute_of_day, method, max_gap=0, gaps=_runs(np.sort(position)))
        lower, upper = np.full(len(grid), np.nan), np.full(len(grid), np.nan)
        lower[position] = [np.nan if r[3] is None else r[3] for r in mine]
        upper[position] = [np.nan if r[4] is None else r[4] for r in mine]
        # Rows imputed before intervals existed: the model's own Gaussian interval.
        old = np.isnan(lower) & np.isfinite(value)
        lower[old] = value[old] - Z_95 * prediction.sd[old]
        upper[old] = value[old] + Z_95 * prediction.sd[old]
        # The calibration again (same data, same fixed seed: the same as when impute ran), for the
        # share of each gap's draw that moves the whole gap together.
        calibration = calibrate(
            series, minute_of_day, method, max_gap=int(prediction.gap_length.max()), fitted=prediction.fitted
        )
        sample = rescaled_draws(prediction, value, lower, upper, rng, draws, calibration)
        # A run whose edges are no longer measured (data changed since impute ran) has no model
        # draw: it gets independent noise of the calibrated spread instead.
        stale = np.isnan(sample[:, position])
        if stale.any():
            noise = rng.normal(size=stale.shape) * ((upper - lower)[position] / (2 * Z_95))[None, :]
            sample[:, position] = np.where(stale, value[position][None, :] + noise, sample[:, position])
        drawn[name][:, position] = sample[:, position]
        was_imputed[position] = True
    inside = np.asarray((grid >= pd.Timestamp(lo)) & (grid < pd.Timestamp(hi)))
    keep = inside & (was_imputed | np.isfinite(measured.to_numpy(dtype=float)).any(axis=1))
    kept = int(keep.sum())
    frame = pd.DataFrame(
        {
            "user_id": np.full(kept * draws, user.user_id, dtype=np.int32),
            "bucket": np.tile(grid[keep], draws),
            "draw": np.repeat(np.arange(1, draws + 1, dtype=np.int32), kept),
        }
    )
    for name in columns:
        frame[name] = drawn[name][:, keep].reshape(-1)
    frame["imputed"] = np.tile(was_imputed[keep], draws)
    return frame
