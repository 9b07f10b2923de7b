"""Rollup refresh costs: one new day, nothing to do, and a full rebuild, each against a baseline.

    .venv/bin/python benchmarks/refresh.py [--keep] [--repeats 3]

(a) Incremental refresh stays proportional to the change. Store A holds 30 days of one
    participant (backfill 2024-01-01..2024-01-30 --no-refresh, then fully refreshed); day 31
    (2024-01-31) is ingested with --no-refresh and `fitpipe.derive.rollups.refresh(conn, [1])` is timed.
    Baseline B: a second fresh database holding only that same day 31, refreshed the same way.
    Each round re-ingests day 31 with --force --no-refresh first; medians over --repeats rounds.
    Goal: A / B <= 1.5.
(b) A refresh with nothing to do: refresh() in-process (goal < 0.2 s), and the whole CLI
    `fitpipe aggregate refresh` wall time against `fitpipe --version` wall time (the interpreter
    and CLI start-up alone) measured in the same run.
(c) Full-rebuild throughput on the 30-day store: refresh(conn, full=True), in raw rows/s (raw
    rows = heart_rate + spo2 + hrv_intraday + active_zone_minutes), against a plain scan of the
    same heart-rate data, `SELECT count(*), sum(bpm) FROM heart_rate GROUP BY
    time_bucket('1 minute', ts)`, in heart-rate rows/s.

All data comes from the real CLI (seed-users, backfill with the synthetic source and its wear
gaps); nothing is inserted directly. Before each timed refresh or scan the server is
CHECKPOINTed so earlier writes are not flushed on the clock. Absolute figures drift on shared
machines; the ratios are the figures to compare. Prints figures only.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import _common as c
from fitpipe.db import connect
from fitpipe.derive.rollups import refresh

FIRST, LAST, NEW_DAY = "2024-01-01", "2024-01-30", "2024-01-31"
RAW_TABLES = ("heart_rate", "spo2", "hrv_intraday", "active_zone_minutes")
SCAN = "SELECT count(*), sum(bpm) FROM heart_rate GROUP BY time_bucket('1 minute', ts)"


def checkpoint(conn: psycopg.Connection) -> None:
    conn.commit()
    with contextlib.suppress(psycopg.Error):  # needs superuser or pg_checkpoint
        conn.execute("CHECKPOINT")
    conn.rollback()


def wall(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=c.ROOT, env=c.cli_env())
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=c.ROOT, env=c.cli_env())
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {proc.stdout}{proc.stderr}")
    return times


def ingest_new_day(url: str, force: bool) -> float:
    started = time.perf_counter()
    c.fitpipe(
        url,
        "backfill",
        "--start",
        NEW_DAY,
        "--end",
        NEW_DAY,
        "--workers",
        "1",
        "--no-refresh",
        "--quiet",
        *(["--force"] if force else []),
    )
    return time.perf_counter() - started


def timed_refresh(conn: psycopg.Connection, **kwargs):
    checkpoint(conn)
    started = time.perf_counter()
    report = refresh(conn, [1], **kwargs)
    conn.commit()
    return time.perf_counter() - started, report


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cli-runs", type=int, default=5)
    args = p.parse_args()
    R = args.repeats

    a_seconds, a_reports, b_seconds, b_reports = [], [], [], []
    with c.bench_database("refresh_a", keep=args.keep) as url_a:
        c.fitpipe(url_a, "seed-users", "--count", "1")
        started = time.perf_counter()
        c.fitpipe(url_a, "backfill", "--start", FIRST, "--end", LAST, "--workers", "2", "--no-refresh", "--quiet")
        backfill_seconds = time.perf_counter() - started

        with connect(url_a) as conn:
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RAW_TABLES}
            conn.execute("ANALYZE")
            conn.commit()
            raw_rows = sum(counts.values())

            # (c) full rebuild vs a plain per-minute scan of the heart rate, alternating.
            full_seconds, full_reports, scan_seconds = [], [], []
            for _ in range(R):
                s, rep = timed_refresh(conn, full=True)
                full_seconds.append(s)
                full_reports.append(rep)
                checkpoint(conn)
                started = time.perf_counter()
                buckets = len(conn.execute(SCAN).fetchall())
                scan_seconds.append(time.perf_counter() - started)
                conn.rollback()

            # (b) nothing to do: in-process, then the whole CLI against `fitpipe --version`.
            idle = []
            for _ in range(10):
                started = time.perf_counter()
                rep = refresh(conn, [])
                idle.append(time.perf_counter() - started)
            idle_users = rep.users
            idle_one = []
            for _ in range(10):
                started = time.perf_counter()
                refresh(conn, [1])
                idle_one.append(time.perf_counter() - started)
        cmd = c.fitpipe_command()
        cli_refresh = wall([*cmd, "--database-url", url_a, "aggregate", "refresh"], args.cli_runs)
        cli_version = wall([*cmd, "--version"], args.cli_runs)

        # (a) store A: one new day on top of 30 refreshed days.
        with connect(url_a) as conn:
            for round_ in range(R):
                ingest_new_day(url_a, force=round_ > 0)
                s, rep = timed_refresh(conn)
                a_seconds.append(s)
                a_reports.append(rep)

    # (a) baseline B: that day alone in a fresh database.
    with c.bench_database("refresh_b", keep=args.keep) as url_b:
        c.fitpipe(url_b, "seed-users", "--count", "1")
        with connect(url_b) as conn:
            for round_ in range(R):
                ingest_new_day(url_b, force=round_ > 0)
                s, rep = timed_refresh(conn)
                b_seconds.append(s)
                b_reports.append(rep)
            day_rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in RAW_TABLES}
        with connect(url_b) as conn:
            server = conn.execute(
                "SELECT split_part(version(), ' ', 2), "
                "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
            ).fetchone()

    print(
        f"rollup refresh, 1 participant (UTC, synthetic with wear gaps), PostgreSQL {server[0]}, "
        f"TimescaleDB {server[1]}, {R} rounds, medians"
    )
    print(
        f"30-day store: {raw_rows:,} raw rows ("
        + ", ".join(f"{t} {n:,}" for t, n in counts.items())
        + f"); backfill took {backfill_seconds:.1f} s"
    )
    print(
        f"day 31 alone: {sum(day_rows.values()):,} raw rows ("
        + ", ".join(f"{t} {n:,}" for t, n in day_rows.items())
        + ")"
    )
    print()

    print("(a) refresh after one new day (day 31 ingested with --no-refresh, then refresh(conn, [1]))")
    a_med, b_med = c.median(a_seconds), c.median(b_seconds)

    def work(rep) -> str:
        return f"{rep.days} days / {rep.day_ranges} ranges / {sum(rep.buckets.values()):,} buckets"

    rows = [
        ("A: 30 refreshed days + day 31", *[f"{s:.3f}" for s in a_seconds], a_med, work(a_reports[-1])),
        ("B: day 31 alone (baseline)", *[f"{s:.3f}" for s in b_seconds], b_med, work(b_reports[-1])),
    ]
    print(c.table(("store", *[f"round {i + 1} s" for i in range(R)], "median s", "work (last round)"), rows))
    print(f"ratio A / B: {a_med / b_med:.2f}  (goal <= 1.5)")
    print()

    print("(b) refresh with nothing to do")
    cli_r, cli_v = c.median(cli_refresh), c.median(cli_version)
    rows = [
        ("refresh(conn, []) in-process, median of 10", c.median(idle), "", f"users refreshed: {idle_users}"),
        ("refresh(conn, [1]) in-process, median of 10", c.median(idle_one), "", ""),
        (f"CLI `fitpipe aggregate refresh`, median of {args.cli_runs}", cli_r, f"{cli_r / cli_v:.2f}", ""),
        (f"CLI `fitpipe --version` (baseline), median of {args.cli_runs}", cli_v, "1.00", ""),
    ]
    print(c.table(("what", "seconds", "x --version", "note"), [(a, f"{s:.4f}", x, n) for a, s, x, n in rows]))
    print(
        f"in-process: {c.median(idle):.4f} s (goal < 0.2 s); CLI overhead over start-up: "
        f"{cli_r - cli_v:.3f} s, ratio CLI refresh / --version {cli_r / cli_v:.2f}"
    )
    print()

    print("(c) full rebuild of the 30-day store, refresh(conn, [1], full=True)")
    f_med, s_med = c.median(full_seconds), c.median(scan_seconds)
    full_rate, scan_rate = raw_rows / f_med, counts["heart_rate"] / s_med
    rep = full_reports[-1]
    rows = [
        (
            "refresh full=True",
            raw_rows,
            *[f"{s:.2f}" for s in full_seconds],
            f_med,
            full_rate,
            f"{full_rate / scan_rate:.2f}",
        ),
        (
            "baseline: heart_rate 1-min scan",
            counts["heart_rate"],
            *[f"{s:.2f}" for s in scan_seconds],
            s_med,
            scan_rate,
            "1.00",
        ),
    ]
    print(c.table(("what", "rows", *[f"round {i + 1} s" for i in range(R)], "median s", "rows/s", "x baseline"), rows))
    print(
        f"full rebuild wrote {rep.days} metric-days in {rep.day_ranges} ranges: "
        + ", ".join(f"{n:,} {level} buckets" for level, n in rep.buckets.items())
        + f"; the scan returned {buckets:,} minute buckets"
    )
    print(f"ratio full-rebuild raw rows/s / scan rows/s: {full_rate / scan_rate:.2f}")


if __name__ == "__main__":
    main()
