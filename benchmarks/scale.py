"""Scale: a cohort night, a year of one store, and the disk a 1,000-participant year needs.

    .venv/bin/python benchmarks/scale.py [--users 1000] [--days 1] [--workers 2]
                                         [--year-users 10] [--year-days 365] [--skip-night] [--skip-year] [--keep]

Needs the community edition for the compression figures (on Apache they are skipped, said once).

1. A cohort night (--users x --days, default 1,000 x 1; `--users 50` is a CI-sized run):
   `fitpipe seed-users`, then the real CLI `backfill --no-refresh --workers W` and `aggregate refresh`
   in subprocesses, each polled for peak RSS per process (benchmarks/memory.py). Reported: wall time,
   rows/s, the refresh's share, peak RSS, and the floor: CPU seconds of fitpipe's processes
   (generation, parsing, encoding) plus CPU seconds of the server's processes over both commands,
   divided by the cores; ratio wall / floor (goal <= 1.25).
   Refresh against its baseline in the same run: the same change records refreshed one participant
   per call with every level rebuilt from raw rows (the shape before set-based refresh and before
   the loader wrote the 1-minute rows), then set-based from raw rows, then as run (the loader's
   1-minute rows kept, the levels above rebuilt); goal <= 0.02 s per participant-day. All must give
   the same rollup_1min and rollup_1h bits.
   Rollup bytes per row: rollup_1min against a copy in the old row shape (text metric/field) made here.
   Bytes per participant-day per table before and after compression: `fitpipe maintain` compresses
   what is settled, then every remaining chunk of those tables is compressed here so each table's ratio shows.
2. A year of one store (--year-users x --year-days, default 10 x 365): a numpy generator (1 Hz heart rate,
   a daily rhythm plus a random walk, wear gaps: a charging hour and some nights off) COPYs through
   fitpipe's loader, writes ledger rows and change records, and a month at a time refresh() + maintain()
   run, so the store is compressed as it grows. Then every Grafana panel's SQL (as tests/test_dashboards.py
   expands it, as the read-only role) for one participant over 1 day (1 min buckets), 90 days (1 h) and
   the whole span (1 d), 10 runs each: p95 (goal < 100 ms); `fitpipe export` raw for one day against
   psql \\copy of the same query (goal >= 0.8x); 1 h for 90 days and 1 d for the span; and Store.frame.
3. Disk arithmetic for 1,000 participants x 365 days from part 1's bytes per participant-day.
Prints figures only; absolute figures drift on shared machines, compare the ratios.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
import psycopg

import _common as c
import memory
from fitpipe.catalogue import INTRADAY
from fitpipe.db import connect
from fitpipe.derive.maintain import compressed_tables, configure_compression, edition, maintain, storage_report
from fitpipe.derive.rollups import refresh

START = dt.date(2024, 1, 1)
CORES = os.cpu_count() or 1
RAW_TABLES = tuple(m.table for m in INTRADAY)


# ---------------------------------------------------------------------------------------------
# CPU of the server: the postmaster's own and reaped children's time, plus its live children.


def server_pid(conn: psycopg.Connection) -> int:
    data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    conn.rollback()
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


def _stat_seconds(pid: int, with_children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if with_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(postmaster: int) -> float:
    return _stat_seconds(postmaster, True) + sum(_stat_seconds(p, False) for p in memory.direct_children(postmaster))


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(url: str, *args: str) -> list[str]:
    return [*c.fitpipe_command(), "--database-url", url, *args]


# ---------------------------------------------------------------------------------------------
# 1. A cohort night


def compress_everything(conn: psycopg.Connection) -> None:
    """Every chunk of the compressible tables, so each table's compressed size can be read."""
    for target in compressed_tables():
        for (chunk,) in conn.execute("SELECT show_chunks(%s::regclass)::text", (target.table,)).fetchall():
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
            conn.commit()


