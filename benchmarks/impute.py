"""Imputation accuracy and calibration: linear, profile and statespace, by gap length, on three kinds of heart rate.

    .venv/bin/python benchmarks/impute.py [--gaps 40] [--participants 1] [--draws 20] [--seed 20240101]
        [--methods linear,profile,statespace] [--datasets rhythm,wearipedia,real-spacing]

Known stretches of measured 1-minute heart rate are hidden and filled again with
fitpipe.derive.uncertainty.impute_with_intervals (the pure function `fitpipe impute` uses, the
calibration of its intervals included), once per method; the error is imputed minus true over
the hidden minutes that had a measurement. Linear interpolation between the gap's edges is the
baseline, measured on the same gaps in the same run.

Datasets (all in UTC, so minute-of-day is the minute index modulo 1,440):
(i)   rhythm: 28 days of 1-minute heart rate synthesised here, seeded: a circadian curve
      65 + 12 * sin(2*pi*(minute_of_day - 480) / 1440) (low at 02:00, high at 14:00), plus AR(1)
      noise (phi 0.98, stationary sd 2 bpm), plus activity bursts (Poisson 1.5 a day between
      07:00 and 21:00, 10-60 min, +15..45 bpm, with 5-minute ramps).
(ii)  wearipedia: 14 days of fitpipe's synthetic source (SyntheticSource, wearipedia's Fitbit
      generator) for one participant without wear gaps, 86,400 samples a day reduced to 1-minute
      means with numpy.
(iii) real-spacing: 21 days with the spacing of real exports: the rhythm curve (another seed)
      sampled every 1-15 s (uniform) with 1.5 bpm of per-sample noise, and wear gaps (Poisson 4
      a day, log-uniform 1 minute to 16 hours) cutting samples out, so the 1-minute means have
      partial minutes and natural gaps of every length. Only minutes with samples are scored.

Per dataset and gap length (5 min, 30 min, 2 h, 8 h), --gaps gaps start at seeded random minutes
whose edge minutes are measured and whose inside is at least 80% measured. They are hidden in
batches of non-overlapping gaps (at most 15% of the minutes hidden at once); each batch is filled
with max_gap = the gap length, so the profile, the model parameters and the interval calibration
are learnt from what is left, never from the hidden truth. Per method: MAE, bias (mean imputed -
true), coverage of the 90% interval (share of hidden minutes whose true value lies in it), mean
width, CPU seconds per participant-day (process time of the whole fill, calibration included,
divided by the series' days) and the MAE ratio against linear.

Noise: a gap's minutes fall in or out of the interval together, so the gap is the unit of
independent information; coverage comes with its bootstrap standard error over gaps (40 gaps:
3-5 points). --gaps 200 shrinks it; --participants P repeats everything on P series per dataset
(other seeds; wearipedia: users 1..P) and pools their gaps, and prints the spread of coverage
between participants, because one participant's calibration, learnt from a few weeks of data,
is itself off by a point or two in either direction.

Rubin's rules: for each UTC day of a batch that holds hidden gaps, --draws draws of the batch give
--draws daily means (minutes with a true value only), pooled with Rubin's rules (complete-data
variance 0: the realised daily mean is the estimand); the 90% interval should cover the true
daily mean on about 90% of those days. Both kinds of draws are checked on the same days: the
default "residual" (a bootstrap of the participant's own pseudo-gap error paths) and "model" (the
method's Gaussian joint draws with a calibrated common shift). No database is needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

from fitpipe.derive.pooling import rubin
from fitpipe.derive.uncertainty import DRAW_KINDS, impute_with_intervals
from fitpipe.participants import User

GAP_LENGTHS = ((5, "5 min"), (30, "30 min"), (120, "2 h"), (480, "8 h"))
METHODS = ("linear", "profile", "statespace")
MAX_HIDDEN_SHARE = 0.15


def rhythm_series(days: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = days * 1440
    minute = np.arange(n) % 1440
    circadian = 65 + 12 * np.sin(2 * np.pi * (minute - 480) / 1440)
    phi, sd = 0.98, 2.0
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    noise = np.empty(n)
    noise[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + shocks[i]
    bursts = np.zeros(n)
    for day in range(days):
        for _ in range(rng.poisson(1.5)):
            start = day * 1440 + int(rng.integers(7 * 60, 21 * 60))
            length = int(rng.integers(10, 61))
            height = rng.uniform(15, 45)
            ramp = np.minimum(1.0, np.minimum(np.arange(length) + 1, length - np.arange(length)) / 5)
            end = min(start + length, n)
            bursts[start:end] += height * ramp[: end - start]
    return circadian + noise + bursts


def wearipedia_series(days: int, user_id: int = 1) -> tuple[np.ndarray, float]:
    from fitpipe.sources.contract import BudgetLedger, Fetch
    from fitpipe.sources.synthetic.source import SyntheticSource

    source = SyntheticSource()
    user = User(
        user_id,
        f"participant-{user_id:04d}",
        "UTC",
        "synthetic",
        dt.date(2024, 1, 1),
        settings=SyntheticSource.default_settings(user_id) | {"wear_gaps": False},
    )
    fetch = Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(None))
    started = time.perf_counter()
    out = []
    for i in range(days):
        payloads = source.fetch_day(user, dt.date(2024, 1, 1) + dt.timedelta(days=i), fetch)
        dataset = payloads["intraday_heart_rate"][0]["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]
        seconds = np.array(
            [int(p["time"][0:2]) * 3600 + int(p["time"][3:5]) * 60 + int(p["time"][6:8]) for p in dataset]
        )
        values = np.array([float(p["value"]) for p in dataset])
        minute = seconds // 60
        counts = np.bincount(minute, minlength=1440)
        sums = np.bincount(minute, weights=values, minlength=1440)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    return np.concatenate(out), time.perf_counter() - started


def real_spacing_series(days: int, seed: int) -> np.ndarray:
    """1-minute means of irregular 1-15 s samples with wear gaps: NaN where no sample fell."""
    rng = np.random.default_rng(seed)
    curve = rhythm_series(days, seed + 1)
    seconds = np.cumsum(rng.integers(1, 16, size=days * 86400 // 7))
    seconds = seconds[seconds < days * 86400]
    value = np.interp(seconds / 60.0, np.arange(days * 1440) + 0.5, curve) + rng.normal(0, 1.5, len(seconds))
    worn = np.ones(len(seconds), dtype=bool)
    for _ in range(rng.poisson(4 * days)):
        start = rng.uniform(0, days * 86400)
        length = np.exp(rng.uniform(np.log(60), np.log(16 * 3600)))
        worn &= ~((seconds >= start) & (seconds < start + length))
    minute = seconds[worn] // 60
    counts = np.bincount(minute, minlength=days * 1440)
    sums = np.bincount(minute, weights=value[worn], minlength=days * 1440)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def held_out_batches(series: np.ndarray, length: int, gaps: int, rng: np.random.Generator) -> list[list[int]]:
    """Gap starts, in batches of non-overlapping gaps that hide at most MAX_HIDDEN_SHARE at once."""
    n = len(series)
    finite = np.isfinite(series)
    prefix = np.concatenate([[0], np.cumsum(finite)])
    starts = np.arange(1, n - length - 1)
    ok = finite[starts - 1] & finite[starts + length]
    ok &= prefix[starts + length] - prefix[starts] >= 0.8 * length
    candidates = list(rng.permutation(starts[ok]))
    per_batch = max(1, int(MAX_HIDDEN_SHARE * n / (2 * length)))
    batches: list[list[int]] = []
    while sum(len(b) for b in batches) < gaps and candidates:
        taken = np.zeros(n, dtype=bool)
        batch: list[int] = []
        rest = []
        for start in candidates:
            if len(batch) >= min(per_batch, gaps - sum(len(b) for b in batches)):
                rest.append(start)
                continue
            lo, hi = max(start - length, 0), min(start + 2 * length, n)
            if taken[lo:hi].any():
                rest.append(start)
                continue
            taken[lo:hi] = True
            batch.append(int(start))
        if not batch:
            break
        batches.append(batch)
        candidates = rest
    return batches


def bootstrap_se(per_gap: np.ndarray, rng: np.random.Generator, rounds: int = 2000) -> float:
    """Standard error of the minute-weighted coverage, resampling whole gaps (a gap's minutes fall in
    or out of the interval together, so the gap is the unit of independent information)."""
    if len(per_gap) < 2:
        return float("nan")
    pick = rng.integers(0, len(per_gap), size=(rounds, len(per_gap)))
    return float(np.std(per_gap[pick, 0].sum(axis=1) / per_gap[pick, 1].sum(axis=1)))


def evaluate(truths: list[np.ndarray], length: int, gaps: int, draws: int, seed: int, methods) -> dict[str, dict]:
    """--gaps held-out gaps in each participant's series; figures pooled over the participants' gaps."""
    batches = [
        (p, batch)
        for p, truth in enumerate(truths)
        for batch in held_out_batches(truth, length, gaps, np.random.default_rng([seed, p]))
    ]
    out = {}
    for method in methods:
        errors, covered, widths, unfilled, cpu = [], [], [], 0, 0.0
        rubin_hits, rubin_days = dict.fromkeys(DRAW_KINDS, 0), 0
        per_gap = []  # (minutes covered, minutes scored) per held-out gap, for the standard error by gap
        per_participant = np.zeros((len(truths), 2))  # the same, summed per participant
        for b, (p, batch) in enumerate(batches):
            truth = truths[p]
            measured = truth.copy()
            for start in batch:
                measured[start : start + length] = np.nan
            started = time.process_time()
            imputed = impute_with_intervals(measured, np.arange(len(truth)) % 1440, method, max_gap=length)
            cpu += time.process_time() - started
            samples = {kind: imputed.draws(np.random.default_rng([seed, b]), draws, kind) for kind in DRAW_KINDS}
            checked_days: set[int] = set()
            for start in batch:
                span = slice(start, start + length)
                scored = np.isfinite(truth[span])
                value = imputed.value[span][scored]
                unfilled += int(np.isnan(value).sum())
                t = truth[span][scored]
                errors.append(value - t)
                covered.append((imputed.lower[span][scored] <= t) & (t <= imputed.upper[span][scored]))
                widths.append(imputed.upper[span][scored] - imputed.lower[span][scored])
                per_gap.append((int(covered[-1].sum()), len(t)))
                per_participant[p] += per_gap[-1]
                # One check per day of the batch: the day's mean is the estimand, whatever number of
                # the batch's gaps fell into it.
                if not draws or start // 1440 in checked_days:
                    continue
                checked_days.add(start // 1440)
                day = slice((start // 1440) * 1440, (start // 1440 + 1) * 1440)
                known = np.isfinite(truth[day])
                true_mean = truth[day][known].mean()
                hits = {}
                for kind, sample in samples.items():
                    completed = np.where(np.isnan(measured[day])[None, :], sample[:, day], measured[day][None, :])
                    means = np.nanmean(np.where(known[None, :], completed, np.nan), axis=1)
                    if np.isnan(means).any():
                        break
                    pooled = rubin(means, 0.0)
                    hits[kind] = int(pooled.lower <= true_mean <= pooled.upper)
                else:
                    rubin_days += 1
                    for kind in DRAW_KINDS:
                        rubin_hits[kind] += hits[kind]
        err = np.concatenate(errors)
        days = sum(len(truth) for truth in truths) / 1440
        out[method] = {
            "mae": float(np.nanmean(np.abs(err))),
            "bias": float(np.nanmean(err)),
            "coverage": float(np.concatenate(covered).mean()),
            "width": float(np.nanmean(np.concatenate(widths))),
            # One fill covers one participant's whole series: CPU per fill over that series' days.
            "cpu_per_day": cpu / len(batches) / (days / len(truths)),
            "unfilled": unfilled,
            "rubin": {kind: hit / rubin_days if rubin_days else float("nan") for kind, hit in rubin_hits.items()},
            "rubin_days": rubin_days,
            "gaps": sum(len(b) for _, b in batches),
            "coverage_se": bootstrap_se(np.array(per_gap), np.random.default_rng([seed, 7])),
            "coverage_spread": float(np.std(per_participant[:, 0] / per_participant[:, 1])),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--gaps", type=int, default=40, help="Gaps per participant, dataset and gap length.")
    p.add_argument(
        "--participants", type=int, default=1, help="Series per dataset (other seeds; wearipedia: other users)."
    )
    p.add_argument("--draws", type=int, default=20, help="Draws per batch for the Rubin's-rules check (0: skip).")
    p.add_argument("--seed", type=int, default=20240101)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--datasets", default="rhythm,wearipedia,real-spacing")
    args = p.parse_args()
    methods = args.methods.split(",")
    wanted = args.datasets.split(",")

    datasets: list[tuple[str, list[np.ndarray]]] = []
    gen_seconds = 0.0
    others = range(args.participants)
    if "rhythm" in wanted:
        datasets.append(("rhythm", [rhythm_series(28, args.seed + 101 * p) for p in others]))
    if "wearipedia" in wanted:
        generated = [wearipedia_series(14, 1 + p) for p in others]
        gen_seconds = sum(seconds for _, seconds in generated)
        datasets.append(("wearipedia", [series for series, _ in generated]))
    if "real-spacing" in wanted:
        datasets.append(("real-spacing", [real_spacing_series(21, args.seed + 7 + 101 * p) for p in others]))

    import _common as c  # only for the table layout shared by the benchmarks

    print(
        f"imputation accuracy and 90% intervals, fitpipe.derive.uncertainty.impute_with_intervals, "
        f"{args.gaps} gaps per participant, dataset and length, {args.participants} participant(s) per dataset, "
        f"{args.draws} draws, seed {args.seed}"
    )
    for name, group in datasets:
        for series in group:
            known = series[np.isfinite(series)]
            print(
                f"  {name}: {len(series) // 1440} days, {np.isnan(series).mean():.1%} of minutes without samples, "
                f"mean {known.mean():.1f} bpm, sd {known.std():.1f}"
            )
    if gen_seconds:
        print(f"  (wearipedia: 14 days x {args.participants} generated in {gen_seconds:.1f} s)")
    rows = []
    started = time.perf_counter()
    for d, (name, truths) in enumerate(datasets):
        for g, (length, label) in enumerate(GAP_LENGTHS):
            r = evaluate(truths, length, args.gaps, args.draws, args.seed + 1000 * (d + 1) + g, methods)
            base = r.get("linear")
            for method in methods:
                m = r[method]
                rows.append(
                    (
                        name,
                        label,
                        method,
                        m["gaps"],
                        f"{m['mae']:.2f}",
                        f"{m['mae'] / base['mae']:.2f}" if base else "-",
                        f"{m['bias']:+.2f}",
                        f"{m['coverage']:.1%} ± {m['coverage_se']:.1%}"
                        + (f" (sd {m['coverage_spread']:.1%})" if args.participants > 1 else ""),
                        f"{m['width']:.1f}",
                        f"{m['cpu_per_day']:.3f}",
                        *(
                            (f"{m['rubin']['residual']:.0%}", f"{m['rubin']['model']:.0%} ({m['rubin_days']})")
                            if args.draws
                            else ("-", "-")
                        ),
                    )
                )
            sys.stdout.flush()
    print(f"  (evaluation {time.perf_counter() - started:.0f} s)")
    print()
    print(
        c.table(
            (
                "dataset",
                "gap",
                "method",
                "gaps",
                "MAE",
                "MAE/linear",
                "bias",
                "90% coverage ± SE",
                "mean width",
                "CPU s/day",
                "Rubin: residual draws",
                "model draws (days)",
            ),
            rows,
        )
    )
    print(
        "(MAE, bias, width in bpm; bias = mean(imputed - true); MAE/linear < 1 means better than the linear baseline;"
        " coverage goal 88-92%, SE = bootstrap standard error resampling whole gaps, sd = spread between"
        " participants; CPU s/day = CPU seconds per"
        " participant-day of one fill, calibration included; Rubin: share of days with held-out gaps whose true mean"
        " lies in the pooled 90% interval, with the default residual-bootstrap draws and with the model's draws"
        " (days checked; binomial SE sqrt(p(1-p)/days)))"
    )

    print()
    month = rhythm_series(30, args.seed + 99)
    month[np.random.default_rng(args.seed).random(len(month)) < 0.02] = np.nan  # scattered missing minutes
    for start in range(600, len(month) - 600, 1440):  # one 2-hour gap a day
        month[start : start + 120] = np.nan
    timings = []
    if "statespace" in methods:
        import statsmodels.tsa.statespace.structural  # noqa: F401  (once per process, not per participant)
    for method in methods:
        wall, cpu = time.perf_counter(), time.process_time()
        impute_with_intervals(month, np.arange(len(month)) % 1440, method, max_gap=120)
        timings.append(f"{method} {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU")
    base = timings[0].split()[0]
    print(
        f"one 30-day participant (one 2-h gap a day, 2% scattered missing minutes, max_gap 2 h, intervals "
        f"calibrated; imports done before), baseline {base}: " + "; ".join(timings)
    )


if __name__ == "__main__":
    main()
