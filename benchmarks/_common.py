"""Shared helpers for the benchmarks: a throwaway database, the CLI in a subprocess, tables.

Every benchmark creates its own database (fitpipe_bench_<what>_<random>), runs `fitpipe init-db`
on it and drops it at the end (unless --keep). The admin URL is FITPIPE_BENCH_ADMIN_URL, else
FITPIPE_DATABASE_URL, else fitpipe's default (the local dev server).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # so the scripts also run from a python without the package installed

import psycopg  # noqa: E402

from fitpipe.catalogue import METRICS  # noqa: E402
from fitpipe.config import DEFAULT_DATABASE_URL, ENV_DATABASE_URL  # noqa: E402

ADMIN_URL = os.environ.get("FITPIPE_BENCH_ADMIN_URL") or os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL
# Everything a load writes; TRUNCATE-ing these gives a database as after init-db + seed-users.
DATA_TABLES = (*(m.table for m in METRICS), "quarantine", "ingested_days", "rollup_invalidations")


def interpreter() -> str:
    """The project's venv interpreter when there is one, so the scripts work from any python."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--keep", action="store_true", help="Keep the benchmark database instead of dropping it.")
    return p


def url_for(database: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def refresh_flags() -> list[str]:
    """--no-refresh while fitpipe has no rollups module yet (the refresh would fail on import)."""
    return [] if (ROOT / "src" / "fitpipe" / "rollups.py").exists() else ["--no-refresh"]


def fitpipe(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    command = [interpreter(), "-m", "fitpipe.cli", "--database-url", url, *args]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=cli_env())
    if check and proc.returncode != 0:
        sys.exit(f"`fitpipe {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def fitpipe_command() -> list[str]:
    """The console script next to the interpreter (as users run it), else `python -m fitpipe.cli`."""
    python = interpreter()
    script = Path(python).with_name("fitpipe")
    if script.exists():
        return [str(script)]
    found = shutil.which("fitpipe")
    return [found] if found else [python, "-m", "fitpipe.cli"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def bench_database(what: str, keep: bool = False) -> Iterator[str]:
    """A fresh database with the fitpipe schema; yields its URL, drops it afterwards unless keep."""
    name = f"fitpipe_bench_{what}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = url_for(name)
    try:
        fitpipe(url, "init-db")
        yield url
    finally:
        if keep:
            print(f"kept database {name} ({url.split('@')[-1]})")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def derived_tables(conn: psycopg.Connection) -> list[str]:
    """Rollup and imputation tables, when the schema has them."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename LIKE ANY (ARRAY['rollup\\_%', 'imputed%']) AND tablename <> 'rollup_invalidations'"
        )
    ]


def truncate_data(conn: psycopg.Connection, tables: Sequence[str] | None = None) -> None:
    """Empty the given tables (default: all loaded and derived data, users and runs kept) and
    write out the dirty pages, so each measurement starts alike."""
    if tables is None:
        tables = [*DATA_TABLES, *derived_tables(conn)]
    conn.execute(f"TRUNCATE {', '.join(tables)}")
    conn.commit()
    with contextlib.suppress(psycopg.Error):  # CHECKPOINT needs superuser or pg_checkpoint
        conn.execute("CHECKPOINT")
    conn.commit()


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table: first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def fill_wear_days(conn: psycopg.Connection, participants: int, start: dt.date, last: dt.date) -> None:
    """Plausible, varied wear_days rows (with their running totals) for participants 1..N over
    [start, last], so adherence and the cohort views have a year of summaries to read."""
    conn.execute(
        """
        INSERT INTO wear_days (user_id, day, worn_minutes, first_measured, last_measured, main_sleep_seconds,
                               worn_minutes_to_date, last_measured_to_date)
        SELECT u, d::date, w, d + interval '6 hours', d + interval '23 hours', 25000 + (u * 37 + i) %% 5000,
               sum(w) OVER (PARTITION BY u ORDER BY d), d + interval '23 hours'
        FROM (SELECT u, d, i, (600 + (u * 13 + i * 7) %% 800)::smallint AS w
              FROM generate_series(1, %(n)s) u,
                   generate_series(%(start)s::date, %(last)s::date, '1 day') WITH ORDINALITY AS g(d, i)) s
        """,
        {"n": participants, "start": start, "last": last},
    )
