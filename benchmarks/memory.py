"""Memory: peak RSS of a 30-day backfill against a 3-day one, 1 user, --workers 1 and --workers 2.

    .venv/bin/python benchmarks/memory.py [--keep] [--short 3] [--long 30]

Goal: memory does not grow with the range. The peak RSS of each process (the CLI parent, and
each worker) of a 30-day backfill is within 10% of the 3-day one's (ratio 30-day / 3-day <= 1.10),
and every process stays under 400 MB.

How: one database (init-db, `seed-users --count 1`, wear gaps on as by default); for each of
--workers 1 and 2, a 3-day and a 30-day `fitpipe backfill --start 2024-01-01 ... --quiet` run as
subprocesses of a small wrapper, with the data tables emptied before each run (--no-refresh while
fitpipe has no rollups module). While a run goes, its process tree is polled every 0.2 s: each
process's VmHWM (the kernel's own peak-RSS mark, /proc/<pid>/status) and current RSS; the CLI is
the wrapper's child, every process below it counts as a worker. As a cross-check the wrapper
reports resource.getrusage(RUSAGE_CHILDREN).ru_maxrss, the largest peak of any process in the tree.
RSS counts pages shared with the parent after fork in each worker too. MB = MiB. Prints figures only.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg

import _common as c

START = dt.date(2024, 1, 1)
POLL_SECONDS = 0.2
LIMIT_MB = 400
WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('ru_maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)

try:
    import psutil
except ImportError:  # fall back to /proc
    psutil = None


def children_of(pid: int) -> list[int]:
    """All descendants of pid."""
    if psutil:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def direct_children(pid: int) -> list[int]:
    if psutil:
        try:
            return [p.pid for p in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def peak_kb(pid: int) -> int:
    """max(VmHWM, VmRSS) of pid in kB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return 0
    values = [int(fields[k].split()[0]) for k in ("VmHWM", "VmRSS") if k in fields]
    return max(values, default=0)


def run_measured(command: list[str]) -> dict:
    """Run command under the wrapper; poll the tree; return wall seconds and peaks."""
    started = time.perf_counter()
    wrapper = subprocess.Popen(
        [c.interpreter(), "-c", WRAPPER, *command],
        cwd=c.ROOT,
        env=c.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cli_pid = None
    peaks: dict[int, int] = {}
    while wrapper.poll() is None:
        if cli_pid is None:
            kids = direct_children(wrapper.pid)
            cli_pid = kids[0] if kids else None
        if cli_pid is not None:
            for pid in [cli_pid, *children_of(cli_pid)]:
                kb = peak_kb(pid)
                if kb:
                    peaks[pid] = max(peaks.get(pid, 0), kb)
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    out, err = wrapper.communicate()
    if wrapper.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({wrapper.returncode}):\n{out}{err}")
    rusage_kb = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("ru_maxrss_kb"))
    workers = {pid: kb for pid, kb in peaks.items() if pid != cli_pid}
    return {
        "wall": wall,
        "parent_mb": peaks.get(cli_pid, 0) / 1024,
        "worker_mb": max(workers.values(), default=0) / 1024,
        "worker_peaks_mb": sorted((kb / 1024 for kb in workers.values()), reverse=True),
        "n_workers": len(workers),
        "rusage_mb": rusage_kb / 1024,
    }


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--short", type=int, default=3, help="days of the short backfill")
    p.add_argument("--long", type=int, default=30, help="days of the long backfill")
    args = p.parse_args()

    results = {}
    with c.bench_database("memory", keep=args.keep) as url:
        c.fitpipe(url, "seed-users", "--count", "1")
        for workers in (1, 2):
            for days in (args.short, args.long):
                with psycopg.connect(url) as conn:
                    c.truncate_data(conn)
                end = START + dt.timedelta(days=days - 1)
                command = [
                    c.interpreter(),
                    "-m",
                    "fitpipe.cli",
                    "--database-url",
                    url,
                    "backfill",
                    "--start",
                    START.isoformat(),
                    "--end",
                    end.isoformat(),
                    "--workers",
                    str(workers),
                    "--quiet",
                    *c.refresh_flags(),
                ]
                result = run_measured(command)
                with psycopg.connect(url) as conn:
                    result["user_days"], result["rows"] = conn.execute(
                        "SELECT count(*), coalesce(sum(rows_loaded), 0) FROM ingested_days"
                    ).fetchone()
                results[(workers, days)] = result

    print(
        f"memory: peak RSS (MiB) per process, backfill of 1 user, {args.short} vs {args.long} days "
        f"({'psutil' if psutil else '/proc'} polling every {POLL_SECONDS} s, VmHWM; "
        f"{' '.join(c.refresh_flags()) or 'with refresh'})"
    )
    rows = []
    for (workers, days), r in results.items():
        rows.append(
            (
                f"{days} days, --workers {workers}",
                r["user_days"],
                r["rows"],
                r["wall"],
                r["parent_mb"],
                " / ".join(f"{mb:.0f}" for mb in r["worker_peaks_mb"]) or "-",
                r["rusage_mb"],
            )
        )
    print(c.table(("run", "user-days", "rows", "wall s", "parent MB", "worker(s) MB", "rusage max MB"), rows))
    print()
    ratios = []
    for workers in (1, 2):
        short, long_ = results[(workers, args.short)], results[(workers, args.long)]
        for label, key in (("parent", "parent_mb"), ("worker (max)", "worker_mb"), ("any (rusage)", "rusage_mb")):
            ratio = long_[key] / short[key] if short[key] else float("nan")
            ratios.append(
                (
                    f"--workers {workers} {label}",
                    short[key],
                    long_[key],
                    f"{ratio:.2f}",
                    "yes" if max(short[key], long_[key]) < LIMIT_MB else "NO",
                )
            )
    print(
        c.table(
            (
                "process",
                f"{args.short}-day MB",
                f"{args.long}-day MB",
                f"ratio {args.long}/{args.short}",
                f"< {LIMIT_MB} MB",
            ),
            ratios,
        )
    )
    print(f"goal: ratio <= 1.10 and every process < {LIMIT_MB} MB")


if __name__ == "__main__":
    main()
