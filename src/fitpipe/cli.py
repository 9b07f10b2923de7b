"""The `fitpipe` command. Thin on purpose: parse flags, call one library function, render.

Heavy libraries (pandas, wearipedia, numpy) are imported inside the commands that need them,
so `fitpipe --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from fitpipe import __version__
from fitpipe.config import ENV_DATABASE_URL, database_url, mask_secrets
from fitpipe.errors import BadInput, FitpipeError, first_line

app = typer.Typer(
    name="fitpipe",
    help="Move a wearable study cohort's data into TimescaleDB and keep it useful.\n\n"
    "Example: fitpipe init-db && fitpipe seed-users --count 3 && fitpipe ingest --days 7",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
aggregate_app = typer.Typer(
    help="Rollups (1 min, 1 h, 1 day) of the intraday metrics.\n\nExample: fitpipe aggregate refresh",
    no_args_is_help=True,
)
app.add_typer(aggregate_app, name="aggregate")


class State:
    url: str = ""


state = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fitpipe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    database_url_opt: Optional[str] = typer.Option(
        None, "--database-url", envvar=ENV_DATABASE_URL, show_envvar=True, show_default=False,
        help="PostgreSQL URL. Default: the local dev server and the Docker compose file's URL.",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    state.url = database_url(database_url_opt)


def fail(message: str, code: int) -> None:
    # Plain write: rich would wrap the line at the terminal width.
    sys.stderr.write(f"error: {mask_secrets(message)}\n")
    raise typer.Exit(code)


def _database_errors() -> tuple:
    import psycopg

    return (psycopg.Error,)


def handles_errors(command: Callable) -> Callable:
    """Known errors become one line on stderr and their exit code; secrets are masked."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FitpipeError as exc:
            fail(str(exc), exc.exit_code)
        except _database_errors() as exc:
            fail(f"database error ({type(exc).__name__}): {first_line(exc)}", 6)
        except BrokenPipeError:
            # The reader went away (e.g. `fitpipe export | head`): not an error worth a message.
            sys.stdout = open(os.devnull, "w")
            raise typer.Exit(0)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or first_line(exc)}{where}", 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def parse_day(value: Optional[str], flag: str) -> Optional[dt.date]:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{flag} must be a date like 2024-01-31, got {value!r}") from None
    if not dt.date(1900, 1, 1) <= day <= dt.date(9000, 12, 31):
        raise BadInput(f"{flag} {value} is outside the years 1900..9000")
    return day


def console(stderr: bool = False):
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        # Logs and pipes get full rows rather than rich's 80-column default.
        out = Console(stderr=stderr, highlight=False, width=160)
    return out


@app.command("init-db")
@handles_errors
def init_db() -> None:
    """Create the timescaledb extension and apply pending migrations, each in its own transaction.

    Running it again changes nothing. A migration file edited after it was applied is refused.

    Example: fitpipe init-db
    """
    from fitpipe.db import connection
    from fitpipe.migrate import apply_migrations

    with connection(state.url) as conn:
        report = apply_migrations(conn)
    out = console()
    if report.applied:
        for name in report.applied:
            out.print(f"applied {name}")
        out.print(f"database is at migration {report.applied[-1]} ({len(report.applied)} applied now)")
    else:
        out.print(f"database is up to date ({report.already_applied} migrations applied); nothing to do")


