"""`fitpipe serve`: data requests per zoom level, the participant page in headless Chromium, the cohort page.

    .venv/bin/python benchmarks/serve.py [--users 10] [--days 365] [--cohort 1000] [--runs 20] [--keep]

1. A year store built by benchmarks/scale.py's build_year (--users x --days of 1 Hz heart rate,
   rollups refreshed, settled chunks compressed). `fitpipe serve` runs as a user starts it, and for
   participant 1 the chart's data request (heart_rate, a 1,200-pixel chart: a budget of 2,400 rows)
   is timed for each zoom level: the whole span, a month, a week, a day, and an hour (the API serves
   whole local days, so an hour's view is its day's request, zoomed in the browser). p50 and p95 over
   --runs runs each (goal: p95 < 100 ms), against the same rows read straight with SQL in the same
   run (the export's own query for the same request, psycopg fetchall on one open connection).
2. The participant page (a week) opened in headless Chromium (Debian's /usr/bin/chromium) until every
   chart is drawn: p50 and max over 5 loads (goal < 1 s). Skipped, said once, when chromium or
   playwright is missing.
3. The cohort page (`/`) and its JSON for --cohort participants with a year of ledger and wear_days
   rows each (written here with SQL: adherence and status read only those), p50/p95 over --runs
   (goal < 300 ms), against the two library calls it makes (adherence + status) timed in-process.
Prints figures only; absolute figures drift on shared machines, compare the ratios.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx
import psycopg

import _common as c
from fitpipe.participants import list_users
from scale import START, build_year

CHART_POINTS = 2400
CHROMIUM = "/usr/bin/chromium"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(values: list[float]) -> tuple[str, str]:
    return f"{statistics.median(values) * 1000:.1f}", f"{p95(values) * 1000:.1f}"


@contextlib.contextmanager
def server(url: str) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**c.cli_env(), "FITPIPE_DATABASE_URL": url}
    env.pop("FITPIPE_SERVE_TOKEN", None)
    process = subprocess.Popen(
        [*c.fitpipe_command(), "serve", "--port", str(port), "--pool-size", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                sys.exit(f"fitpipe serve exited: {process.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(base + "/static/app.css", timeout=1)
                break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def zoom_levels(days: int) -> list[tuple[str, dt.date, dt.date]]:
    last = START + dt.timedelta(days=days - 1)
    mid = START + dt.timedelta(days=days // 2)
    return [
        (f"whole span ({days} d)", START, last),
        ("month", mid, mid + dt.timedelta(days=29)),
        ("week", mid, mid + dt.timedelta(days=6)),
        ("day", mid, mid),
        ("hour (its day)", mid + dt.timedelta(days=1), mid + dt.timedelta(days=1)),
    ]


def sql_baseline(url: str, start: dt.date, end: dt.date, runs: int) -> list[float]:
    """The export's query for the same request, read straight with psycopg on one connection."""
    from fitpipe.output.export import prepare

    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(runs):
            started = time.perf_counter()
            prepared = prepare(
                conn,
                metric_name="heart_rate",
                user_ids=[1],
                start=start,
                end=end,
                tz="local",
                max_rows=CHART_POINTS,
            )
            for zone, params in prepared.parts:
                with conn.transaction():
                    conn.execute(f"SET LOCAL TimeZone = '{zone}'")
                    conn.execute(prepared.query, params).fetchall()
            times.append(time.perf_counter() - started)
    return times


def data_requests(url: str, base: str, days: int, runs: int) -> list[tuple]:
    rows = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for label, start, end in zoom_levels(days):
            path = f"/api/v1/participants/1/series/heart_rate?start={start}&end={end}&points={CHART_POINTS}"
            first = client.get(path)
            if first.status_code != 200:
                sys.exit(f"{path}: {first.status_code} {first.text[:200]}")
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times.append(time.perf_counter() - started)
            baseline = sql_baseline(url, start, end, runs)
            body = first.json()
            rows.append(
                (
                    label,
                    body["resolution"],
                    f"{body['rows']:,}",
                    *ms(times),
                    *ms(baseline),
                    f"{p95(times) / p95(baseline):.1f}x",
                    "yes" if p95(times) < 0.1 else "NO",
                )
            )
    return rows


