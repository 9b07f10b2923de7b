"""The Parquet lake (`fitpipe lake sync`) against the database it mirrors, in one run.

    .venv/bin/python benchmarks/lake.py [--users 10] [--days 365] [--keep]

On a year store built as benchmarks/scale.py builds it (numpy 1 Hz heart rate COPYed through
fitpipe's loader, ledger rows, rollups refreshed and settled chunks compressed a month at a time):
1. `fitpipe lake sync` of the whole store: wall time and rows/s, against `fitpipe export --format
   parquet` of heart rate, raw, over the same span (goal: sync >= 0.8x the export's rows/s).
2. Lake bytes per participant-day against the hypertables it mirrors (compressed) (goal: <= 1x).
3. A full-cohort query, mean, p95 and minutes worn per participant per month over the span:
   DuckDB on the lake against the same query on TimescaleDB, median of 3 (goal: lake >= 5x faster).
4. An incremental nightly sync: one new day for every participant, loaded and refreshed, then
   `fitpipe lake sync`, extrapolated to 1,000 participants (goal < 120 s): the no-op sync's time
   (fingerprints and manifest, which grow with the ledger) scaled to 1,000 x 365 ledger days, plus
   the new day's share (nightly minus no-op) scaled to 1,000 participants.
5. The same sync's bookkeeping at full size (--ledger-users x --ledger-days, default 1,000 x 365):
   a database with that many settled ledger days and their rollup_1d rows but no raw rows; the
   no-op sync, and the sync after one more night for everyone (ledger and rollups only). With part
   4's per-row cost for the night's rows, this gives the 1,000-participant nightly sync.
Prints figures only; absolute figures drift on shared machines, compare the ratios.

    .venv/bin/python benchmarks/lake.py --skip-store    # part 5 only
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np

import _common as c
from fitpipe.db import connect
from fitpipe.derive.rollups import refresh
from scale import START, build_year, heart_rate_day

LAKE_TABLES = ("heart_rate", "rollup_1min", "rollup_1h", "rollup_1d", "imputed_values")

POSTGRES_COHORT = """
    SELECT user_id, date_trunc('month', ts AT TIME ZONE 'UTC') AS month, avg(bpm),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY bpm), count(DISTINCT time_bucket('1 minute', ts))
    FROM heart_rate GROUP BY 1, 2 ORDER BY 1, 2
"""
# The lake stores each row's local day (ledger_day), so a month per participant needs no timezone
# arithmetic; the benchmark cohort lives in UTC, so its months equal the database query's UTC months.
DUCKDB_COHORT = """
    SELECT user_id, date_trunc('month', ledger_day) AS month, avg(bpm),
           quantile_cont(bpm, 0.95), count(DISTINCT epoch_us(ts) // 60000000)
    FROM heart_rate GROUP BY 1, 2 ORDER BY 1, 2
"""


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def median_of(runs: int, run) -> tuple[float, object]:
    results = [timed(run) for _ in range(runs)]
    return float(np.median([t for t, _ in results])), results[-1][1]


def lake_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def add_night(url: str, users: int, day: dt.date) -> int:
    """One more settled day for every participant, loaded and refreshed as a night's ingest would."""
    from fitpipe.catalogue import BY_NAME
    from fitpipe.copybin import copy_rows

    heart = BY_NAME["heart_rate"]
    rng = np.random.default_rng(23)
    rows = 0
    with connect(url) as conn:
        for user_id in range(1, users + 1):
            ts, bpm = heart_rate_day(rng, day, 0)
            with conn.cursor() as cur:
                rows += copy_rows(
                    cur,
                    "heart_rate",
                    heart.column_names,
                    [col.pg_type for col in heart.columns],
                    (np.full(len(ts), user_id, np.int32), ts, bpm),
                )
            lo = dt.datetime.combine(day, dt.time(), dt.UTC)
            conn.execute(
                "INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, state) "
                "VALUES (%s, %s, 'synthetic', %s, jsonb_build_object('heart_rate', %s::int), 0, 'complete')",
                (user_id, day, len(ts), len(ts)),
            )
            conn.execute(
                "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, 'heart_rate', %s, %s)",
                (user_id, lo, lo + dt.timedelta(days=1)),
            )
        conn.commit()
        refresh(conn)
    return rows


def sync_figures(out: str) -> tuple[int, int]:
    """(rows written, rows from the database) from the sync's summary line."""
    written = int(out.split(" file(s) written (")[1].split(" rows")[0].replace(",", ""))
    fetched = int(out.split(" rows, ")[1].split(" from the database")[0].replace(",", ""))
    return written, fetched


def bookkeeping(users: int, days: int) -> dict:
    """Part 5: the sync's fixed work (fingerprints, manifest, per-partition queries) at full size."""
    with c.bench_database("lake_ledger") as url, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "lake"
        c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat(), "--timezone", "UTC")
        with connect(url) as conn:
            fill_ledger(conn, START, START + dt.timedelta(days=days - 1))
        first_s, _ = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        noop_s, _ = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        night = START + dt.timedelta(days=days)
        with connect(url) as conn:
            fill_ledger(conn, night, night)
        night_s, _ = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
    return {"first": first_s, "noop": noop_s, "night": night_s, "users": users, "days": days}