@app.command("seed-users")
@handles_errors
def seed_users(
    count: int = typer.Option(..., "--count", min=1, help="Make sure users 1..COUNT exist."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA timezone of new users."),
    start_date: str = typer.Option("2024-01-01", "--start-date", help="Study start (local day) of new users."),
    wear_gaps: bool = typer.Option(True, "--wear-gaps/--no-wear-gaps", help="Synthetic non-wear stretches for new users."),
) -> None:
    """Create participants 1..COUNT with synthetic data. Existing participants are kept as they are.

    Example: fitpipe seed-users --count 3 --timezone America/New_York --start-date 2024-03-01
    """
    from fitpipe.db import connection, require_schema
    from fitpipe.output.render import users_table
    from fitpipe.participants import seed_users as seed

    start = parse_day(start_date, "--start-date")
    with connection(state.url) as conn:
        require_schema(conn)
        users, created = seed(conn, count, timezone=timezone, start_date=start, wear_gaps=wear_gaps)
    out = console()
    out.print(users_table(users))
    out.print(f"{created} created, {len(users) - created} already there")


@app.command()
@handles_errors
def ingest(
    days: int = typer.Option(..., "--days", min=1, help="Ingest the next DAYS days after each user's cursor."),
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable). Default: all."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel processes. Default: number of CPUs."),
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Refresh the rollups of what changed."),
    quiet: bool = typer.Option(False, "--quiet", help="Print errors only."),
    metrics_file: Optional[Path] = typer.Option(None, "--metrics-file", help="Write Prometheus metrics here."),
) -> None:
    """Ingest the next days after each user's cursor, never past yesterday in the user's timezone.

    The cursor is the last day of the unbroken run of ingested days from the study start. This is
    the command to run from cron.

    Example: fitpipe ingest --days 1 --quiet
    """
    from fitpipe.ingest.runner import run_ingest

    run_ingest(state.url, command="ingest", days=days, user_ids=user or [], workers=workers,
               refresh=refresh, quiet=quiet, metrics_file=metrics_file)


@app.command()
@handles_errors
def backfill(
    start: str = typer.Option(..., "--start", help="First local day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last local day (inclusive), YYYY-MM-DD."),
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable). Default: all."),
    force: bool = typer.Option(False, "--force", help="Re-ingest days that are already in the ledger."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Parallel processes. Default: number of CPUs."),
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Refresh the rollups of what changed."),
    quiet: bool = typer.Option(False, "--quiet", help="Print errors only."),
    metrics_file: Optional[Path] = typer.Option(None, "--metrics-file", help="Write Prometheus metrics here."),
) -> None:
    """Ingest a bounded range of days. Days already ingested are skipped unless --force.

    Re-running after an interruption does only the missing days.

    Example: fitpipe backfill --start 2024-01-01 --end 2024-01-14 --user 1 --user 2
    """
    from fitpipe.ingest.runner import run_ingest

    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    if last < first:
        raise BadInput(f"--end {last} is before --start {first}")
    run_ingest(state.url, command="backfill", start=first, end=last, user_ids=user or [], workers=workers,
               force=force, refresh=refresh, quiet=quiet, metrics_file=metrics_file)


@app.command()
@handles_errors
def status(
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """What is in the database and what is missing: per user, the cursor, days, gaps and rows.

    Example: fitpipe status --json
    """
    import json

    from fitpipe.db import connection, require_schema
    from fitpipe.output.render import status_tables
    from fitpipe.output.status import collect_status

    with connection(state.url) as conn:
        require_schema(conn)
        report = collect_status(conn, user or [])
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        out = console()
        for table in status_tables(report):
            out.print(table)


@aggregate_app.command("refresh")
@handles_errors
def aggregate_refresh(
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable)."),
    full: bool = typer.Option(False, "--full", help="Rebuild every rollup from the raw data."),
    metrics_file: Optional[Path] = typer.Option(None, "--metrics-file", help="Write Prometheus metrics here."),
) -> None:
    """Recompute the rollup buckets whose raw data changed since the last refresh.

    Only the local days that ingestion recorded as changed are rebuilt; --full rebuilds all.
    ingest and backfill run this at the end unless given --no-refresh.

    Example: fitpipe aggregate refresh --full
    """
    from fitpipe.db import connection, require_schema
    from fitpipe.derive.rollups import refresh

    with connection(state.url) as conn:
        require_schema(conn)
        report = refresh(conn, user or [], full=full)
    if metrics_file:
        from fitpipe.output.metrics_file import write_metrics

        write_metrics(metrics_file, "aggregate_refresh", duration=report.seconds, user_days=report.days,
                      rows=sum(report.buckets.values()), quarantined=0, failures=0, success=True)
    if report.users == 0:
        console().print(f"rollups are up to date; nothing to do ({report.seconds:.2f} s)")
    else:
        console().print(
            f"refreshed {report.users} participant(s): {report.days} local days, "
            + ", ".join(f"{n:,} {level} buckets" for level, n in report.buckets.items())
            + f", {report.invalidations} change records consumed, in {report.seconds:.2f} s"
        )