def rollup_row_bytes(conn: psycopg.Connection) -> tuple[float, float, int]:
    """Bytes per rollup_1min row (heap and primary key), lean, and in the old text shape copied here."""
    rows = conn.execute("SELECT count(*) FROM rollup_1min").fetchone()[0]
    lean = conn.execute("SELECT hypertable_size('rollup_1min')").fetchone()[0]
    conn.execute("DROP TABLE IF EXISTS bench_rollup_text")
    conn.execute("""CREATE TABLE bench_rollup_text (
        user_id integer NOT NULL, metric text NOT NULL, field text NOT NULL, bucket timestamptz NOT NULL,
        n_measured integer NOT NULL, sum_measured double precision NOT NULL, min_measured real, max_measured real,
        n_imputed integer NOT NULL, sum_imputed double precision NOT NULL, min_imputed real, max_imputed real,
        PRIMARY KEY (user_id, metric, field, bucket))""")
    conn.execute(
        "SELECT create_hypertable('bench_rollup_text', 'bucket', chunk_time_interval => interval '7 days', "
        "create_default_indexes => false)"
    )
    # Inserted in the order a refresh writes them (per participant and metric, by time).
    conn.execute(
        "INSERT INTO bench_rollup_text SELECT user_id, metric::text, field::text, bucket, n_measured, sum_measured, "
        "min_measured, max_measured, n_imputed, sum_imputed, min_imputed, max_imputed FROM rollup_1min "
        "ORDER BY user_id, metric, bucket, field"
    )
    text_shape = conn.execute("SELECT hypertable_size('bench_rollup_text')").fetchone()[0]
    conn.execute("DROP TABLE bench_rollup_text")
    conn.commit()
    return lean / rows, text_shape / rows, rows


def night(url: str, users: int, days: int, workers: int) -> dict:
    last = START + dt.timedelta(days=days - 1)
    os.environ["FITPIPE_TODAY"] = (last + dt.timedelta(days=5)).isoformat()
    c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat())
    with connect(url) as conn:
        postmaster = server_pid(conn)
        community = edition(conn) == "community"
    cpu_server, cpu_client = server_cpu(postmaster), client_cpu()
    load = memory.run_measured(
        cli(
            url,
            "backfill",
            "--start",
            START.isoformat(),
            "--end",
            last.isoformat(),
            "--workers",
            str(workers),
            "--no-refresh",
            "--quiet",
        )
    )
    with connect(url) as conn:
        pending = conn.execute("SELECT user_id, metric, lo, hi, minutes_current FROM rollup_invalidations").fetchall()
        conn.commit()
    roll = memory.run_measured(cli(url, "aggregate", "refresh"))
    cpu_server, cpu_client = server_cpu(postmaster) - cpu_server, client_cpu() - cpu_client
    out: dict = {
        "users": users,
        "days": days,
        "workers": workers,
        "load": load,
        "refresh": roll,
        "cpu_server": cpu_server,
        "cpu_client": cpu_client,
        "community": community,
    }
    with connect(url) as conn:
        out["rows"] = int(conn.execute("SELECT coalesce(sum(rows_loaded), 0) FROM ingest_runs").fetchone()[0])
        checksum = (
            "SELECT md5(string_agg(r::text, '|' ORDER BY r::text)) FROM rollup_1min r",
            "SELECT md5(string_agg(r::text, '|' ORDER BY r::text)) FROM rollup_1h r",
        )
        after_cli = [conn.execute(q).fetchone()[0] for q in checksum]

        def replay_changes(from_raw: bool) -> None:
            """The night's change records again on emptied rollups, so each timed refresh does the same
            work. from_raw: as before the loader wrote the minutes (every level rebuilt from raw rows);
            otherwise as loaded (the loader's 1-minute rows stay, the levels above are rebuilt)."""
            conn.execute("TRUNCATE rollup_1h, rollup_1d, rollup_invalidations" + (", rollup_1min" if from_raw else ""))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO rollup_invalidations (user_id, metric, lo, hi, minutes_current) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(*row[:4], row[4] and not from_raw) for row in pending],
                )
            conn.commit()

        # Baseline: the old shape, every level from raw rows, one participant per call.
        replay_changes(from_raw=True)
        started = time.perf_counter()
        for user_id in sorted({row[0] for row in pending}):
            refresh(conn, [user_id])
        out["per_user_refresh"] = time.perf_counter() - started
        per_user = [conn.execute(q).fetchone()[0] for q in checksum]
        replay_changes(from_raw=True)
        started = time.perf_counter()
        refresh(conn)
        out["set_based_raw_refresh"] = time.perf_counter() - started
        set_based_raw = [conn.execute(q).fetchone()[0] for q in checksum]
        replay_changes(from_raw=False)
        started = time.perf_counter()
        refresh(conn)
        out["set_based_refresh"] = time.perf_counter() - started
        out["same_rollups"] = (
            [conn.execute(q).fetchone()[0] for q in checksum] == per_user == set_based_raw == after_cli
        )
        conn.commit()
        out["lean_row"], out["text_row"], out["rollup_rows"] = rollup_row_bytes(conn)
        out["before"] = {t["table"]: t["bytes"] for t in storage_report(conn)}
        if community:
            out["maintain"] = memory.run_measured(cli(url, "maintain"))["wall"]
            out["after_maintain"] = {t["table"]: t["bytes"] for t in storage_report(conn)}
            started = time.perf_counter()
            compress_everything(conn)
            out["compress_all"] = time.perf_counter() - started
            out["after"] = {t["table"]: t["bytes"] for t in storage_report(conn)}
            # What a re-ingest of a compressed day costs, against the same re-ingest uncompressed.
            forced = cli(
                url,
                "backfill",
                "--start",
                START.isoformat(),
                "--end",
                START.isoformat(),
                "--force",
                "--workers",
                str(workers),
                "--quiet",
                *[a for u in range(1, min(users, 10) + 1) for a in ("--user", str(u))],
            )
            out["reingest_compressed"] = memory.run_measured(forced)["wall"]
            conn.execute("SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('heart_rate') c")
            conn.commit()
            out["reingest_uncompressed"] = memory.run_measured(forced)["wall"]
    return out