def page_loads(base: str, days: int) -> tuple[str, str] | str:
    if not os.path.exists(CHROMIUM):
        return f"skipped: {CHROMIUM} is not installed"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: playwright is not installed"
    mid = START + dt.timedelta(days=days // 2)
    url = f"{base}/participants/1?start={mid}&end={mid + dt.timedelta(days=6)}"
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        for _ in range(6):
            page.goto("about:blank")
            page.goto(url)
            page.wait_for_function("() => document.getElementById('participant').dataset.state === 'ready'")
            times.append(page.evaluate("() => performance.now()") / 1000)
        browser.close()
    times = times[1:]  # the first load also starts the browser's caches
    return f"{statistics.median(times) * 1000:.0f}", f"{max(times) * 1000:.0f}"


def build_cohort(url: str, participants: int, days: int) -> None:
    """Participants with a year of ledger and wear_days rows each: what adherence and status read."""
    c.fitpipe(url, "seed-users", "--count", str(participants), "--start-date", START.isoformat())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, state, note,
                                       retry_after, attempts)
            SELECT u, d::date, 'synthetic', 80000, '{"heart_rate": 80000}', 0,
                   CASE WHEN u %% 50 = 0 AND d::date = %(last)s THEN 'deferred' ELSE 'complete' END,
                   CASE WHEN u %% 50 = 0 AND d::date = %(last)s THEN 'not synced yet' END,
                   CASE WHEN u %% 50 = 0 AND d::date = %(last)s THEN now() END, 0
            FROM generate_series(1, %(n)s) u, generate_series(%(start)s::date, %(last)s::date, '1 day') d
            """,
            {"n": participants, "start": START, "last": START + dt.timedelta(days=days - 1)},
        )
        c.fill_wear_days(conn, participants, START, START + dt.timedelta(days=days - 1))
        conn.execute("VACUUM ANALYZE")


def cohort_figures(url: str, base: str, runs: int) -> list[tuple]:
    from fitpipe.web.cohort import cohort

    rows = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for label, path in (("cohort page /", "/"), ("its JSON /api/v1/participants", "/api/v1/participants")):
            client.get(path).raise_for_status()
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times.append(time.perf_counter() - started)
            rows.append((label, *ms(times), "yes" if p95(times) < 0.3 else "NO"))
    with psycopg.connect(url, autocommit=True) as conn:
        count = len(list_users(conn))
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            cohort(conn)
            times.append(time.perf_counter() - started)
    rows.append(("library calls alone (adherence + status)", *ms(times), ""))
    print(f"\nCohort of {count:,} participants, {runs} runs each")
    return rows


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--cohort", type=int, default=1000)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    print(f"{os.cpu_count()} cores, {dt.date.today()}; chart budget {CHART_POINTS} rows (1,200 px x 2)")
    with c.bench_database("serve_year", keep=args.keep) as url:
        built = build_year(url, args.users, args.days)
        print(f"\nYear store: {args.users} participants x {args.days} days, {built['rows']:,} heart-rate rows")
        with server(url) as base:
            rows = data_requests(url, base, args.days, args.runs)
            print(f"heart_rate of participant 1 per zoom level, {args.runs} runs each (ms)")
            print(
                c.table(
                    ("view", "resolution", "rows", "API p50", "API p95", "SQL p50", "SQL p95", "p95 ratio", "< 100 ms"),
                    rows,
                )
            )
            loads = page_loads(base, args.days)
            if isinstance(loads, str):
                print(f"\nparticipant page in headless Chromium: {loads}")
            else:
                print(f"\nparticipant page (a week) in headless Chromium, drawn: p50 {loads[0]} ms, max {loads[1]} ms")
    with c.bench_database("serve_cohort", keep=args.keep) as url:
        build_cohort(url, args.cohort, args.days)
        with server(url) as base:
            print(c.table(("request", "p50 ms", "p95 ms", "< 300 ms"), cohort_figures(url, base, args.runs)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
