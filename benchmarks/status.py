"""`fitpipe status` for a cohort: the report and the cohort page's library calls, before and after.

    .venv/bin/python benchmarks/status.py [--cohort 1000] [--days 365] [--runs 20] [--keep]

Builds --cohort participants x --days days of ledger rows (ingested_days) and wear_days rows in SQL,
irregular the way a real study is: eight metrics per day, a few deferred and provisional days,
missing days for one participant in ten, rows before the study start, rollup-only days after raw
retention, quarantined records. Then, median and p95 over --runs runs each:
- baseline: `SELECT count(*) FROM ingested_days` (one plain pass over the ledger, same run);
- before: the three ledger scans status made until issue 22's follow-up (the cursors' window, the
  per-participant aggregate with its missing-days probe, the per-metric jsonb sums), run as they were;
- after: `collect_status(storage=False)` as the cohort page calls it, `collect_status()` as
  `fitpipe status --json` does, and `cohort()` (adherence + status, the cohort page's library calls);
- the cohort page `/` and its JSON through `fitpipe serve` (HTTP, goal p95 < 300 ms);
- what the summary costs a write: one ledger row updated (one participant with --days days), with
  the summary's triggers and with them disabled (same transaction, rolled back).
Checks that the report's per-participant figures equal what the three old scans give.
Prints figures only; absolute figures drift on shared machines, compare the ratios.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

import _common as c
import serve
from fitpipe.catalogue import METRICS
from fitpipe.output.status import collect_status
from fitpipe.web.cohort import cohort

START = dt.date(2024, 1, 1)
METRICS_PER_DAY = ("heart_rate", "spo2", "hrv_intraday", "breathing_rate", "sleep_stages", "daily_activity",
                   "heart_rate_confidence", "data_sources")  # fmt: skip


def build(url: str, participants: int, days: int) -> None:
    c.fitpipe(url, "seed-users", "--count", str(participants), "--start-date", START.isoformat())
    last = START + dt.timedelta(days=days - 1)
    counts = sql.SQL(", ").join(
        sql.SQL("{}, 1000 + (u * 7 + i * {}) %% 900").format(sql.Literal(name), sql.Literal(n + 3))
        for n, name in enumerate(METRICS_PER_DAY)
    )
    with psycopg.connect(url, autocommit=True) as conn:
        # Day -3 of the study: rows before the study start count in the per-metric sums only.
        conn.execute(
            sql.SQL(
                """
            INSERT INTO ingested_days (user_id, day, source, rows_loaded, rows_by_metric, quarantined, state, note,
                                       retry_after, attempts, raw_dropped_at, content_hash, checked_at)
            SELECT u, d::date, 'synthetic', 80000, jsonb_build_object({counts}), (u + i) %% 97 / 95,
                   CASE WHEN d::date > %(last)s - 2 THEN 'provisional'
                        WHEN u %% 50 = 0 AND d::date > %(last)s - 5 THEN 'deferred'
                        WHEN (u * 31 + i) %% 400 = 0 THEN 'empty'
                        ELSE 'complete' END,
                   CASE WHEN u %% 50 = 0 AND d::date > %(last)s - 5 THEN 'not synced yet' END,
                   CASE WHEN u %% 50 = 0 AND d::date > %(last)s - 5 THEN now() END, 0,
                   CASE WHEN u %% 4 = 0 AND i < 90 THEN now() END,
                   md5(u || ' ' || d) || md5(d || ' ' || u), now()
            FROM generate_series(1, %(n)s) u,
                 generate_series(%(start)s::date - 3, %(last)s::date, '1 day') WITH ORDINALITY AS g(d, i)
            WHERE NOT (u %% 10 = 0 AND i IN (40, 41, 200))
            """
            ).format(counts=counts),
            {"n": participants, "start": START, "last": last},
        )
        c.fill_wear_days(conn, participants, START, last)
        conn.execute("VACUUM ANALYZE")


# The three ledger scans of status before its summary (src/fitpipe/output/status.py until then).
OLD_CURSORS = """
    WITH numbered AS (
        SELECT d.user_id, d.day, u.study_start,
               d.day - (row_number() OVER (PARTITION BY d.user_id ORDER BY d.day))::int AS island
        FROM ingested_days d JOIN users u USING (user_id)
        WHERE d.user_id = ANY(%(ids)s) AND d.day >= u.study_start AND d.state IN ('complete', 'empty')
    )
    SELECT user_id, max(day) AS cursor FROM numbered WHERE island = study_start - 1 GROUP BY user_id