def print_night(r: dict) -> None:
    pdays = r["users"] * r["days"]
    load, roll = r["load"]["wall"], r["refresh"]["wall"]
    wall = load + roll
    floor = (r["cpu_client"] + r["cpu_server"]) / CORES
    print(
        f"\n== a cohort night: {r['users']} participants x {r['days']} day(s), "
        f"--workers {r['workers']}, {CORES} cores =="
    )
    print(
        c.table(
            ["what", "figure"],
            [
                ("rows loaded", r["rows"]),
                ("backfill wall (s)", load),
                ("aggregate refresh wall (s)", roll),
                ("total wall (s)", wall),
                ("rows/s (total wall)", r["rows"] / wall),
                ("refresh share of the wall", f"{roll / wall:.0%}"),
                (
                    "peak RSS parent / worker, backfill (MB)",
                    f"{r['load']['parent_mb']:.0f} / {r['load']['worker_mb']:.0f}",
                ),
                ("peak RSS, refresh (MB)", f"{r['refresh']['parent_mb']:.0f}"),
                ("CPU s: fitpipe processes / server", f"{r['cpu_client']:.1f} / {r['cpu_server']:.1f}"),
                ("floor = CPU s / cores (s)", floor),
                ("ratio wall / floor (goal <= 1.25)", f"{wall / floor:.2f}"),
            ],
        )
    )
    print(
        c.table(
            ["refresh", "seconds", "s per participant-day", "x baseline"],
            [
                (
                    "one participant per call, in-process (baseline)",
                    r["per_user_refresh"],
                    r["per_user_refresh"] / pdays,
                    "1.00",
                ),
                (
                    "set-based, every level from raw rows",
                    r["set_based_raw_refresh"],
                    r["set_based_raw_refresh"] / pdays,
                    f"{r['set_based_raw_refresh'] / r['per_user_refresh']:.2f}",
                ),
                (
                    "set-based, minutes written by the loader (as run)",
                    r["set_based_refresh"],
                    r["set_based_refresh"] / pdays,
                    f"{r['set_based_refresh'] / r['per_user_refresh']:.2f}",
                ),
                (
                    "as run, through the CLI (start-up included)",
                    roll,
                    roll / pdays,
                    f"{roll / r['per_user_refresh']:.2f}",
                ),
            ],
        )
    )
    print(
        f"all refreshes and the loader give the same rollup_1min and rollup_1h bits: {r['same_rollups']}; "
        "goal <= 0.02 s per participant-day"
    )
    print(
        c.table(
            ["rollup_1min row shape", "bytes/row (heap + key)", "x text shape"],
            [
                ("text metric/field, old column order (baseline)", r["text_row"], "1.00"),
                ("enums, widest column first (0010)", r["lean_row"], f"{r['lean_row'] / r['text_row']:.2f}"),
            ],
        )
        + f"\n({r['rollup_rows']:,} rows)"
    )
    if not r["community"]:
        print("compression figures skipped: the server runs the Apache edition")
        return
    rows = []
    for table in sorted(r["before"], key=lambda t: -r["before"][t]):
        before, after = r["before"][table] / pdays, r["after"][table] / pdays
        rows.append((table, before, after, f"{before / after:.1f}" if after else "-"))
    total_before, total_after = sum(r["before"].values()) / pdays, sum(r["after"].values()) / pdays
    rows.append(("all tables", total_before, total_after, f"{total_before / total_after:.1f}"))
    print(c.table(["bytes per participant-day", "uncompressed", "compressed", "ratio"], rows))
    print(
        f"fitpipe maintain (settled chunks only): {r['maintain']:.1f} s, left "
        f"{sum(r['after_maintain'].values()) / pdays:,.0f} bytes per participant-day; compressing every "
        f"remaining chunk here: {r['compress_all']:.1f} s"
    )
    print(
        f"re-ingest (backfill --force) of day 1 for {min(r['users'], 10)} participants: compressed chunks "
        f"{r['reingest_compressed']:.1f} s vs uncompressed {r['reingest_uncompressed']:.1f} s "
        f"(x{r['reingest_compressed'] / r['reingest_uncompressed']:.2f})"
    )
    disk(r)


