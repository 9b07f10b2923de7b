"""The Parquet lake (`fitpipe lake sync`) against the database it mirrors, in one run.

    .venv/bin/python benchmarks/lake.py [--users 10] [--days 365] [--night-users 1000] [--night-days 365] [--keep]

On a year store built as benchmarks/scale.py builds it (numpy 1 Hz heart rate COPYed through
fitpipe's loader, ledger rows, rollups refreshed and settled chunks compressed a month at a time):
1. `fitpipe lake sync` of the whole store: wall time and rows/s, against `fitpipe export --format
   parquet` of heart rate, raw, over the same span (goal: sync >= 0.8x the export's rows/s).
2. Lake bytes per participant-day against the hypertables it mirrors (compressed) (goal: <= 1x).
3. A full-cohort query, mean, p95 and minutes worn per participant per month over the span:
   DuckDB on the lake against the same query on TimescaleDB, median of 3 (goal: lake >= 5x faster).
4. The nightly sync for a cohort, measured at full size (--night-users x --night-days, default
   1,000 x 365): a database with that many settled ledger days and their rollup_1d rows, whose last
   night holds every table's rows at the synthetic source's sizes (~82,000 1 Hz heart-rate rows a
   participant from benchmarks/scale.py's generator, binary COPY; the minute and night series, the
   daily rows and the night's 1-minute and hourly rollups by SQL straight into the hypertables).
   Timed: the first sync, a no-op sync, and the sync after one more such night (goal < 120 s),
   against the baseline of reading that night's heart rate out of the database with one binary COPY
   (drained, not parsed).
Prints figures only; absolute figures drift on shared machines, compare the ratios.

    .venv/bin/python benchmarks/lake.py --skip-store    # part 4 only
    .venv/bin/python benchmarks/lake.py --skip-night    # parts 1 to 3 only
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
import psycopg

import _common as c
from fitpipe.db import connect
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


def sync_figures(out: str) -> tuple[int, int]:
    """(rows written, rows from the database) from the sync's summary line."""
    written = int(out.split(" file(s) written (")[1].split(" rows")[0].replace(",", ""))
    fetched = int(out.split(" rows, ")[1].split(" from the database")[0].replace(",", ""))
    return written, fetched


def nightly(users: int, days: int) -> dict:
    """Part 4: the first sync of a store of `users` x `days` ledger days whose last night holds
    every table's rows, then the nightly sync after one more such night, measured, not scaled."""
    with c.bench_database("lake_night") as url, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "lake"
        c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat(), "--timezone", "UTC")
        last = START + dt.timedelta(days=days - 1)
        with connect(url) as conn:
            fill_ledger(conn, START, last)
            fill_night(conn, last)
        first_s, _ = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        noop_s, _ = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        night = last + dt.timedelta(days=1)
        with connect(url) as conn:
            fill_ledger(conn, night, night)
            night_rows = fill_night(conn, night)
            conn.execute("ANALYZE")
        night_s, out = timed(lambda: c.fitpipe(url, "lake", "sync", "--root", str(root)))
        written, fetched = sync_figures(out.stdout)
        with connect(url) as conn:
            floor_s, floor_rows = timed(lambda: read_out(conn, night))
    return {
        "users": users,
        "days": days,
        "first": first_s,
        "noop": noop_s,
        "night": night_s,
        "night_rows": night_rows,
        "written": written,
        "fetched": fetched,
        "floor": floor_s,
        "floor_rows": floor_rows,
    }


def read_out(conn, day: dt.date) -> int:
    """The baseline: the night's 1 Hz heart rate read out of the database by one binary COPY
    (drained, not parsed), the least any copy of those rows costs."""
    from fitpipe.output.export import copy_out

    class Count:
        size = 0

        def write(self, data) -> None:
            self.size += 1

    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    sink = Count()
    bound = psycopg.ClientCursor(conn).mogrify(
        "SELECT user_id, ts, bpm FROM heart_rate WHERE ts >= %s AND ts < %s",
        (midnight, midnight + dt.timedelta(days=1)),
    )
    copy_out(conn, f"COPY ({bound}) TO STDOUT (FORMAT binary)", sink)  # type: ignore[arg-type]
    return sink.size


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


