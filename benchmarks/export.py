"""Raw CSV export: `fitpipe export` against psql's \\copy of the same query, and its memory.

    .venv/bin/python benchmarks/export.py [--keep] [--repeats 3] [--days 30]

Data: one participant (UTC, synthetic source with its wear gaps), 2024-01-01 .. +--days, loaded
with the real CLI (seed-users, backfill --no-refresh): about 2.4 M heart-rate rows for 30 days.

Throughput: wall time of the whole process, `fitpipe export --metric heart_rate --resolution
raw --output FILE` (the console script, start-up included), against `psql URL -c "SET
TimeZone='UTC'" -c "\\copy (QUERY) to FILE with csv header"`, where QUERY is the very SQL fitpipe
runs: fitpipe.output.export._raw_query bound with psycopg.ClientCursor.mogrify exactly as
fitpipe.output.export._stream does. One untimed warm-up of each, then --repeats rounds alternating
which goes first; medians. The client process's own CPU time (user + sys, from wait4) is
printed too: it does not include the server's work and drifts less with machine load.
Goal: fitpipe rows/s >= 0.8x psql rows/s. The two files are compared byte for byte.

Store.frame: the same raw range read into a DataFrame in this process, with binary COPY (as
shipped, fitpipe.output.frames) against pandas.read_sql (the path it falls back to, the
baseline), --repeats rounds alternating, medians; the two frames are compared value for value.

Memory: peak RSS (VmHWM polled from /proc) of the export for 1 day against 30 days, both
with --start/--end, and of the timed whole-range export (no --start/--end); goal: flat.
`fitpipe --version` (interpreter + CLI start-up) is printed as the floor. Prints figures only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import _common as c
from fitpipe.catalogue import metric as metric_named
from fitpipe.db import connect
from fitpipe.output.export import _bounds, _raw_query
from fitpipe.participants import list_users

START = dt.date(2024, 1, 1)


def _hwm_kib(pid: int) -> int:
    """VmHWM (peak resident set of the current program image) from /proc, in KiB; 0 once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(command: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + sys) of one process, which must succeed.

    Peak RSS is VmHWM polled every 5 ms from /proc. (ru_maxrss from wait4/RUSAGE_CHILDREN is not
    used: Linux carries the forking parent's high-water mark across exec, so every child would
    read at least as large as this ~40 MB benchmark process.)
    """
    peak = [0]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=c.ROOT, env=c.cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _hwm_kib(proc.pid))
            done.wait(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    err = proc.stderr.read().decode()  # small; EOF when the process exits
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed ({proc.returncode}): {err}")
    return seconds, peak[0], usage.ru_utime + usage.ru_stime


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def first_difference(a: Path, b: Path) -> str:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for n, (la, lb) in enumerate(zip(fa, fb, strict=False), 1):
            if la != lb:
                return f"line {n}: fitpipe {la[:120]!r} vs psql {lb[:120]!r}"
    return "one file is a prefix of the other"


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--days", type=int, default=30)
    args = p.parse_args()
    if not shutil.which("psql"):
        sys.exit("psql is not on PATH; it is the baseline")
    last = START + dt.timedelta(days=args.days - 1)
    one_day = START + dt.timedelta(days=args.days // 2)
    fitpipe = c.fitpipe_command()
    work = Path(tempfile.mkdtemp(prefix="fitpipe_bench_export_"))

    try:
        with c.bench_database("export", keep=args.keep) as url:
            c.fitpipe(url, "seed-users", "--count", "1")
            started = time.perf_counter()
            c.fitpipe(
                url,
                "backfill",
                "--start",
                START.isoformat(),
                "--end",
                last.isoformat(),
                "--workers",
                "2",
                "--no-refresh",
                "--quiet",
            )
            backfill_seconds = time.perf_counter() - started

            with connect(url) as conn:
                rows = conn.execute("SELECT count(*) FROM heart_rate").fetchone()[0]
                rows_one_day = conn.execute(
                    "SELECT count(*) FROM heart_rate WHERE ts >= %s AND ts < %s",
                    (
                        dt.datetime.combine(one_day, dt.time(), dt.UTC),
                        dt.datetime.combine(one_day + dt.timedelta(days=1), dt.time(), dt.UTC),
                    ),
                ).fetchone()[0]
                conn.commit()
                # The SQL fitpipe runs, bound the way fitpipe.output.export._stream binds it.
                metric = metric_named("heart_rate")
                user = list_users(conn, [1])[0]
                lo, hi = _bounds(user, None, None)
                params = {
                    "user_id": user.user_id,
                    "metric": metric.name,
                    "lo": lo,
                    "hi": hi,
                    "lo_day": dt.date(1970, 1, 1),
                    "hi_day": dt.date(9999, 1, 1),
                }
                bound = psycopg.ClientCursor(conn).mogrify(_raw_query(metric, False), params)
                server = conn.execute(
                    "SELECT split_part(version(), ' ', 2), "
                    "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
                ).fetchone()
            with connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE heart_rate")

            fitpipe_file, psql_file = work / "fitpipe.csv", work / "psql.csv"
            export_cmd = [
                *fitpipe,
                "--database-url",
                url,
                "export",
                "--metric",
                "heart_rate",
                "--resolution",
                "raw",
                "--output",
                str(fitpipe_file),
            ]
            psql_cmd = [
                "psql",
                url,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "SET TimeZone = 'UTC'",
                "-c",
                f"\\copy ({bound}) to '{psql_file}' with csv header",
            ]
            methods = {"fitpipe export (CLI)": export_cmd, "psql \\copy (baseline)": psql_cmd}
            seconds: dict[str, list[float]] = {name: [] for name in methods}
            rss: dict[str, list[int]] = {name: [] for name in methods}
            cpu: dict[str, list[float]] = {name: [] for name in methods}
            for command in methods.values():  # warm-up: caches, the console script's imports
                run(command)
            order = list(methods)
            for round_ in range(args.repeats):
                for name in order if round_ % 2 == 0 else order[::-1]:
                    s, r, u = run(methods[name])
                    seconds[name].append(s)
                    rss[name].append(r)
                    cpu[name].append(u)

            same = fitpipe_file.stat().st_size == psql_file.stat().st_size and sha256(fitpipe_file) == sha256(psql_file)
            with open(fitpipe_file, "rb") as f:
                lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
            sizes = (fitpipe_file.stat().st_size, psql_file.stat().st_size)
            difference = "" if same else first_difference(fitpipe_file, psql_file)

            # Memory: 1 day against the whole range, and the start-up floor.
            day_file = work / "one_day.csv"
            day_cmd = [
                *fitpipe,
                "--database-url",
                url,
                "export",
                "--metric",
                "heart_rate",
                "--resolution",
                "raw",
                "--start",
                one_day.isoformat(),
                "--end",
                one_day.isoformat(),
                "--output",
                str(day_file),
            ]
            range_file = work / "range.csv"
            range_cmd = [
                *fitpipe,
                "--database-url",
                url,
                "export",
                "--metric",
                "heart_rate",
                "--resolution",
                "raw",
                "--start",
                START.isoformat(),
                "--end",
                last.isoformat(),
                "--output",
                str(range_file),
            ]
            mem = {
                "fitpipe --version (start-up floor)": [run([*fitpipe, "--version"])[1] for _ in range(args.repeats)],
                "fitpipe export --start/--end, 1 day": [run(day_cmd)[1] for _ in range(args.repeats)],
                f"fitpipe export --start/--end, {args.days} days": [run(range_cmd)[1] for _ in range(args.repeats)],
                f"fitpipe export, no range ({args.days} days; timed runs)": rss["fitpipe export (CLI)"],
                f"psql \\copy, {args.days} days (timed runs)": rss["psql \\copy (baseline)"],
            }
            frames = time_frames(url, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"raw heart-rate export, 1 participant, {args.days} days ({START} .. {last}), PostgreSQL {server[0]}, "
        f"TimescaleDB {server[1]}; {args.repeats} rounds, medians; backfill took {backfill_seconds:.1f} s"
    )
    print(
        f"{rows:,} heart-rate rows ({rows_one_day:,} on {one_day}); wall time of the whole process, start-up included"
    )
    base_rate = rows / c.median(seconds["psql \\copy (baseline)"])
    out = []
    for name in methods:
        med = c.median(seconds[name])
        out.append(
            (
                name,
                rows,
                *[f"{s:.2f}" for s in seconds[name]],
                med,
                rows / med,
                f"{rows / med / base_rate:.2f}",
                f"{c.median(cpu[name]):.2f}",
            )
        )
    print(
        c.table(
            (
                "method",
                "rows",
                *[f"round {i + 1} s" for i in range(args.repeats)],
                "median s",
                "rows/s",
                "x psql",
                "client CPU s",
            ),
            out,
        )
    )
    fit_rate = rows / c.median(seconds["fitpipe export (CLI)"])
    print(f"ratio fitpipe / psql rows/s: {fit_rate / base_rate:.2f}  (goal >= 0.8)")
    print(
        f"files: fitpipe {sizes[0]:,} bytes, psql {sizes[1]:,} bytes, {lines:,} lines (header + {lines - 1:,} rows); "
        + ("identical content (same size and SHA-256)" if same else f"CONTENT DIFFERS: {difference}")
    )
    print()
    floor = c.median(mem["fitpipe --version (start-up floor)"])
    day = c.median(mem["fitpipe export --start/--end, 1 day"])
    full = c.median(mem[f"fitpipe export --start/--end, {args.days} days"])
    whole = c.median(mem[f"fitpipe export, no range ({args.days} days; timed runs)"])
    out = [
        (name, f"{c.median(v) / 1024:.1f}", f"{max(v) / 1024:.1f}", f"{c.median(v) / day:.2f}")
        for name, v in mem.items()
    ]
    print(c.table(("process (peak RSS = VmHWM)", "median MB", "max MB", "x 1-day export"), out))
    print(
        f"peak RSS {args.days} days / 1 day (both --start/--end): {full / day:.2f}  (goal: flat, ~1.0); "
        f"above the --version floor: 1 day +{(day - floor) / 1024:.1f} MB, "
        f"{args.days} days +{(full - floor) / 1024:.1f} MB, "
        f"no range +{(whole - floor) / 1024:.1f} MB"
    )
    print()
    base = c.median(frames["seconds"]["read_sql (baseline)"])
    print(
        c.table(
            ("Store.frame, raw, whole range, tz=utc", "rows", "median s", "rows/s", "x read_sql", "x psql"),
            [
                (
                    name,
                    frames["rows"],
                    c.median(v),
                    frames["rows"] / c.median(v),
                    f"{base / c.median(v):.2f}",
                    f"{frames['rows'] / c.median(v) / base_rate:.2f}",
                )
                for name, v in frames["seconds"].items()
            ],
        )
    )
    print("the two frames are " + ("equal, value for value" if frames["same"] else "DIFFERENT"))


def time_frames(url: str, repeats: int) -> dict:
    """Store.frame of the raw range in this process: binary COPY (as shipped) against the
    read_sql path it falls back to (the baseline), alternating; the frames are compared."""
    import pandas as pd

    import fitpipe
    import fitpipe.output.frames as frames

    shipped = frames.read_columns
    ways = {"binary COPY (as shipped)": shipped, "read_sql (baseline)": lambda *args: None}
    seconds: dict = {name: [] for name in ways}
    got = {}
    for round_ in range(repeats):
        for name in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
            frames.read_columns = ways[name]
            started = time.perf_counter()
            got[name] = fitpipe.connect(url).frame("heart_rate", users=[1], resolution="raw", tz="utc", max_rows=10**9)
            seconds[name].append(time.perf_counter() - started)
    frames.read_columns = shipped
    fast, ordinary = got["binary COPY (as shipped)"], got["read_sql (baseline)"]
    try:
        pd.testing.assert_frame_equal(fast, ordinary.astype(fast.dtypes), check_exact=True)
        same = True
    except AssertionError:
        same = False
    return {"seconds": seconds, "rows": len(fast), "same": same}


if __name__ == "__main__":
    main()