def disk(r: dict) -> None:
    pdays = r["users"] * r["days"]
    per_day = {t: (r["before"][t] / pdays, r["after"][t] / pdays) for t in r["before"]}
    raw = [t for t in per_day if t in RAW_TABLES]
    year = 1000 * 365
    plain = sum(b for b, _ in per_day.values()) * year
    packed = sum(a for _, a in per_day.values()) * year
    # 180 days of raw data, the rest (rollups, daily tables, sleep) for the year; compressed.
    kept = 1000 * (
        180 * sum(per_day[t][1] for t in raw) + 365 * sum(a for t, (_, a) in per_day.items() if t not in raw)
    )
    print(
        c.table(
            ["1,000 participants x 365 days", "disk"],
            [
                ("uncompressed", f"{plain / 1e12:.2f} TB"),
                ("compressed", f"{packed / 1e9:.0f} GB"),
                ("compressed, raw kept 180 days", f"{kept / 1e9:.0f} GB"),
            ],
        )
    )


# ---------------------------------------------------------------------------------------------
# 2. A year of one store


def heart_rate_day(rng: np.random.Generator, day: dt.date, offset_hours: float) -> tuple[np.ndarray, np.ndarray]:
    """One local day at 1 Hz: a daily rhythm, a bounded random walk, a charging hour, some nights off."""
    seconds = np.arange(86400)
    rhythm = 68 + 12 * np.sin((seconds / 86400 - 0.3) * 2 * np.pi)
    walk = np.clip(np.cumsum(rng.integers(-1, 2, 86400)), -15, 25)
    bpm = np.clip(rhythm + walk, 40, 190).astype(np.float32)
    keep = np.ones(86400, bool)
    charge = int(rng.integers(6 * 3600, 20 * 3600))
    keep[charge : charge + 3600] = False
    if rng.random() < 0.1:  # a night off: from 22:00 on
        keep[22 * 3600 :] = False
    start = np.datetime64(day.isoformat()) - np.timedelta64(int(offset_hours * 3600), "s")
    ts = (start + seconds[keep].astype("timedelta64[s]")).astype("datetime64[us]")
    return ts, bpm[keep]