@app.command()
@handles_errors
def impute(
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable)."),
    start: Optional[str] = typer.Option(None, "--start", help="First local day."),
    end: Optional[str] = typer.Option(None, "--end", help="Last local day (inclusive)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Only this metric."),
    method: str = typer.Option("profile", "--method", help="profile or linear."),
    max_gap: str = typer.Option("2h", "--max-gap", help="Leave longer gaps empty, e.g. 90min, 2h."),
    metrics_file: Optional[Path] = typer.Option(None, "--metrics-file", help="Write Prometheus metrics here."),
) -> None:
    """Fill missing 1-minute buckets into their own table, marked as imputed.

    Only gaps with a measurement on both sides and no longer than --max-gap are filled, between
    the study start and the last ingested day. Measured rows are never changed; re-running
    replaces the earlier imputations of the range. Methods: profile (the participant's typical
    day blended with the gap's edges; default) and linear (the reference).

    Example: fitpipe impute --metric heart_rate --method profile --max-gap 2h
    """
    from fitpipe.db import connection, require_schema
    from fitpipe.derive.impute import impute as run_impute, parse_duration_minutes

    max_gap_minutes = parse_duration_minutes(max_gap)
    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    with connection(state.url) as conn:
        require_schema(conn)
        report = run_impute(conn, user or [], start=first, end=last, metric_name=metric, method=method,
                            max_gap_minutes=max_gap_minutes)
    if metrics_file:
        from fitpipe.output.metrics_file import write_metrics

        write_metrics(metrics_file, "impute", duration=report.seconds, user_days=report.days, rows=report.total,
                      quarantined=0, failures=0, success=True)
    if not report.users:
        console().print("nothing to impute: no ingested days in the range")
        return
    parts = ", ".join(f"{report.values.get(name, 0):,} minutes of {name} in {report.gaps.get(name, 0):,} gaps"
                      for name in report.values) or "no gaps short enough to fill"
    console().print(f"imputed ({method}, gaps up to {max_gap_minutes} min) for {report.users} participant(s): "
                    f"{parts}; rollups refreshed; {report.seconds:.1f} s")


@app.command()
@handles_errors
def export(
    metric: str = typer.Option(..., "--metric", help="Metric to export (see the catalogue)."),
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable)."),
    start: Optional[str] = typer.Option(None, "--start", help="First local day."),
    end: Optional[str] = typer.Option(None, "--end", help="Last local day (inclusive)."),
    resolution: str = typer.Option("auto", "--resolution", help="raw, 1min, 1h, 1d or auto."),
    with_imputed: bool = typer.Option(False, "--with-imputed", help="Include imputed values (marked)."),
    tz: str = typer.Option("utc", "--tz", help="utc, or local for each participant's own timezone."),
    output: str = typer.Option("-", "--output", "-o", help="File path, or - for stdout."),
    max_rows: int = typer.Option(1_000_000, "--max-rows", min=1, help="Row budget for --resolution auto."),
    fmt: str = typer.Option("csv", "--format", help="csv, or parquet (needs --output; times as UTC instants)."),
) -> None:
    """Write a metric as CSV, streamed from the server (memory stays flat at any size).

    auto picks the finest resolution that stays under --max-rows and says which on stderr. On
    error no file is left behind.

    Example: fitpipe export --metric heart_rate --resolution 1h --tz local --output hr.csv
    """
    from fitpipe.db import connection, require_schema
    from fitpipe.output.export import export as run_export

    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    with connection(state.url) as conn:
        require_schema(conn)
        result = run_export(conn, metric_name=metric, user_ids=user or [], start=first, end=last,
                            resolution=resolution, with_imputed=with_imputed, tz=tz, output=output, max_rows=max_rows,
                            fmt=fmt)
    if result.note:
        sys.stderr.write(result.note + "\n")
    if output != "-":
        sys.stderr.write(f"wrote {result.rows:,} rows ({result.resolution}) to {output}\n")


