"""Imputation intervals and draws (issue 24): stored, exported, in Store.frame, reproducible, and honest.

One data set for the module: synthetic participant 1 in America/New_York (wear gaps on), four days,
plus a 45-minute gap cut into a worn stretch. Expectations come from the database (which minutes
hold measurements, their means, the stored imputations), never from fitpipe's imputation code.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

import fitpipe
from fitpipe.catalogue import BY_NAME
from fitpipe.cli import app
from fitpipe.derive.imputation import predict
from fitpipe.derive.pooling import rubin
from fitpipe.derive.uncertainty import impute_with_intervals
from support.db import empty_database

NY = "America/New_York"
FIRST, LAST = dt.date(2024, 11, 1), dt.date(2024, 11, 4)
CUT_MINUTES = 45
MINUTE = dt.timedelta(minutes=1)
ROOT = Path(__file__).resolve().parents[1]


def run(url: str, *args: str, code: int = 0):
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
    return result


def measured_minutes(conn) -> dict[dt.datetime, float]:
    return dict(
        conn.execute(
            "SELECT time_bucket('1 minute', ts), avg(bpm)::float8 FROM heart_rate WHERE user_id = 1 GROUP BY 1"
        ).fetchall()
    )


def stored(conn) -> dict[dt.datetime, tuple[float, float | None, float | None, str]]:
    rows = conn.execute(
        "SELECT ts, value, lower, upper, method FROM imputed_values "
        "WHERE user_id = 1 AND metric = 'heart_rate' AND field = 'bpm' ORDER BY ts"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.fixture(scope="module")
def world(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty_database(conn)
        run(database_url, "seed-users", "--count", "1", "--timezone", NY, "--start-date", FIRST.isoformat())
        run(database_url, "backfill", "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--workers", "2")
        # Cut a gap into the longest worn stretch of the second local day, so a long gap has measured edges.
        minutes = sorted(m for m in measured_minutes(conn) if m.astimezone(ZoneInfo(NY)).date() == dt.date(2024, 11, 2))
        best, run_start, length = (minutes[0], 1), minutes[0], 1
        for before, after in itertools.pairwise(minutes):
            run_start, length = (run_start, length + 1) if after - before == MINUTE else (after, 1)
            if length > best[1]:
                best = (run_start, length)
        assert best[1] >= CUT_MINUTES + 20, f"no worn stretch long enough: {best}"
        lo = best[0] + 10 * MINUTE
        conn.execute(
            "DELETE FROM heart_rate WHERE user_id = 1 AND ts >= %s AND ts < %s", (lo, lo + CUT_MINUTES * MINUTE)
        )
        conn.execute(
            "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (1, 'heart_rate', %s, %s)",
            (lo, lo + CUT_MINUTES * MINUTE),
        )
        yield conn, lo


@pytest.mark.slow  # the module's data set: a four-day backfill
@pytest.mark.parametrize("method", ["linear", "profile", "statespace"])
def test_every_imputed_minute_has_an_interval_around_its_value(world, database_url, method):
    conn, cut = world
    before = conn.execute("SELECT count(*), sum(bpm) FROM heart_rate WHERE user_id = 1").fetchone()
    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--method", method, "--max-gap", "2h")
    rows = stored(conn)
    assert rows, "nothing imputed"
    assert {r[3] for r in rows.values()} == {method}
    bpm = BY_NAME["heart_rate"].values[0]
    for ts, (value, lower, upper, _) in rows.items():
        assert lower is not None and upper is not None, ts
        # Inside the catalogue's valid range, like the values themselves.
        assert bpm.low <= lower <= value <= upper <= bpm.high, (ts, lower, value, upper)
    widths = np.array([r[2] - r[1] for r in rows.values()])
    assert (widths > 0).mean() > 0.99, "intervals of zero width"
    # The cut gap is filled, and its interval widens from the edges towards the middle.
    inside = [rows[cut + k * MINUTE] for k in range(CUT_MINUTES)]
    width = [r[2] - r[1] for r in inside]
    assert max(width[15:30]) > width[0] and max(width[15:30]) > width[-1], width
    # Imputed never overwrites measured: no imputed minute holds a measurement, and the
    # measurements are as they were.
    assert not set(rows) & set(measured_minutes(conn))
    assert conn.execute("SELECT count(*), sum(bpm) FROM heart_rate WHERE user_id = 1").fetchone() == before


def _csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@pytest.mark.slow  # the module's data set: a four-day backfill
@pytest.mark.parametrize("resolution", ["raw", "1min"])
def test_export_and_frame_carry_the_stored_intervals(world, database_url, resolution):
    conn, _ = world
    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--max-gap", "2h")
    rows = stored(conn)
    span = ("--metric", "heart_rate", "--user", "1", "--start", "2024-11-02", "--end", "2024-11-02", "--tz", "utc")
    header, exported = _csv(run(database_url, "export", *span, "--resolution", resolution, "--with-imputed").stdout)
    assert header[-2:] == ["bpm_lower", "bpm_upper"]
    flagged = [r for r in exported if r["imputed"] == "t"]
    assert flagged
    for r in flagged:
        _, lower, upper, _ = rows[dt.datetime.fromisoformat(r[header[1]])]
        assert np.float32(r["bpm_lower"]) == np.float32(lower) and np.float32(r["bpm_upper"]) == np.float32(upper)
    assert all(r["bpm_lower"] == "" and r["bpm_upper"] == "" for r in exported if r["imputed"] == "f")
    header_without, _ = _csv(run(database_url, "export", *span, "--resolution", resolution).stdout)
    assert "bpm_lower" not in header_without

    frame = fitpipe.connect(database_url).frame(
        "heart_rate",
        users=[1],
        start="2024-11-02",
        end="2024-11-02",
        resolution=resolution,
        tz="utc",
        with_imputed=True,
    )
    imputed = frame[frame["imputed"]]
    assert len(imputed) == len(flagged)
    for ts, lower, upper in zip(imputed[header[1]], imputed["bpm_lower"], imputed["bpm_upper"], strict=True):
        assert np.float32(lower) == np.float32(rows[ts.to_pydatetime()][1])
        assert np.float32(upper) == np.float32(rows[ts.to_pydatetime()][2])


def _draws(database_url: str, *extra: str) -> list[dict[str, str]]:
    args = ("export", "--metric", "heart_rate", "--user", "1", "--start", "2024-11-02", "--end", "2024-11-02")
    result = run(database_url, *args, "--tz", "utc", *extra)
    return _csv(result.stdout)[1]


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_draws_are_reproducible_and_differ_only_inside_gaps(world, database_url):
    conn, cut = world
    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--max-gap", "2h")
    rows = stored(conn)
    measured = measured_minutes(conn)
    first = _draws(database_url, "--draws", "4", "--seed", "11")
    assert first == _draws(database_url, "--draws", "4", "--seed", "11"), "same seed, different draws"
    other = _draws(database_url, "--draws", "4", "--seed", "12")
    assert [r["bpm"] for r in other] != [r["bpm"] for r in first]

    by_draw: dict[str, dict[dt.datetime, tuple[float, str]]] = {}
    for r in first:
        by_draw.setdefault(r["draw"], {})[dt.datetime.fromisoformat(r["bucket"])] = (float(r["bpm"]), r["imputed"])
    assert sorted(by_draw) == ["1", "2", "3", "4"]
    day = [m for m in by_draw["1"]]
    for series in by_draw.values():
        assert list(series) == day, "every draw is the same complete series of minutes"
    imputed_minutes = {m for m in day if by_draw["1"][m][1] == "t"}
    assert imputed_minutes == {m for m in rows if m in set(day)}
    assert imputed_minutes and cut in imputed_minutes
    for minute in day:
        values = [series[minute][0] for series in by_draw.values()]
        if minute in imputed_minutes:
            continue
        assert values == [pytest.approx(measured[minute], abs=1e-9)] * 4, minute  # measured: identical
    inside = [m for m in imputed_minutes if cut <= m < cut + CUT_MINUTES * MINUTE]
    spread = [np.std([series[m][0] for series in by_draw.values()]) for m in inside]
    assert min(spread) > 0, "a gap minute is the same in every draw"

    frame = fitpipe.connect(database_url).frame(
        "heart_rate", users=[1], start="2024-11-02", end="2024-11-02", tz="utc", draws=4, seed=11
    )
    assert list(frame.columns) == ["user_id", "bucket", "draw", "bpm", "imputed"]
    assert list(frame["bpm"].round(9)) == [round(float(r["bpm"]), 9) for r in first]


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_draws_as_parquet_are_the_csv_draws_with_utc_instants(world, database_url, tmp_path):
    import pyarrow.parquet as pq

    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--max-gap", "2h")
    path = tmp_path / "draws.parquet"
    span = ("export", "--metric", "heart_rate", "--user", "1", "--start", "2024-11-02", "--end", "2024-11-02")
    # --tz local is accepted and, as in every Parquet export, the file holds UTC instants.
    as_parquet = ("--tz", "local", "--draws", "3", "--seed", "11", "--format", "parquet", "-o", str(path))
    result = run(database_url, *span, *as_parquet)
    as_csv = _draws(database_url, "--draws", "3", "--seed", "11")
    table = pq.read_table(path)
    assert table.schema.names == ["user_id", "bucket", "draw", "bpm", "imputed"]
    assert str(table.schema.field("bucket").type) == "timestamp[us, tz=UTC]"
    assert f"wrote {len(as_csv):,} rows" in result.stderr
    rows = table.to_pylist()
    assert len(rows) == len(as_csv)
    for got, want in zip(rows, as_csv, strict=True):
        assert got["bucket"] == dt.datetime.fromisoformat(want["bucket"])
        assert (got["user_id"], got["draw"]) == (int(want["user_id"]), int(want["draw"]))
        assert got["bpm"] == pytest.approx(float(want["bpm"]), abs=1e-9)
        assert got["imputed"] == (want["imputed"] == "t")
    assert any(r["imputed"] for r in rows)


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_draws_keep_the_correlation_within_a_gap(world, database_url):
    """Neighbouring minutes of one gap move together across draws; independent noise would not."""
    conn, cut = world
    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--max-gap", "2h")
    value = {ts: r[0] for ts, r in stored(conn).items()}
    frame = fitpipe.connect(database_url).frame(
        "heart_rate", users=[1], start="2024-11-02", end="2024-11-02", tz="utc", draws=60, seed=3
    )
    gap = [cut + k * MINUTE for k in range(10, 35)]
    table = frame[frame["bucket"].isin(gap)].pivot(index="draw", columns="bucket", values="bpm")[gap]
    deviation = table.to_numpy() - np.array([value[m] for m in gap])[None, :]
    lag1 = np.corrcoef(deviation[:, :-1].ravel(), deviation[:, 1:].ravel())[0, 1]
    assert lag1 > 0.8, lag1


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_missing_statsmodels_is_one_line_naming_the_extra(world, database_url):
    conn, _ = world
    before = stored(conn)
    blocked = "import sys; sys.modules['statsmodels'] = None; from fitpipe.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "impute", "--user", "1", "--metric", "heart_rate", "--method", "statespace"],
        env={**os.environ, "FITPIPE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fitpipe[impute]'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert stored(conn) == before, "a refused run changed the imputations"


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_bad_draw_requests_are_one_line(world, database_url):
    for args in (
        ("--draws", "0"),
        ("--draws", "3", "--resolution", "1h"),
        ("--draws", "3", "--format", "parquet"),  # Parquet needs a file
        ("--seed", "4"),
        ("--draws", "2", "--metric", "active_zone_minutes"),
    ):
        full = ["export", "--metric", "heart_rate", "--user", "1", *args]
        result = CliRunner().invoke(app, ["--database-url", database_url, *full])
        assert result.exit_code == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)


@pytest.mark.slow  # the module's data set: a four-day backfill
def test_the_rubin_example_runs_as_written(world, database_url):
    run(database_url, "impute", "--user", "1", "--metric", "heart_rate", "--max-gap", "2h")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "rubin_daily_mean.py"), "--user", "1", "--day", "2024-11-02"],
        env={**os.environ, "FITPIPE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = dict(line.split(": ", 1) for line in proc.stdout.strip().splitlines() if ": " in line)
    estimate, lower, upper = (float(figures[k].split()[0]) for k in ("pooled daily mean", "90% lower", "90% upper"))
    assert lower < estimate < upper
    # The pooled estimate is the mean over draws of each draw's daily mean, recomputed here from the export.
    rows = _draws(database_url, "--draws", "20", "--seed", "2024", "--tz", "local")
    local = [r for r in rows if r["bucket"].startswith("2024-11-02")]
    means = [np.mean([float(r["bpm"]) for r in local if r["draw"] == str(d)]) for d in range(1, 21)]
    assert estimate == pytest.approx(np.mean(means), abs=1e-3)
    measured_only = float(figures["measured minutes only"].split()[0])
    assert measured_only != pytest.approx(estimate, abs=1e-6)


# --------------------------------------------------------------------------------------------
# pure functions: no database


@pytest.mark.parametrize("method", ["linear", "profile"])
def test_bridge_draws_have_the_stated_mean_and_sd(method):
    rng = np.random.default_rng(5)
    minute = np.arange(6 * 1440)
    series = 60 + 8 * np.sin(2 * np.pi * (minute % 1440) / 1440) + np.cumsum(rng.normal(0, 0.3, minute.size)) * 0.2
    series[3000:3090] = np.nan
    prediction = predict(series, minute % 1440, method, max_gap=120)
    draws = prediction.sample(np.random.default_rng(1), 4000)[:, 3000:3090]
    assert np.abs(draws.mean(axis=0) - prediction.mean[3000:3090]).max() < 0.1 * prediction.sd[3000:3090].max()
    assert np.allclose(draws.std(axis=0), prediction.sd[3000:3090], rtol=0.08)


def test_calibrated_intervals_cover_about_90_percent_of_held_out_minutes():
    """An AR(1) series with a daily cycle, 60 held-out 30-minute gaps in batches: ~90% covered."""
    rng = np.random.default_rng(11)
    n = 14 * 1440
    noise = np.empty(n)
    noise[0] = 0.0
    shocks = rng.standard_t(5, n) * 0.6  # heavier tails than the model assumes
    for i in range(1, n):
        noise[i] = 0.97 * noise[i - 1] + shocks[i]
    truth = 62 + 10 * np.sin(2 * np.pi * (np.arange(n) % 1440) / 1440) + noise
    hits, total = 0, 0
    for batch in range(6):
        measured = truth.copy()
        starts = 500 + batch * 37 + np.arange(10) * 1900
        for s in starts:
            measured[s : s + 30] = np.nan
        result = impute_with_intervals(measured, np.arange(n) % 1440, "profile", max_gap=30)
        for s in starts:
            span = slice(s, s + 30)
            hits += int(((result.lower[span] <= truth[span]) & (truth[span] <= result.upper[span])).sum())
            total += 30
    assert 0.82 <= hits / total <= 0.96, hits / total


def test_rubin_pools_as_the_formulas_say():
    pooled = rubin([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], level=0.90)
    assert pooled.estimate == 2.0 and pooled.between == 1.0 and pooled.within == 0.5
    assert pooled.total == pytest.approx(0.5 + (4 / 3) * 1.0)
    assert pooled.df == pytest.approx(2 * (1 + 0.5 / (4 / 3)) ** 2)
    from scipy.stats import t

    half = t.ppf(0.95, pooled.df) * np.sqrt(pooled.total)
    assert (pooled.lower, pooled.upper) == pytest.approx((2 - half, 2 + half))


def _bursty_series(days: int, seed: int) -> np.ndarray:
    """A daily cycle, AR(1) noise and upward bursts of 20-40 minutes (heart rate's one-sided skew)."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    noise = np.empty(n)
    noise[0] = 0.0
    for i in range(1, n):
        noise[i] = 0.97 * noise[i - 1] + rng.normal(0, 0.5)
    series = 62 + 10 * np.sin(2 * np.pi * (np.arange(n) % 1440) / 1440) + noise
    for start in rng.integers(0, n - 40, size=4 * days):
        series[start : start + int(rng.integers(20, 41))] += 30
    return series


def test_residual_draws_carry_the_bursts_that_gaussian_draws_miss():
    """The default draws bootstrap the participant's own pseudo-gap errors: on data whose surprises
    are upward bursts, a gap's drawn mean leans upward, and the draws still span the interval."""
    truth = _bursty_series(14, 3)
    measured = truth.copy()
    starts = np.arange(700, len(truth) - 200, 1000)
    for s in starts:
        measured[s : s + 60] = np.nan
    result = impute_with_intervals(measured, np.arange(len(truth)) % 1440, "profile", max_gap=60)
    inside = np.concatenate([np.arange(s, s + 60) for s in starts])
    residual = result.draws(np.random.default_rng(8), 400)[:, inside]
    assert np.array_equal(residual, result.draws(np.random.default_rng(8), 400)[:, inside]), "not reproducible"
    model = result.draws(np.random.default_rng(8), 400, kind="model")[:, inside]
    lower, upper, value = result.lower[inside], result.upper[inside], result.value[inside]
    for draws in (residual, model):
        share = ((lower[None, :] <= draws) & (draws <= upper[None, :])).mean()
        assert 0.8 <= share <= 0.97, share  # each minute's spread is its calibrated interval

    # Gap means of the draws, less the imputed gap mean: skewed upward with residual draws only
    # (here 1.4 against 0.0).
    from scipy.stats import skew

    def gap_mean_skew(draws: np.ndarray) -> float:
        return float(skew((draws - value[None, :]).reshape(len(draws), len(starts), 60).mean(axis=2).ravel()))

    assert gap_mean_skew(residual) > 0.7 and abs(gap_mean_skew(model)) < 0.2, (
        gap_mean_skew(residual),
        gap_mean_skew(model),
    )