def fill_ledger(conn, first: dt.date, last: dt.date) -> None:
    """Settled ledger days for every participant, with ten rollup_1d rows each (as the four
    intraday metrics' value columns give), no raw rows."""
    conn.execute(
        "INSERT INTO ingested_days (user_id, day, source, rows_loaded, quarantined, state, content_hash) "
        "SELECT u.user_id, d::date, 'synthetic', 80000, 0, 'complete', md5(u.user_id || d::text) "
        "FROM users u, generate_series(%s::date, %s::date, interval '1 day') d",
        (first, last),
    )
    conn.execute(
        "INSERT INTO rollup_1d (user_id, metric, field, bucket, n_measured, sum_measured, n_imputed, sum_imputed) "
        "SELECT u.user_id, f.metric::rollup_metric, f.field::rollup_field, d, 80000, 80000 * 70.5, 0, 0 "
        "FROM users u, generate_series(%s::timestamptz, %s::timestamptz, interval '1 day') d, "
        "(VALUES ('heart_rate', 'bpm'), ('active_zone_minutes', 'active_zone_minutes'), "
        "('active_zone_minutes', 'fat_burn_minutes'), ('active_zone_minutes', 'cardio_minutes'), "
        "('active_zone_minutes', 'peak_minutes'), ('spo2', 'spo2_pct'), ('hrv_intraday', 'rmssd'), "
        "('hrv_intraday', 'coverage'), ('hrv_intraday', 'hf'), ('hrv_intraday', 'lf')) AS f(metric, field)",
        (dt.datetime.combine(first, dt.time(), dt.UTC), dt.datetime.combine(last, dt.time(), dt.UTC)),
    )
    conn.commit()


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--ledger-users", type=int, default=1000)
    p.add_argument("--ledger-days", type=int, default=365)
    p.add_argument("--skip-store", action="store_true", help="Only part 5.")
    args = p.parse_args()
    per_participant = None if args.skip_store else store(args)
    b = bookkeeping(args.ledger_users, args.ledger_days)
    print(
        f"sync bookkeeping at {b['users']:,} participants x {b['days']} ledger days (no raw rows): "
        f"first sync {b['first']:.1f} s, no-op sync {b['noop']:.1f} s, one more night for everyone {b['night']:.1f} s"
    )
    if per_participant is not None:
        nightly = b["night"] + per_participant * b["users"]
        print(f"nightly sync of one new day for {b['users']:,} participants: {nightly:.0f} s (goal < 120 s)")