@app.command()
@handles_errors
def adherence(
    user: Optional[List[int]] = typer.Option(None, "--user", help="Only this user id (repeatable)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Local day to judge at. Default: newest ingested day."),
    min_wear: float = typer.Option(0.7, "--min-wear", help="Flag wear share (worn minutes / study minutes) below this."),
    max_silence_hours: float = typer.Option(48, "--max-silence-hours", help="Flag no data for longer than this."),
    min_nights: int = typer.Option(5, "--min-nights", help="Flag fewer captured nights than this, of the last 7."),
    min_sleep_minutes: int = typer.Option(180, "--min-sleep-minutes", help="A night counts with a main sleep this long."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Flag the participants whose data is not arriving well enough, worst first.

    Flags: low wear time, no recent data, low sleep capture, and no credentials on file (never
    for the synthetic source).

    Example: fitpipe adherence --min-wear 0.8 --as-of 2024-01-31
    """
    from fitpipe.derive.adherence import FLAGS, Thresholds, adherence as compute
    from fitpipe.db import connection, require_schema

    thresholds = Thresholds(min_wear, max_silence_hours, min_nights, min_sleep_minutes)
    with connection(state.url) as conn:
        require_schema(conn)
        day, rows = compute(conn, user or [], parse_day(as_of, "--as-of"), thresholds)
    if as_json:
        import json

        typer.echo(json.dumps({"as_of": day, "thresholds": thresholds.__dict__, "participants": rows},
                              indent=2, default=str))
    elif as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()) if rows else ["user_id"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        from fitpipe.output.render import adherence_table

        console().print(adherence_table(day, rows, FLAGS))


@app.command("create-reader")
@handles_errors
def create_reader(
    name: str = typer.Argument(..., help="Login name, e.g. grafana."),
    password_env: str = typer.Option("FITPIPE_READER_PASSWORD", "--password-env",
                                     help="Environment variable holding the password (never a flag: flags show in ps)."),
) -> None:
    """Create a read-only login (or reset its password) for dashboards and analysts.

    The login can read every fitpipe table and call fitpipe_adherence(), and change nothing.
    The password comes from the environment variable FITPIPE_READER_PASSWORD (or --password-env).

    Example: fitpipe create-reader grafana
    """
    from fitpipe.db import connection, require_schema
    from fitpipe.readers import create_reader as create

    password = os.environ.get(password_env)
    if not password:
        raise BadInput(f"set the password in the environment variable {password_env}")
    with connection(state.url) as conn:
        require_schema(conn)
        created = create(conn, name, password)
    console().print(f"{'created' if created else 'updated'} read-only login {name}")


@app.command()
@handles_errors
def reset(
    yes: bool = typer.Option(False, "--yes", help="Really drop everything fitpipe created."),
) -> None:
    """Drop every table and function fitpipe created (data included), so init-db starts fresh.

    Without --yes it only says what it would drop. The timescaledb extension and the
    fitpipe_readonly role are kept (other databases may use them).

    Example: fitpipe reset --yes && fitpipe init-db
    """
    from fitpipe.db import connection
    from fitpipe.reset import plan, reset as drop

    with connection(state.url) as conn:
        what = plan(conn)
        if not (what.tables or what.functions or what.views):
            console().print("nothing to drop: this database has no fitpipe objects")
            return
        listing = ", ".join(what.tables + what.views + [f + "()" for f in what.functions])
        if not yes:
            fail(f"refusing to drop without --yes; it would drop {listing}", 2)
        drop(conn, what)
    console().print(f"dropped {listing}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
