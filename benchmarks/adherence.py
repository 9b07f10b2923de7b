"""Adherence at a year's scale: the adherence dashboard's panels, `fitpipe adherence` and
`fitpipe status --json`, on two stores, against the per-minute definition they replaced.

    .venv/bin/python benchmarks/adherence.py [--keep] [--cohort 1000] [--year-users 10] [--days 365] [--repeats 20]

Stores, built fast in SQL (a heart-rate sample per minute with ~25% of minutes unworn, one main
sleep a night, ledger rows marked complete), then `fitpipe aggregate refresh --full`, which builds
the rollups and wear_days exactly as ingestion would:
- cohort: --cohort participants x 1 day;
- year: --year-users participants x --days days;
- cohort-year: --cohort participants x --days days of daily rows only (wear_days, sleep and the
  ledger written directly, no raw data: 394 M rows would not fit the time here). It shows the panels
  at the scale the goal names; the per-minute baseline is not run on it.

Per store it times, median and p95 of --repeats runs: each panel's SQL of
grafana/dashboards/adherence.json (variables at their defaults), the per-minute query the panels
ran before wear_days (the baseline, same run), then the CLI `fitpipe adherence` and
`fitpipe status --json` (median and p95 of 5 runs, interpreter start included).
Goals: every panel under 100 ms for 1,000 participants however long the study; `fitpipe
adherence` under 1 s; cost growing with participants, not with days.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import _common as c
from fitpipe.derive.adherence import update_running_totals

START = dt.date(2024, 1, 1)
DEFAULTS = {"wear_threshold": "0.7", "max_silence_hours": "48", "min_nights": "5", "min_sleep_minutes": "180"}
# The wear share the panels computed before wear_days: every measured minute since the study start.
PER_MINUTE = """
    SELECT u.user_id, count(r.bucket) AS worn_minutes, max(r.bucket) + interval '1 minute' AS last_data
    FROM users u
    LEFT JOIN rollup_1min r ON r.user_id = u.user_id AND r.metric = 'heart_rate' AND r.field = 'bpm'
         AND r.n_measured > 0 AND r.bucket >= (u.study_start::timestamp AT TIME ZONE u.timezone)
         AND r.bucket < (((SELECT max(day) FROM ingested_days) + 1)::timestamp AT TIME ZONE u.timezone)
    GROUP BY u.user_id
"""


def build(url: str, users: int, days: int) -> float:
    """Participants with `days` days of data; returns the seconds of the full refresh."""
    c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat())
    last = START + dt.timedelta(days=days - 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO heart_rate (user_id, ts, bpm)
            SELECT u, m, (60 + 20 * random())::real
            FROM generate_series(1, %(users)s) u,
                 generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                                 interval '1 minute') m
            WHERE random() > 0.25
            """,
            {"users": users, "start": START, "end": last + dt.timedelta(days=1)},
        )
        conn.execute(
            """
            INSERT INTO sleep_sessions (user_id, start_ts, end_ts, date_of_sleep, log_id, is_main_sleep, duration_s,
                                        efficiency, minutes_asleep, minutes_awake, minutes_to_fall_asleep,
                                        minutes_after_wakeup, time_in_bed)
            SELECT u, d + interval '22 hours 30 minutes', d + interval '22 hours 30 minutes' + make_interval(secs => s),
                   (d::date + 1), u * 100000 + i, true, s, 90, s / 60 - 20, 20, 5, 0, s / 60
            FROM generate_series(1, %(users)s) u,
                 generate_series(0, %(days)s - 1) i,
                 LATERAL (SELECT (%(start)s::date + i)::timestamp AS d, (4 * 3600 + random() * 5 * 3600)::int AS s) x
            """,
            {"users": users, "days": days, "start": START},
        )
        conn.execute(
            """
            INSERT INTO ingested_days (user_id, day, source, rows_loaded, quarantined, state)
            SELECT u, d::date, 'synthetic', 1, 0, 'complete'
            FROM generate_series(1, %(users)s) u, generate_series(%(start)s::date, %(last)s::date, interval '1 day') d
            """,
            {"users": users, "start": START, "last": last},
        )
        conn.execute("ANALYZE")
    started = time.perf_counter()
    c.fitpipe(url, "aggregate", "refresh", "--full")
    return time.perf_counter() - started