def build_year(url: str, users: int, days: int) -> dict:
    from fitpipe.copybin import copy_rows

    heart = next(m for m in INTRADAY if m.table == "heart_rate")

    c.fitpipe(url, "seed-users", "--count", str(users), "--start-date", START.isoformat(), "--timezone", "UTC")
    rng = np.random.default_rng(11)
    rows = 0
    timings = {"load": 0.0, "refresh": 0.0, "maintain": 0.0}
    with connect(url) as conn:
        community = edition(conn) == "community"
        for month_start in range(0, days, 30):
            month = [START + dt.timedelta(days=d) for d in range(month_start, min(days, month_start + 30))]
            started = time.perf_counter()
            for user_id in range(1, users + 1):
                for day in month:
                    ts, bpm = heart_rate_day(rng, day, 0)
                    with conn.cursor() as cur:
                        n = copy_rows(
                            cur,
                            "heart_rate",
                            heart.column_names,
                            [col.pg_type for col in heart.columns],
                            (np.full(len(ts), user_id, np.int32), ts, bpm),
                        )
                    rows += n
                    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
                    conn.execute(
                        "INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, "
                        "state) VALUES (%s, %s, 'synthetic', %s, jsonb_build_object('heart_rate', %s::int), 0, "
                        "'complete')",
                        (user_id, day, n, n),
                    )
                    conn.execute(
                        "INSERT INTO rollup_invalidations (user_id, metric, lo, hi) VALUES (%s, 'heart_rate', %s, %s)",
                        (user_id, lo, lo + dt.timedelta(days=1)),
                    )
                conn.commit()
            timings["load"] += time.perf_counter() - started
            started = time.perf_counter()
            refresh(conn)
            timings["refresh"] += time.perf_counter() - started
            started = time.perf_counter()
            maintain(conn)
            timings["maintain"] += time.perf_counter() - started
            print(f"  year store: {month[-1]} loaded ({rows:,} rows)", file=sys.stderr)
        if community:
            configure_compression(conn)
            conn.commit()
        storage = {t["table"]: t for t in storage_report(conn)}
        conn.commit()
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"rows": rows, "timings": timings, "storage": storage, "users": users, "days": days}


