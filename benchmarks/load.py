"""Loader against the limit: fitpipe's binary COPY path against raw psycopg binary COPY, same run.

    .venv/bin/python benchmarks/load.py [--keep] [--repeats 3] [--days 3]

Goal: fitpipe's loader (fitpipe.copybin.copy_rows) loads heart-rate rows at >= 0.9x the rows/s
of the baseline, psycopg 3's own binary COPY (`cursor.copy()` + `set_types(['int4',
'timestamptz', 'float4'])` + `write_row()` per row), into the same hypertable with the same
rows. The full per-day path (fitpipe.ingest.load.replace_day: lock, ledger check, delete, COPY, ledger
row, rollup invalidations, commit) is measured too, against the same baseline.

How: 3 days of heart rate for one participant (wear gaps off: 86,400 rows a day) are generated
and parsed once up front (SyntheticSource().fetch_day + fitpipe.ingest.validate.parse_day). Then each
method runs once per round, in a rotating order, for --repeats rounds; before each measurement
the tables are truncated and CHECKPOINTed, and each timing ends with the commit. The baseline gets
its rows as ready-made Python tuples (the conversion from numpy is done up front, not timed), so
it is the fastest psycopg can go per row; fitpipe starts from the parser's numpy columns, as in
a real run. The server ceiling (INSERT ... SELECT generate_series of the same row count, no
client at all) is printed for reference. Figures are medians over the rounds; absolute figures
drift on shared machines, the ratio is the figure to compare. Prints figures only.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import psycopg

import _common as c
from fitpipe.copybin import copy_rows, encode
from fitpipe.days import DayContext
from fitpipe.ingest.load import replace_day
from fitpipe.ingest.validate import ParsedDay, parse_day
from fitpipe.participants import seed_users
from fitpipe.sources.contract import BudgetLedger, Fetch
from fitpipe.sources.synthetic.source import SyntheticSource

START = dt.date(2024, 1, 1)


def generate(user, days: int) -> list[tuple[DayContext, ParsedDay]]:
    source = SyntheticSource()
    fetch = Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(None))
    out = []
    for i in range(days):
        day = START + dt.timedelta(days=i)
        ctx = user.day_context(day)
        out.append((ctx, parse_day(source.fetch_day(user, day, fetch), ctx, source.parsers())))
    return out


def heart_rate_only(parsed: ParsedDay) -> ParsedDay:
    return ParsedDay(rows={"heart_rate": parsed.rows["heart_rate"]})


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--days", type=int, default=3)
    args = p.parse_args()

    with c.bench_database("load", keep=args.keep) as url, psycopg.connect(url) as conn:
        users, _ = seed_users(conn, 1, timezone="UTC", start_date=START, wear_gaps=False)
        conn.commit()
        user = users[0]

        started = time.perf_counter()
        days = generate(user, args.days)
        prep_seconds = time.perf_counter() - started

        metric = days[0][1].rows["heart_rate"].metric
        names = list(metric.column_names)
        pg_types = [col.pg_type for col in metric.columns]
        columns = [np.concatenate([parsed.rows["heart_rate"].columns[n] for _, parsed in days]) for n in names]
        n_rows = len(columns[0])
        # The baseline's input: Python values, as write_row takes them (converted here, untimed).
        py_rows = list(
            zip(
                columns[0].tolist(),
                [t.replace(tzinfo=dt.UTC) for t in columns[1].astype("datetime64[us]").tolist()],
                columns[2].tolist(),
                strict=True,
            )
        )
        all_rows_per_day = [parsed.row_count for _, parsed in days]
        first_ts = py_rows[0][1] if py_rows else dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

        hr_only = ["heart_rate"]

        def m_copy_rows() -> int:
            with conn.cursor() as cur:
                count = copy_rows(cur, "heart_rate", names, pg_types, columns)
            conn.commit()
            return count

        def m_baseline() -> int:
            statement = f"COPY heart_rate ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(["int4", "timestamptz", "float4"])
                for row in py_rows:
                    copy.write_row(row)
            conn.commit()
            return n_rows

        def replace_days(only_heart_rate: bool) -> int:
            total = 0
            for ctx, parsed in days:
                day = heart_rate_only(parsed) if only_heart_rate else parsed
                outcome = replace_day(
                    conn, ctx, lambda day=day: day, source="synthetic", run_id=None, skip_if_done=False
                )
                assert outcome.status == "loaded", outcome
                total += outcome.rows
            return total

        def prefill_heart_rate() -> None:
            m_copy_rows()

        def m_ceiling() -> int:
            conn.execute(
                "INSERT INTO heart_rate (user_id, ts, bpm) "
                "SELECT %s, %s::timestamptz + g * interval '1 second', (60 + g %% 40)::real "
                "FROM generate_series(0, %s - 1) AS g",
                (user.user_id, first_ts, n_rows),
            )
            conn.commit()
            return n_rows

        # name -> (run, tables to truncate first, setup before timing)
        methods = {
            "fitpipe copy_rows": (m_copy_rows, hr_only, None),
            "baseline write_row": (m_baseline, hr_only, None),
            "fitpipe replace_day (hr only)": (lambda: replace_days(True), c.DATA_TABLES, None),
            "fitpipe replace_day (all tables)": (lambda: replace_days(False), c.DATA_TABLES, None),
            "fitpipe replace_day re-ingest (hr only)": (lambda: replace_days(True), c.DATA_TABLES, prefill_heart_rate),
            "server ceiling INSERT..SELECT": (m_ceiling, hr_only, None),
        }
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        rows: dict[str, int] = {}
        order = list(methods)
        for round_ in range(args.repeats):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                run, tables, setup = methods[name]
                c.truncate_data(conn, tables)
                if setup:
                    setup()
                    conn.execute("CHECKPOINT")
                    conn.commit()
                started = time.perf_counter()
                rows[name] = run()
                seconds[name].append(time.perf_counter() - started)
        c.truncate_data(conn)

        started = time.perf_counter()
        for _ in range(args.repeats):
            encode(pg_types, columns)
        encode_seconds = (time.perf_counter() - started) / args.repeats

        server = conn.execute(
            "SELECT split_part(version(), ' ', 2), (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
        ).fetchone()

    base_rate = rows["baseline write_row"] / c.median(seconds["baseline write_row"])
    print(
        f"loader against the limit: {n_rows:,} heart-rate rows ({args.days} days x 1 user, "
        f"{sum(all_rows_per_day):,} rows in all tables), {args.repeats} rounds, medians; "
        f"PostgreSQL {server[0]}, TimescaleDB {server[1]}"
    )
    print(f"(generate + parse up front: {prep_seconds:.1f} s; not timed below)")
    out = []
    for name in methods:
        med = c.median(seconds[name])
        rate = rows[name] / med
        out.append((name, rows[name], med, min(seconds[name]), max(seconds[name]), rate, f"{rate / base_rate:.2f}"))
    print(c.table(("method", "rows", "median s", "min s", "max s", "rows/s", "x baseline"), out))
    copy_rows_rate = rows["fitpipe copy_rows"] / c.median(seconds["fitpipe copy_rows"])
    print(f"ratio fitpipe copy_rows / baseline: {copy_rows_rate / base_rate:.2f}  (goal >= 0.9)")
    print(
        f"ratio fitpipe replace_day (hr only) / baseline: "
        f"{rows['fitpipe replace_day (hr only)'] / c.median(seconds['fitpipe replace_day (hr only)']) / base_rate:.2f}"
    )
    print(
        f"fitpipe encode() alone (numpy -> COPY bytes, no database): {encode_seconds * 1000:.1f} ms "
        f"= {n_rows / encode_seconds:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