def build_daily_only(url: str, users: int, days: int) -> None:
    c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat())
    last = START + dt.timedelta(days=days - 1)
    params = {"users": users, "start": START, "last": last}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO wear_days (user_id, day, worn_minutes, first_measured, last_measured, main_sleep_seconds)
            SELECT u, d::date, w, d + interval '6 hours', d + interval '6 hours' + make_interval(mins => w),
                   (4 * 3600 + random() * 5 * 3600)::int
            FROM generate_series(1, %(users)s) u, generate_series(%(start)s::date, %(last)s::date, interval '1 day') d,
                 LATERAL (SELECT (900 + random() * 500)::int AS w) x
            """,
            params,
        )
        conn.execute(
            """
            INSERT INTO ingested_days (user_id, day, source, rows_loaded, quarantined, state)
            SELECT u, d::date, 'synthetic', 1, 0, 'complete'
            FROM generate_series(1, %(users)s) u, generate_series(%(start)s::date, %(last)s::date, interval '1 day') d
            """,
            params,
        )
        with conn.cursor() as cur:
            update_running_totals(cur, list(range(1, users + 1)), [START] * users)
        conn.execute("ANALYZE")


def panels() -> list[tuple[str, str]]:
    board = json.loads((c.ROOT / "grafana" / "dashboards" / "adherence.json").read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            sql = target.get("rawSql", "")
            if "fitpipe_adherence" in sql:
                for name, value in DEFAULTS.items():
                    sql = sql.replace(f"${name}", value)
                out.append((panel["title"], sql))
    return out


def timed(run, repeats: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return statistics.median(seconds), seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]


def measure(label: str, url: str, users: int, days: int, repeats: int) -> list[list[object]]:
    refresh = build(url, users, days)
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        minute_rows = conn.execute("SELECT count(*) FROM rollup_1min").fetchone()[0]
        daily_rows = conn.execute("SELECT count(*) FROM wear_days").fetchone()[0]
        baseline = timed(lambda: conn.execute(PER_MINUTE).fetchall(), max(3, repeats // 4))
        for title, sql in panels():
            median, p95 = timed(lambda sql=sql: conn.execute(sql).fetchall(), repeats)
            rows.append(
                [label, f"panel: {title}", f"{median * 1000:.1f}", f"{p95 * 1000:.1f}", f"{median / baseline[0]:.3f}"]
            )
    rows.append(
        [label, "per-minute wear (baseline)", f"{baseline[0] * 1000:.1f}", f"{baseline[1] * 1000:.1f}", "1.000"]
    )
    for name, args in (
        ("fitpipe adherence --json", ["adherence", "--json"]),
        ("fitpipe status --json", ["status", "--json"]),
    ):
        median, p95 = timed(lambda args=args: c.fitpipe(url, *args), 5)
        rows.append([label, name, f"{median * 1000:.0f}", f"{p95 * 1000:.0f}", ""])
    print(
        f"{label}: {users} participants x {days} days; rollup_1min {minute_rows:,} rows, wear_days {daily_rows:,} "
        f"rows; full refresh {refresh:.1f} s",
        flush=True,
    )
    return rows


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--cohort", type=int, default=1000)
    p.add_argument("--year-users", type=int, default=10)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    rows = []
    with c.bench_database("adherence_cohort", keep=args.keep) as url:
        rows += measure("cohort", url, args.cohort, 1, args.repeats)
    with c.bench_database("adherence_year", keep=args.keep) as url:
        rows += measure("year", url, args.year_users, args.days, args.repeats)
    with c.bench_database("adherence_cohort_year", keep=args.keep) as url:
        build_daily_only(url, args.cohort, args.days)
        with psycopg.connect(url, autocommit=True) as conn:
            for title, sql in panels():
                median, p95 = timed(lambda sql=sql: conn.execute(sql).fetchall(), args.repeats)
                rows.append(["cohort-year", f"panel: {title}", f"{median * 1000:.1f}", f"{p95 * 1000:.1f}", ""])
        for name, cli_args in (("fitpipe adherence --json", ["adherence", "--json"]),):
            median, p95 = timed(lambda cli_args=cli_args: c.fitpipe(url, *cli_args), 5)
            rows.append(["cohort-year", name, f"{median * 1000:.0f}", f"{p95 * 1000:.0f}", ""])
        print(f"cohort-year: {args.cohort} participants x {args.days} days of daily rows", flush=True)
    print(c.table(["store", "what", "median ms", "p95 ms", "x per-minute baseline"], rows))


if __name__ == "__main__":
    main()