# Rows a participant-day holds in the night store: (table, first instant as hours after the
# day's midnight (UTC cohort), step in seconds, rows). Heart rate comes from copy_heart_rate.
NIGHT_SERIES = (
    ("active_zone_minutes", 0, 60, 1_440),
    ("spo2", 22, 60, 420),
    ("hrv_intraday", 22, 300, 84),
    ("sleep_stages", 22, 840, 30),
    ("sleep_sessions", 22, 25_200, 1),
)
HEART_RATE_ROWS = 82_000  # what heart_rate_day gives on average: 86,400 s less a charging hour and nights off
ROLLUP_SERIES = (  # (metric, fields, minutes, first hour): the night's 1-minute rollups
    ("heart_rate", ("bpm",), HEART_RATE_ROWS // 60, 0),
    ("active_zone_minutes", ("active_zone_minutes", "fat_burn_minutes", "cardio_minutes", "peak_minutes"), 1_440, 0),
    ("spo2", ("spo2_pct",), 420, 22),
    ("hrv_intraday", ("rmssd", "coverage", "hf", "lf"), 84, 22),
)


def _value(column, series: str, day: dt.date) -> str:
    """SQL of a plausible value of the column for row `s` of a series."""
    if column.pg_type == "timestamptz":
        return series
    if column.name == "user_id":
        return "u.user_id"
    if column.pg_type == "date":
        return f"DATE '{day.isoformat()}'"
    if column.pg_type == "real":
        return "(55 + mod(s, 40) + mod(s, 7) * 0.25)::real"
    if column.pg_type == "boolean":
        return "false"
    if column.pg_type == "text":
        return {"stage": "(ARRAY['light','deep','rem','wake'])[1 + mod(s, 4)]"}.get(column.name, "'synthetic'")
    return "mod(s, 5)"


def copy_heart_rate(conn, day: dt.date) -> int:
    """The night's 1 Hz heart rate of every participant as benchmarks/scale.py generates it (a daily
    rhythm, a random walk, a charging hour, some nights off), by binary COPY as the loader writes
    it, ten participants at a time."""
    from fitpipe.catalogue import BY_NAME
    from fitpipe.copybin import copy_rows

    heart = BY_NAME["heart_rate"]
    rng = np.random.default_rng(day.toordinal())
    users = [u for (u,) in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
    rows = 0
    for first in range(0, len(users), 10):
        days = [(user_id, *heart_rate_day(rng, day, 0)) for user_id in users[first : first + 10]]
        columns = (
            np.concatenate([np.full(len(ts), user_id, np.int32) for user_id, ts, _ in days]),
            np.concatenate([ts for _, ts, _ in days]),
            np.concatenate([bpm for _, _, bpm in days]),
        )
        with conn.cursor() as cur:
            rows += copy_rows(cur, "heart_rate", heart.column_names, [c.pg_type for c in heart.columns], columns)
    return rows


def fill_night(conn, day: dt.date) -> int:
    """One settled night of every table for every participant, straight into the hypertables
    (no ledger rows: fill_ledger writes those): 1 Hz heart rate, the minute and night series,
    one row of each daily table, and the night's 1-minute and hourly rollups. Returns the raw rows."""
    from fitpipe.catalogue import METRICS

    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    series = {t: (h, step, n) for t, h, step, n in NIGHT_SERIES}
    rows = 0
    for metric in METRICS:
        if metric.table == "heart_rate_confidence":
            continue  # not every device reports it: left empty, as a cohort of Fitbits has it
        if metric.table == "heart_rate":
            rows += copy_heart_rate(conn, day)
            continue
        hour, step, count = series.get(metric.table, (0, 1, 1))
        instant = f"(%(start)s::timestamptz + s * interval '{step} seconds')"
        values = [_value(c, instant, day) for c in metric.columns]
        if metric.table == "sleep_sessions":
            ends = {"end_ts": f"{instant} + interval '7 hours'"}
            values = [ends.get(c.name, v) for c, v in zip(metric.columns, values, strict=True)]
        cur = conn.execute(
            f"INSERT INTO {metric.table} ({', '.join(metric.column_names)}) SELECT {', '.join(values)} "
            "FROM users u, generate_series(0, %(last)s) s",
            {"start": midnight + dt.timedelta(hours=hour), "last": count - 1},
        )
        rows += cur.rowcount
    for level, width in (("1min", 60), ("1h", 3_600)):
        for metric, fields, minutes, hour in ROLLUP_SERIES:
            conn.execute(
                f"INSERT INTO rollup_{level} (user_id, metric, field, bucket, n_measured, sum_measured, min_measured, "
                "max_measured, n_imputed, sum_imputed) SELECT u.user_id, %(metric)s, f, "
                f"%(start)s::timestamptz + s * interval '{width} seconds', 60, 60 * (60 + mod(s, 30)), 50, 90, 0, 0 "
                "FROM users u, unnest(%(fields)s::rollup_field[]) f, generate_series(0, %(last)s) s",
                {
                    "metric": metric,
                    "fields": list(fields),
                    "start": midnight + dt.timedelta(hours=hour),
                    "last": -(-minutes * 60 // width) - 1,
                },
            )
    conn.commit()
    return rows


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--night-users", type=int, default=1000)
    p.add_argument("--night-days", type=int, default=365)
    p.add_argument("--skip-store", action="store_true", help="Only part 4.")
    p.add_argument("--skip-night", action="store_true", help="Only parts 1 to 3.")
    args = p.parse_args()
    if not args.skip_store:
        store(args)
    if args.skip_night:
        return
    n = nightly(args.night_users, args.night_days)
    print(f"nightly sync: {n['users']:,} participants x {n['days']} ledger days, the last night and one more with rows")
    print(
        c.table(
            ["figure", "lake", "baseline", "ratio", "goal"],
            [
                [
                    f"first sync ({n['users']:,} x {n['days']} ledger days, one night of rows)",
                    f"{n['first']:.1f} s",
                    "",
                    "",
                    "",
                ],
                ["no-op sync", f"{n['noop']:.1f} s", "", "", ""],
                [
                    f"nightly sync: one new day x {n['users']:,}",
                    f"{n['night']:.1f} s ({n['written']:,} rows written, {n['fetched']:,} from the database)",
                    f"{n['floor']:.1f} s (binary COPY of the night's heart rate, {n['floor_rows']:,} rows, drained)",
                    f"{n['night'] / n['floor']:.2f}x",
                    "< 120 s",
                ],
            ],
        )
    )


def store(args) -> None:
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

    sync_rate, export_rate = written / sync_s, exported / export_s
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
            ],
        )
    )


if __name__ == "__main__":
    main()