def store(args) -> float:
    import duckdb

    import fitpipe.lake

    with c.bench_database("lake", args.keep) as url, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "lake"
        year = build_year(url, args.users, args.days)
        participant_days = args.users * args.days
        end = START + dt.timedelta(days=args.days - 1)

        sync_s, result = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        written, _ = sync_figures(result.stdout)
        export_path = Path(scratch) / "heart_rate.parquet"
        export_args = ["export", "--metric", "heart_rate", "--resolution", "raw", "--format", "parquet"]
        span = ["--start", START.isoformat(), "--end", end.isoformat(), "--output", str(export_path)]
        export_s, _ = timed(lambda: c.fitpipe(url, *export_args, *span))
        exported = int(duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{export_path}')").fetchone()[0])
        noop_s, noop = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))

        with connect(url) as conn:
            hypertable_bytes = {
                t: conn.execute("SELECT hypertable_size(%s::regclass)", (t,)).fetchone()[0] or 0 for t in LAKE_TABLES
            }
            pg_s, pg_rows = median_of(3, lambda: conn.execute(POSTGRES_COHORT).fetchall())
        lake = fitpipe.lake.connect(root)
        duck_s, duck_rows = median_of(3, lambda: lake.execute(DUCKDB_COHORT).fetchall())
        same = len(pg_rows) == len(duck_rows) and all(
            a[:2] == b[:2] and abs(a[2] - b[2]) < 1e-6 and abs(a[3] - b[3]) < 1e-3 and a[4] == b[4]
            for a, b in zip(pg_rows, duck_rows, strict=False)
        )
        lake_total = lake_bytes(root)
        heart_lake = sum(f.stat().st_size for f in (root / "table=heart_rate").rglob("*.parquet"))

        add_night(url, args.users, end + dt.timedelta(days=1))
        night_s, night = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        _, night_fetched = sync_figures(night.stdout)

    sync_rate, export_rate = written / sync_s, exported / export_s
    per_participant = max(0.0, night_s - noop_s) / args.users
    print(f"lake benchmark: {args.users} participants x {args.days} days, {year['rows']:,} heart-rate rows")
    print(
        c.table(
            ["figure", "lake", "baseline", "ratio", "goal"],
            [
                [
                    "full sync: rows/s (vs export --format parquet)",
                    f"{sync_rate:,.0f} ({written:,} rows, {sync_s:.1f} s)",
                    f"{export_rate:,.0f} ({exported:,} rows, {export_s:.1f} s)",
                    f"{sync_rate / export_rate:.2f}x",
                    ">= 0.8x",
                ],
                [
                    "bytes per participant-day (heart_rate + rollups + imputed)",
                    f"{lake_total / participant_days:,.0f}",
                    f"{sum(hypertable_bytes.values()) / participant_days:,.0f} (compressed hypertables)",
                    f"{lake_total / max(1, sum(hypertable_bytes.values())):.2f}x",
                    "<= 1x",
                ],
                [
                    "heart_rate bytes per participant-day",
                    f"{heart_lake / participant_days:,.0f}",
                    f"{hypertable_bytes['heart_rate'] / participant_days:,.0f}",
                    f"{heart_lake / max(1, hypertable_bytes['heart_rate']):.2f}x",
                    "",
                ],
                [
                    "cohort query: mean, p95, minutes worn per participant-month (median of 3)",
                    f"{duck_s:.2f} s (DuckDB)",
                    f"{pg_s:.2f} s (TimescaleDB)",
                    f"{pg_s / duck_s:.1f}x faster",
                    ">= 5x",
                ],
                ["cohort query results agree", "yes" if same else "NO", "", "", ""],
                [
                    "no-op sync",
                    f"{noop_s:.2f} s",
                    "",
                    "",
                    "writes nothing: " + ("yes" if "nothing to do" in noop.stdout else "NO"),
                ],
                [
                    f"nightly sync of one new day x {args.users}",
                    f"{night_s:.1f} s ({night_fetched:,} rows fetched)",
                    "",
                    "",
                    "",
                ],
                [
                    "  the new day's rows, per participant (nightly minus no-op)",
                    f"{per_participant:.3f} s",
                    "",
                    "",
                    "< 120 s",
                ],
            ],
        )
    )
    return per_participant


if __name__ == "__main__":
    main()
