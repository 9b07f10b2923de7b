"""Takeout import: rows/s against the synthetic load path, and peak RSS against a shorter archive.

    .venv/bin/python benchmarks/takeout.py [--days 14] [--short-days 3] [--keep] [--archive-only PATH]

Goals (issue 9): the import's rows/s at least 0.8x the synthetic load path's, and the peak RSS
of a long archive within 10% of a short one's (memory does not grow with the archive).

How: a deterministic Takeout archive (Takeout/Google Health layout) for one participant, one
Global Export Data heart_rate-*.json per day at the 1-5 s spacing real exports have, plus
per-minute steps; `fitpipe import --workers 1 --no-refresh --quiet` runs in a subprocess whose
peak RSS (ru_maxrss of the process tree) is read by a small wrapper. The baseline, in the same
run and database, is `fitpipe backfill --workers 1 --no-refresh --quiet` of a synthetic
participant over as many days (wearipedia generation included, as ingest runs it). rows/s are
rows loaded / wall time of the command. `--archive-only PATH` writes the archive and stops (the
README's "try it" command).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import _common as c

START = dt.date(2024, 1, 1)
WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('ru_maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def write_archive(path: Path, days: int, seed: int = 9) -> int:
    """A Takeout .zip of `days` days of 1-5 s heart rate and per-minute steps; returns the sample count."""
    rng = np.random.default_rng(seed)
    samples = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for offset in range(days):
            day = START + dt.timedelta(days=offset)
            seconds = np.cumsum(rng.integers(1, 6, size=40_000))
            seconds = seconds[seconds < 86_400]
            bpm = (65 + 12 * np.sin(seconds / 86_400 * 2 * np.pi) + rng.normal(0, 3, len(seconds))).round()
            confidence = rng.integers(0, 4, len(seconds))
            midnight = dt.datetime.combine(day, dt.time())
            stamps = [(midnight + dt.timedelta(seconds=int(s))).strftime("%m/%d/%y %H:%M:%S") for s in seconds]
            body = [
                {"dateTime": t, "value": {"bpm": int(b), "confidence": int(k)}}
                for t, b, k in zip(stamps, bpm, confidence, strict=True)
            ]
            archive.writestr(f"Takeout/Google Health/Global Export Data/heart_rate-{day}.json", json.dumps(body))
            steps = [
                {
                    "dateTime": (midnight + dt.timedelta(minutes=m)).strftime("%m/%d/%y %H:%M:%S"),
                    "value": str(int(rng.integers(0, 40))),
                }
                for m in range(1440)
            ]
            archive.writestr(f"Takeout/Google Health/Global Export Data/steps-{day}.json", json.dumps(steps))
            samples += len(seconds)
    return samples


def timed(url: str, *args: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of the CLI and its workers."""
    started = time.perf_counter()
    proc = subprocess.run(
        [c.interpreter(), "-c", WRAPPER, *c.fitpipe_command(), "--database-url", url, *args],
        capture_output=True,
        text=True,
        env=c.cli_env(),
        cwd=c.ROOT,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"fitpipe {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    peak = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    return seconds, peak


def rows_loaded(url: str) -> int:
    with c.psycopg.connect(url) as conn:
        return conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM ingested_days").fetchone()[0]


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--short-days", type=int, default=3)
    p.add_argument("--archive-only", type=Path)
    args = p.parse_args()
    if args.archive_only:
        n = write_archive(args.archive_only, args.days)
        print(f"wrote {args.archive_only}: {args.days} days, {n:,} heart-rate samples")
        return
    with tempfile.TemporaryDirectory() as folder, c.bench_database("takeout", args.keep) as url:
        results = {}
        for label, days in (("short", args.short_days), ("long", args.days)):
            archive = Path(folder) / f"{label}.zip"
            samples = write_archive(archive, days)
            with c.psycopg.connect(url, autocommit=True) as conn:
                c.truncate_data(conn)
                conn.execute("TRUNCATE takeout_imports, users CASCADE")
            c.fitpipe(
                url, "participants", "add", "1", "--source", "takeout", "--timezone", "UTC", "--study-start", str(START)
            )
            seconds, peak = timed(
                url, "import", str(archive), "--user", "1", "--workers", "1", "--no-refresh", "--quiet"
            )
            results[label] = (days, samples, rows_loaded(url), seconds, peak, archive.stat().st_size)
        with c.psycopg.connect(url, autocommit=True) as conn:
            c.truncate_data(conn)
            conn.execute("TRUNCATE takeout_imports, users CASCADE")
        c.fitpipe(url, "seed-users", "--count", "1", "--start-date", str(START))
        end = START + dt.timedelta(days=args.days - 1)
        base_seconds, base_peak = timed(
            url, "backfill", "--start", str(START), "--end", str(end), "--workers", "1", "--no-refresh", "--quiet"
        )
        base_rows = rows_loaded(url)
    base_rate = base_rows / base_seconds
    rows = [
        [
            "synthetic backfill (baseline)",
            args.days,
            "-",
            f"{base_rows:,}",
            f"{base_seconds:.1f}",
            f"{base_rate:,.0f}",
            "1.00",
            f"{base_peak / 1024:.0f}",
        ]
    ]
    for label in ("short", "long"):
        days, samples, loaded, seconds, peak, size = results[label]
        rows.append(
            [
                f"import, {label} archive ({size / 2**20:.0f} MiB zip)",
                days,
                f"{samples:,}",
                f"{loaded:,}",
                f"{seconds:.1f}",
                f"{loaded / seconds:,.0f}",
                f"{loaded / seconds / base_rate:.2f}",
                f"{peak / 1024:.0f}",
            ]
        )
    print(c.table(["run", "days", "HR samples", "rows loaded", "s", "rows/s", "x baseline", "peak RSS MiB"], rows))
    print(
        f"peak RSS long/short: {results['long'][4] / results['short'][4]:.2f} (goal <= 1.10); "
        f"import rows/s / baseline: {results['long'][2] / results['long'][3] / base_rate:.2f} (goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