"""
OLD_PER_USER = """
    SELECT u.user_id,
           count(d.day) FILTER (WHERE d.state <> 'deferred') AS days_ingested,
           max(d.day) FILTER (WHERE d.state <> 'deferred') AS last_ingested,
           coalesce(sum(d.quarantined), 0) AS quarantined,
           count(*) FILTER (WHERE d.state = 'complete') AS complete,
           count(*) FILTER (WHERE d.state = 'empty') AS empty,
           coalesce(array_agg(d.day ORDER BY d.day) FILTER (WHERE d.state = 'provisional'), '{}') AS provisional_days,
           coalesce(array_agg(d.day ORDER BY d.day) FILTER (WHERE d.state = 'deferred'), '{}') AS deferred_days,
           count(*) FILTER (WHERE d.raw_dropped_at IS NOT NULL) AS rollup_only,
           min(d.day) FILTER (WHERE d.raw_dropped_at IS NOT NULL) AS rollup_only_first,
           max(d.day) FILTER (WHERE d.raw_dropped_at IS NOT NULL) AS rollup_only_last,
           (SELECT coalesce(array_agg(g.day::date ORDER BY g.day), '{}')
              FROM generate_series(u.study_start, max(d.day), interval '1 day') AS g(day)
             WHERE NOT EXISTS (SELECT 1 FROM ingested_days x
                                WHERE x.user_id = u.user_id AND x.day = g.day::date)) AS missing_days
    FROM users u LEFT JOIN ingested_days d ON d.user_id = u.user_id AND d.day >= u.study_start
    WHERE u.user_id = ANY(%(ids)s)
    GROUP BY u.user_id
"""


def old_sums() -> sql.Composed:
    sums = sql.SQL(", ").join(
        sql.SQL("sum((rows_by_metric ->> {})::bigint) AS {}").format(sql.Literal(m.name), sql.Identifier(m.name))
        for m in METRICS
    )
    return sql.SQL("SELECT user_id, {} FROM ingested_days WHERE user_id = ANY(%(ids)s) GROUP BY user_id").format(sums)


def old_scans(conn: psycopg.Connection, ids: list[int]) -> dict[str, dict]:
    found = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for name, query in (("cursors", OLD_CURSORS), ("per_user", OLD_PER_USER), ("sums", old_sums())):
            cur.execute(query, {"ids": ids})
            found[name] = {row["user_id"]: row for row in cur.fetchall()}
    return found


def expected_from_old(old: dict[str, dict], user_id: int) -> dict:
    """The report's per-participant figures as the old scans give them."""
    info = old["per_user"][user_id]
    sums = old["sums"].get(user_id, {})
    return {
        "cursor": old["cursors"].get(user_id, {}).get("cursor"),
        "last_ingested": info["last_ingested"],
        "days_ingested": info["days_ingested"],
        "missing_days": list(info["missing_days"]),
        "quarantined": int(info["quarantined"]),
        "states": {
            "complete": info["complete"],
            "empty": info["empty"],
            "provisional": len(info["provisional_days"]),
            "deferred": len(info["deferred_days"]),
        },
        "provisional_days": list(info["provisional_days"]),
        "rows": {m.name: int(sums.get(m.name) or 0) for m in METRICS},
        "rollup_only": {
            "days": info["rollup_only"],
            "first": info["rollup_only_first"],
            "last": info["rollup_only_last"],
        },
    }


