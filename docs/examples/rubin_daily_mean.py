"""A participant's mean heart rate on one local day, with the uncertainty its imputed minutes add.

    FITPIPE_DATABASE_URL=... python docs/examples/rubin_daily_mean.py --user 1 --day 2024-11-02

Needs `fitpipe impute` to have run for that day, and the impute extra (scipy, for the t quantile).
Each of the M draws is one complete 1-minute series for the day: measured minutes as measured,
each gap drawn jointly from the imputation model. The day's mean is computed on every draw and
the M means are pooled with Rubin's rules. The estimand is the participant's realised mean over
the day's minutes, which a complete series would give exactly, so the complete-data variance is
0 and all the uncertainty is between draws: T = (1 + 1/M) B, with M - 1 degrees of freedom.
"""

from __future__ import annotations

import argparse

import fitpipe
from fitpipe.derive.pooling import rubin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("--day", required=True, help="Local day, YYYY-MM-DD.")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    store = fitpipe.connect()
    draws = store.frame(
        "heart_rate", users=[args.user], start=args.day, end=args.day, tz="local", draws=args.draws, seed=args.seed
    )
    daily_means = draws.groupby("draw")["bpm"].mean()
    pooled = rubin(daily_means.to_numpy(), 0.0, level=0.90)
    first = draws[draws["draw"] == 1]
    imputed = int(first["imputed"].sum())
    print(f"day: {args.day}, participant {args.user}, {len(first)} minutes of which {imputed} imputed")
    print(f"pooled daily mean: {pooled.estimate:.3f} bpm")
    print(f"90% lower: {pooled.lower:.3f} bpm")
    print(f"90% upper: {pooled.upper:.3f} bpm")
    print(f"between-draw variance: {pooled.between:.5f} (df {pooled.df:.0f})")
    print(f"measured minutes only: {first.loc[~first['imputed'], 'bpm'].mean():.3f} bpm")


if __name__ == "__main__":
    main()