def panel_latencies(url: str, days: int) -> list[tuple]:
    import test_dashboards as dash

    end = dt.datetime.combine(START + dt.timedelta(days=days), dt.time(), dt.UTC)
    spans = (
        ("1 day", dt.timedelta(days=1), "1m"),
        ("90 days", dt.timedelta(days=min(90, days)), "1h"),
        (f"{days} days", dt.timedelta(days=days), "1d"),
    )
    results = []
    with psycopg.connect(url) as conn:
        for span_name, length, interval in spans:
            start = end - length
            for dashboard, _uid, panel, _ref, _fmt, sql in dash.QUERIES:
                board = dash.load(dash.DASHBOARD_DIR / dashboard)
                values = {}
                for variable in board.get("templating", {}).get("list", []):
                    kind, name = variable.get("type"), variable["name"]
                    if kind == "query":
                        _, found = dash.run(conn, dash.expand(dash.variable_query(variable), values, start, end, "1h"))
                        values[name] = "1" if name == "participant" else str(found[0][0]) if found else ""
                    elif kind in ("textbox", "constant", "custom"):
                        current = variable.get("current", {}).get("value")
                        values[name] = str(
                            current if current not in (None, "") else variable.get("query", "").split(",")[0]
                        )
                expanded = dash.expand(sql, values, start, end, interval)
                dash.run(conn, expanded)  # warm
                times = []
                for _ in range(10):
                    started = time.perf_counter()
                    dash.run(conn, expanded)
                    times.append(time.perf_counter() - started)
                times.sort()
                results.append(
                    (
                        f"{dashboard.removesuffix('.json')}: {panel}",
                        span_name,
                        times[len(times) // 2] * 1000,
                        times[min(len(times) - 1, int(0.95 * len(times)))] * 1000,
                    )
                )
    return results


def export_figures(url: str, days: int) -> list[tuple]:
    import fitpipe
    from fitpipe.output.export import prepare

    last_day = START + dt.timedelta(days=days - 1)
    requests = (
        ("raw, 1 day", "raw", last_day, last_day),
        (f"raw, {min(30, days)} days", "raw", last_day - dt.timedelta(days=min(30, days) - 1), last_day),
        ("1h, 90 days", "1h", last_day - dt.timedelta(days=min(90, days) - 1), last_day),
        (f"1d, {days} days", "1d", START, last_day),
    )
    out = []
    with tempfile.TemporaryDirectory() as work, connect(url) as conn:
        store = fitpipe.connect(url)
        for name, resolution, first, last in requests:
            target = Path(work, "fitpipe.csv")
            command = cli(
                url,
                "export",
                "--metric",
                "heart_rate",
                "--user",
                "1",
                "--start",
                first.isoformat(),
                "--end",
                last.isoformat(),
                "--resolution",
                resolution,
                "--output",
                str(target),
            )
            prepared = prepare(
                conn, metric_name="heart_rate", user_ids=[1], start=first, end=last, resolution=resolution
            )
            bound = psycopg.ClientCursor(conn).mogrify(prepared.query, prepared.parts[0][1])
            conn.commit()
            psql_file = Path(work, "psql.csv")
            psql = [
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
            timings = {"fitpipe": [], "psql": [], "frame": []}
            for _ in range(3):
                for key, cmd in (("fitpipe", command), ("psql", psql)):
                    started = time.perf_counter()
                    subprocess.run(cmd, check=True, capture_output=True, env=c.cli_env())
                    timings[key].append(time.perf_counter() - started)
                started = time.perf_counter()
                frame = store.frame("heart_rate", users=[1], start=first, end=last, resolution=resolution, tz="utc")
                timings["frame"].append(time.perf_counter() - started)
            lines = sum(1 for _ in target.open()) - 1
            same = target.read_bytes() == psql_file.read_bytes()
            f, p = c.median(timings["fitpipe"]), c.median(timings["psql"])
            out.append(
                (name, lines, p, f, f"{p / f:.2f}", c.median(timings["frame"]), len(frame), "yes" if same else "no")
            )
    return out


def print_year(r: dict, panels: list[tuple], exports: list[tuple]) -> None:
    print(f"\n== a year of one store: {r['users']} participants x {r['days']} days of 1 Hz heart rate ==")
    t = r["timings"]
    print(
        f"{r['rows']:,} rows; load {t['load']:.0f} s ({r['rows'] / t['load']:,.0f} rows/s), "
        f"refresh {t['refresh']:.0f} s, "
        f"maintain {t['maintain']:.0f} s (month by month)"
    )
    rows = [
        (name, s["bytes"], s["before_compression_bytes"], s["compressed_bytes"], s["ratio"] or "-")
        for name, s in r["storage"].items()
        if s["bytes"] > 100_000
    ]
    print(c.table(["table", "bytes now", "before compression", "compressed part", "ratio"], rows))
    print(c.table(["panel", "span", "median ms", "p95 ms"], panels))
    worst = max(p[3] for p in panels)
    print(f"slowest panel p95: {worst:.0f} ms (goal < 100 ms)")
    print(
        c.table(
            [
                "export, participant 1",
                "rows",
                "psql \\copy s",
                "fitpipe export s",
                "x psql",
                "Store.frame s",
                "frame rows",
                "same bytes",
            ],
            exports,
        )
    )


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--year-users", type=int, default=10)
    p.add_argument("--year-days", type=int, default=365)
    p.add_argument("--skip-night", action="store_true")
    p.add_argument("--skip-year", action="store_true")
    args = p.parse_args()
    with connect(c.ADMIN_URL) as conn:
        server = conn.execute(
            "SELECT split_part(version(), ' ', 2), current_setting('timescaledb.license', true)"
        ).fetchone()
    print(f"PostgreSQL {server[0]}, timescaledb.license {server[1]}, {CORES} cores, {dt.date.today()}")
    if not args.skip_night:
        with c.bench_database("scale_night", keep=args.keep) as url:
            print_night(night(url, args.users, args.days, args.workers))
    if not args.skip_year:
        with c.bench_database("scale_year", keep=args.keep) as url:
            year = build_year(url, args.year_users, args.year_days)
            print_year(year, panel_latencies(url, args.year_days), export_figures(url, args.year_days))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