def check_equal(conn: psycopg.Connection, ids: list[int]) -> None:
    old = old_scans(conn, ids)
    report = collect_status(conn, [], storage=False)
    for user in report["users"]:
        expected = expected_from_old(old, user["user_id"])
        got = {key: user[key] for key in expected}
        if got != expected:
            sys.exit(f"participant {user['user_id']}: status says {got}, the old scans {expected}")
        days_after_gap = expected["days_ingested"] - (
            (expected["cursor"] - user["study_start"]).days + 1 if expected["cursor"] else 0
        )
        if user["days_after_gap"] != days_after_gap:
            sys.exit(f"participant {user['user_id']}: days_after_gap {user['days_after_gap']} != {days_after_gap}")
    print(f"report equals the old scans for all {len(report['users']):,} participants")


def timed(run: Callable[[], object], runs: int) -> list[float]:
    run()  # warm the caches and the connection
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def write_cost(conn: psycopg.Connection, runs: int) -> list[tuple[str, list[float]]]:
    """One ledger row's update, with the summary's triggers and without them."""
    statement = "UPDATE ingested_days SET checked_at = now() WHERE user_id = 7 AND day = %s"
    day = START + dt.timedelta(days=100)
    with_triggers = timed(lambda: conn.execute(statement, (day,)), runs)
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE ingested_days DISABLE TRIGGER USER")
    without = timed(lambda: conn.execute(statement, (day,)), runs)
    conn.execute("ROLLBACK")
    return [
        ("write: one ledger row, triggers off (baseline)", without),
        ("write: one ledger row, with the summary trigger", with_triggers),
    ]


def page_times(base: str, path: str, runs: int) -> list[float]:
    with httpx.Client(base_url=base, timeout=60) as client:
        return timed(lambda: client.get(path).raise_for_status(), runs)


def main() -> None:
    p = c.parser(__doc__)
    p.add_argument("--cohort", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    with c.bench_database("status", keep=args.keep) as url:
        build(url, args.cohort, args.days)
        with psycopg.connect(url, autocommit=True) as conn:
            ledger_rows = conn.execute("SELECT count(*) FROM ingested_days").fetchone()[0]  # type: ignore[index]
            ids = [row[0] for row in conn.execute("SELECT user_id FROM users ORDER BY user_id")]
            check_equal(conn, ids)
            count_ledger = "SELECT count(*) FROM ingested_days"
            cases: list[tuple[str, Callable[[], object]]] = [
                ("baseline: " + count_ledger, lambda: conn.execute(count_ledger).fetchall()),
                ("before: the three ledger scans", lambda: old_scans(conn, ids)),
                ("after: collect_status(storage=False) (cohort page)", lambda: collect_status(conn, [], storage=False)),
                ("after: collect_status() (fitpipe status --json)", lambda: collect_status(conn, [])),
                ("after: cohort() (adherence + status)", lambda: cohort(conn)),
            ]  # fmt: skip
            results = [(label, timed(run, args.runs)) for label, run in cases]
            writes = write_cost(conn, args.runs)
        with serve.server(url) as base:
            results += [
                (f"after: GET {path} (fitpipe serve)", page_times(base, path, args.runs))
                for path in ("/", "/api/v1/participants")
            ]
        results += writes
        baseline = p95(results[0][1])
        print(f"\n{args.cohort:,} participants x {args.days} days: {ledger_rows:,} ledger rows, {args.runs} runs each")
        rows = [
            (label, f"{statistics.median(t) * 1000:.1f}", f"{p95(t) * 1000:.1f}", f"{p95(t) / baseline:.1f}x")
            for label, t in results
        ]
        print(c.table(("what", "p50 ms", "p95 ms", "p95 / baseline"), rows))
        before, after = p95(results[1][1]), p95(results[2][1])
        print(f"\nstatus's ledger work, before / after (p95): {before / after:.1f}x")


if __name__ == "__main__":
    main()
