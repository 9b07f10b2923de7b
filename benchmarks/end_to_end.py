"""End to end: a synthetic backfill of 3 users x 14 days with 2 workers, against generation alone.

    .venv/bin/python benchmarks/end_to_end.py [--keep] [--users 3] [--days 14] [--workers 2] [--rounds 2]

Goal: the backfill is bounded by data generation, i.e. loading is hidden behind it: the ratio
end-to-end wall time / generation-only wall time is close to 1.0.

How, in one run and one database (init-db, then `seed-users --count 3`, wear gaps on as by default):
1. baseline: generation alone (SyntheticSource().fetch_day) of the same 42 user-days, in
   the same order, in a fork pool of 2 processes (wearipedia imported once before the fork, as
   runner.run_plan does), nothing returned but a count; it runs in a fresh interpreter so
   that this process never imports wearipedia and the in-process run_plan below behaves as the CLI;
2. the data tables emptied, then the real CLI in a subprocess:
   `python -m fitpipe.cli --database-url URL backfill --start 2024-01-01 --end 2024-01-14 --workers 2 --no-refresh`
   (wall time includes interpreter start and imports; rows from its ingest_runs row);
3. the data tables emptied, then the same backfill in-process with fitpipe.ingest.runner.run_plan(conn,
   plan_backfill(...), workers=2), whose RunSummary.time_split() gives the seconds spent in
   generate, parse and load summed over the workers (nothing is added to fitpipe for this);
4. the baseline again; steps 2-4 repeat --rounds times (default 2). Ratios are of the medians
   (end-to-end run / generation-only run), so drift on a shared machine hits both sides alike.
Prints figures only; absolute figures drift on shared machines, compare the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import _common as c

START = dt.date(2024, 1, 1)


def _generate(item) -> tuple[int, float]:
    from fitpipe.sources.contract import BudgetLedger, Fetch
    from fitpipe.sources.synthetic.source import SyntheticSource

    user, day = item
    started = time.perf_counter()
    payloads = SyntheticSource().fetch_day(user, day, Fetch(now=dt.datetime.now(dt.UTC), budget=BudgetLedger(None)))
    seconds = time.perf_counter() - started
    points = sum(
        len(d["heart_rate_day"][0]["activities-heart-intraday"]["dataset"]) for d in payloads["intraday_heart_rate"]
    )
    return points, seconds


def generation_only(users, days: list[dt.date], workers: int) -> tuple[float, float, int]:
    """Wall seconds, summed per-day seconds and heart-rate points of generating every user-day."""
    import wearipedia.devices.fitbit.fitbit_sense_gen  # noqa: F401  (as run_plan: import before forking)

    items = sorted(((u, d) for u in users for d in days), key=lambda t: (t[1], t[0].user_id))
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(min(workers, len(items))) as pool:
        results = list(pool.imap_unordered(_generate, items, chunksize=1))
        pool.close()
        pool.join()
    wall = time.perf_counter() - started
    return wall, sum(s for _, s in results), sum(p for p, _ in results)


def generation_only_subprocess(url: str, days: list[dt.date], workers: int) -> tuple[float, float, int]:
    """generation_only() in a fresh interpreter, so this process never imports wearipedia and
    run_plan below forks its workers exactly as the CLI would."""
    proc = subprocess.run(
        [c.interpreter(), __file__, "--generation-only", url, "--days", str(len(days)), "--workers", str(workers)],
        capture_output=True,
        text=True,
        env=c.cli_env(),
        cwd=c.ROOT,
    )
    if proc.returncode != 0:
        sys.exit(f"generation-only run failed:\n{proc.stdout}{proc.stderr}")
    return tuple(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--users", type=int, default=3)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="CLI + in-process backfill pairs, each followed by a "
        "generation-only run (there is one more before the first)",
    )
    p.add_argument("--generation-only", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    end = START + dt.timedelta(days=args.days - 1)
    days = [START + dt.timedelta(days=i) for i in range(args.days)]
    user_days = args.users * args.days

    from fitpipe.participants import list_users

    if args.generation_only:
        with psycopg.connect(args.generation_only) as conn:
            users = list_users(conn, [])
        print(json.dumps(generation_only(users, days, args.workers)))
        return

    from fitpipe.ingest.runner import plan_backfill, run_plan

    command = [
        "backfill",
        "--start",
        START.isoformat(),
        "--end",
        end.isoformat(),
        "--workers",
        str(args.workers),
        "--no-refresh",
    ]
    gens, clis, summaries = [], [], []
    with c.bench_database("e2e", keep=args.keep) as url:
        c.fitpipe(url, "seed-users", "--count", str(args.users))
        gens.append(generation_only_subprocess(url, days, args.workers))
        for _ in range(args.rounds):
            with psycopg.connect(url) as conn:
                c.truncate_data(conn)
            started = time.perf_counter()
            c.fitpipe(url, *command)
            cli_wall = time.perf_counter() - started
            with psycopg.connect(url) as conn:
                cli_days, cli_rows, cli_run_seconds = conn.execute(
                    "SELECT user_days, rows_loaded, extract(epoch FROM finished_at - started_at) "
                    "FROM ingest_runs ORDER BY run_id DESC LIMIT 1"
                ).fetchone()
                clis.append((cli_wall, cli_days, cli_rows, float(cli_run_seconds)))
                c.truncate_data(conn)
            preimported = "wearipedia" in sys.modules
            with psycopg.connect(url) as conn:
                summaries.append(
                    run_plan(conn, plan_backfill(conn, [], START, end, False), url=url, workers=args.workers)
                )
            gens.append(generation_only_subprocess(url, days, args.workers))

    gen_wall = c.median([g[0] for g in gens])
    gen_busy = c.median([g[1] for g in gens])
    cli_wall = c.median([x[0] for x in clis])
    cli_run_seconds = c.median([x[3] for x in clis])
    cli_days, cli_rows = clis[-1][1], clis[-1][2]
    e2e_wall = c.median([s.seconds for s in summaries])
    loaded, e2e_rows = summaries[-1].count("loaded"), summaries[-1].rows
    split: dict[str, float] = {}
    for summary in summaries:  # mean over the rounds
        for part, seconds in summary.time_split().items():
            split[part] = split.get(part, 0.0) + seconds / len(summaries)
    busy = sum(split.values())
    walls = lambda values: " / ".join(f"{v:.1f}" for v in values)  # noqa: E731

    print(
        f"end to end: backfill {args.users} users x {args.days} days = {user_days} user-days, "
        f"--workers {args.workers}, --no-refresh, {os.cpu_count()} CPUs; {args.rounds} round(s), "
        f"runs interleaved gen, CLI, in-process, gen, ...; medians"
    )
    print(
        c.table(
            ("run", "user-days", "rows", "wall s", "user-days/s", "rows/s", "x gen-only wall"),
            [
                ("generation only", user_days, "-", gen_wall, user_days / gen_wall, "-", "1.00"),
                ("  each run", "", "", walls([g[0] for g in gens]), "", "", ""),
                (
                    "CLI backfill (subprocess)",
                    cli_days,
                    cli_rows,
                    cli_wall,
                    cli_days / cli_wall,
                    cli_rows / cli_wall,
                    f"{cli_wall / gen_wall:.2f}",
                ),
                ("  each run", "", "", walls([x[0] for x in clis]), "", "", ""),
                (
                    "  its ingest_runs started..finished",
                    "",
                    "",
                    cli_run_seconds,
                    "",
                    "",
                    f"{cli_run_seconds / gen_wall:.2f}",
                ),
                (
                    "run_plan in-process",
                    loaded,
                    e2e_rows,
                    e2e_wall,
                    loaded / e2e_wall,
                    e2e_rows / e2e_wall,
                    f"{e2e_wall / gen_wall:.2f}",
                ),
                ("  each run", "", "", walls([s.seconds for s in summaries]), "", "", ""),
            ],
        )
    )
    print()
    print(
        f"time split of run_plan (seconds summed over {args.workers} workers, mean of the rounds; "
        f"worker capacity = {args.workers} x wall = {args.workers * e2e_wall:.1f} s)"
    )
    rows = [
        (
            part,
            split.get(part, 0.0),
            f"{split.get(part, 0.0) / busy:.0%}",
            f"{split.get(part, 0.0) / (args.workers * e2e_wall):.0%}",
        )
        for part in ("fetch", "parse", "load")
    ]
    rows.append(("sum", busy, "100%", f"{busy / (args.workers * e2e_wall):.0%}"))
    rows.append(("generation alone, same days", gen_busy, "", f"{gen_busy / (args.workers * gen_wall):.0%}"))
    print(c.table(("part", "seconds", "share of sum", "share of capacity"), rows))
    print(
        f"ratio end-to-end wall / generation-only wall: {e2e_wall / gen_wall:.2f} in-process, "
        f"{cli_wall / gen_wall:.2f} via the CLI  (goal: close to 1.0)"
    )
    generate = sorted((o.seconds.get("fetch", 0.0) for o in summaries[-1].outcomes), reverse=True)
    print(
        f"generate per user-day: {split.get('fetch', 0) / max(loaded, 1):.3f} s in the backfill "
        f"vs {gen_busy / user_days:.3f} s alone; in the last backfill the slowest {args.workers} (each worker's "
        f"first day) took {', '.join(f'{s:.2f}' for s in generate[: args.workers])} s, the median "
        f"{c.median(generate):.2f} s (wearipedia imported in this process before run_plan forked: "
        f"{'yes' if preimported else 'no'})"
    )
    floor = (gen_busy + split.get("parse", 0.0) + split.get("load", 0.0)) / gen_busy
    print(
        f"estimate if loading overlapped perfectly but shared these {os.cpu_count()} CPUs "
        f"(generation alone keeps {gen_busy / (args.workers * gen_wall):.0%} of {args.workers} workers busy): "
        f"(generate alone + parse + load) / generate alone = {floor:.2f}"
    )


if __name__ == "__main__":
    main()
