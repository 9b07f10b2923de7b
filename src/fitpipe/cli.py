"""The `fitpipe` command. Thin on purpose: parse flags, call one library function, render.

Heavy libraries (pandas, wearipedia, numpy) are imported inside the commands that need them,
so `fitpipe --help` stays fast.
"""

# ruff: noqa: E402  (early_sigterm.hold() must run before the other imports)

from __future__ import annotations

import os
import sys

from fitpipe.output import early_sigterm

# Before typer and the rest load: a run with --metrics-file stopped now must still write the file.
early_sigterm.hold()

import typer

from fitpipe import __version__
from fitpipe.cli_options import (
    End,
    ExportFormat,
    ImputeMethod,
    Json,
    MaxWait,
    MetricsFile,
    Quiet,
    Refresh,
    RequiredEnd,
    RequiredStart,
    Resolution,
    SourceName,
    Start,
    TimeMode,
    Users,
    Workers,
    Yes,
)
from fitpipe.cli_support import console, database, database_url, fail, handles_errors, parse_day, reflow_help
from fitpipe.config import ENV_DATABASE_URL
from fitpipe.config import database_url as resolve_database_url
from fitpipe.errors import BadInput, FitpipeError

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
participants_app = typer.Typer(
    help="Enrol participants with a source, list them, record a move, withdraw them.\n\n"
    "Example: fitpipe participants add 7 --source synthetic --timezone Europe/Berlin --study-start 2024-03-01",
    no_args_is_help=True,
)
app.add_typer(participants_app, name="participants")
secrets_app = typer.Typer(
    help="Encrypted per-participant secrets (FITPIPE_SECRET_KEY): store, rotate the key.\n\n"
    "Example: fitpipe secrets rotate",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")
lake_app = typer.Typer(
    help="A Parquet lake of the settled days, kept in step with the database, for DuckDB, Polars or Spark.\n\n"
    "Example: fitpipe lake sync --root /data/lake",
    no_args_is_help=True,
)
app.add_typer(lake_app, name="lake")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fitpipe {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    database_url_opt: str | None = typer.Option(
        None,
        "--database-url",
        envvar=ENV_DATABASE_URL,
        show_envvar=True,
        show_default=False,
        help="PostgreSQL URL. Default: the local dev server and the Docker compose file's URL.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    try:
        ctx.obj = {"url": resolve_database_url(database_url_opt)}
    except FitpipeError as exc:
        fail(str(exc), exc.exit_code)


@app.command("init-db")
@handles_errors
def init_db() -> None:
    """Create the timescaledb extension and apply pending migrations, each in its own transaction.

    Running it again changes nothing. A migration file edited after it was applied is refused.

    Example: fitpipe init-db
    """
    from fitpipe.migrate import apply_migrations

    with database(schema=False) as conn:
        report = apply_migrations(conn)
    out = console()
    if report.applied:
        for name in report.applied:
            out.print(f"applied {name}")
        out.print(f"database is at migration {report.applied[-1]} ({len(report.applied)} applied now)")
    elif report.applied_elsewhere:
        out.print(
            f"database is up to date: another init-db applied {', '.join(report.applied_elsewhere)} "
            "while this one waited; nothing to do"
        )
    else:
        out.print(f"database is up to date ({report.already_applied} migrations applied); nothing to do")


@app.command("seed-users")
@handles_errors
def seed_users(
    count: int = typer.Option(..., "--count", min=1, help="Make sure users 1..COUNT exist."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA timezone of new users."),
    start_date: str = typer.Option("2024-01-01", "--start-date", help="Study start (local day) of new users."),
    wear_gaps: bool = typer.Option(
        True, "--wear-gaps/--no-wear-gaps", help="Synthetic non-wear stretches for new users."
    ),
    sync_lag_hours: int = typer.Option(
        0,
        "--sync-lag-hours",
        min=0,
        help="Simulate a phone that syncs this many hours late (0: data is there at once).",
    ),
) -> None:
    """Create participants 1..COUNT with synthetic data. Existing participants are kept as they are.

    With --sync-lag-hours, a day fetched before its data has synced loads as provisional and is
    fetched again until it settles, as with a real device.

    Example: fitpipe seed-users --count 3 --timezone America/New_York --start-date 2024-03-01
    """
    from fitpipe.output.render import users_table
    from fitpipe.participants import seed_users as seed

    start = parse_day(start_date, "--start-date")
    with database() as conn:
        users, created = seed(
            conn, count, timezone=timezone, start_date=start, wear_gaps=wear_gaps, sync_lag_hours=sync_lag_hours
        )
    out = console()
    out.print(users_table(users))
    out.print(f"{created} created, {len(users) - created} already there")


def _run(command: str, run, *, quiet: bool, metrics_file) -> None:
    """Run a pipeline function with progress and the metrics file, render, and exit with its code.

    The metrics file is checked before anything runs and written on every way out.
    """
    from fitpipe.output.metrics_file import progress_and_record, recorded_run
    from fitpipe.output.progress import Reporter

    with recorded_run(metrics_file, command) as record:
        reporters = []

        def on_plan(plan):
            reporters.append(Reporter(plan.command, quiet=quiet))
            return progress_and_record(reporters[0], record)

        with database() as conn:
            result = run(conn, on_plan=on_plan, count_attention=metrics_file is not None)
        record.summary = result.summary
        record.deferred_days, record.needing_reconsent = result.deferred_days, result.needing_reconsent
        reporters[0].summary(result.summary)
        problem = result.problem()
        if problem:
            raise problem


@app.command()
@handles_errors
def ingest(
    days: int = typer.Option(..., "--days", min=1, help="Fetch up to DAYS new days per participant."),
    user: Users = None,
    workers: Workers = None,
    refresh: Refresh = True,
    quiet: Quiet = False,
    metrics_file: MetricsFile = None,
    max_wait: MaxWait = 60.0,
) -> None:
    """Fetch each participant's unsettled days again and up to DAYS new ones, never past yesterday
    in the participant's timezone. This is the command to run from cron.

    Provisional days (loaded before the source's settle window passed) and deferred days whose
    wait is over are fetched again; an unchanged day is not rewritten. The cursor is the last day
    of the unbroken run of settled days from the study start. Exit codes: 0 done (deferred days
    included; `fitpipe status` lists them), 2 bad input, 3 database unreachable, 5 some days failed.

    Example: fitpipe ingest --days 1 --quiet
    """
    from fitpipe import pipeline

    def run(conn, **hooks):
        return pipeline.ingest(
            conn, days, user or [], url=database_url(), workers=workers, refresh=refresh, max_wait=max_wait, **hooks
        )

    _run("ingest", run, quiet=quiet, metrics_file=metrics_file)


@app.command()
@handles_errors
def backfill(
    start: RequiredStart,
    end: RequiredEnd,
    user: Users = None,
    force: bool = typer.Option(
        False, "--force", help="Fetch settled days again too, and rewrite them even when unchanged."
    ),
    workers: Workers = None,
    refresh: Refresh = True,
    quiet: Quiet = False,
    metrics_file: MetricsFile = None,
    max_wait: MaxWait = 60.0,
) -> None:
    """Fetch a bounded range of days. Settled days (complete or empty) are skipped unless --force,
    which also rewrites days whose content is unchanged (to repair rows changed outside fitpipe).

    Re-running after an interruption does only what is missing or unsettled.

    Example: fitpipe backfill --start 2024-01-01 --end 2024-01-14 --user 1 --user 2
    """
    from fitpipe import pipeline

    first, last = parse_day(start, "--start"), parse_day(end, "--end")

    def run(conn, **hooks):
        return pipeline.backfill(
            conn,
            first,
            last,
            user or [],
            url=database_url(),
            force=force,
            workers=workers,
            refresh=refresh,
            max_wait=max_wait,
            **hooks,
        )

    _run("backfill", run, quiet=quiet, metrics_file=metrics_file)


@app.command()
@handles_errors
def status(
    user: Users = None,
    as_json: Json = False,
) -> None:
    """What is in the database and what is missing: per participant, the cursor, day states
    (provisional, deferred, missing), credentials, the timezone, and rows per metric.

    Example: fitpipe status --json
    """
    import json

    from fitpipe.output.render import status_tables
    from fitpipe.output.status import collect_status

    with database() as conn:
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
    user: Users = None,
    full: bool = typer.Option(False, "--full", help="Rebuild every rollup from the raw data."),
    metrics_file: MetricsFile = None,
) -> None:
    """Recompute the rollup buckets whose raw data changed since the last refresh.

    Only the local days that ingestion recorded as changed are rebuilt; --full rebuilds all.
    ingest, backfill and import run this at the end (ingest and backfill unless given --no-refresh).

    Example: fitpipe aggregate refresh --full
    """
    from fitpipe.derive.rollups import refresh
    from fitpipe.output.metrics_file import recorded_run

    with recorded_run(metrics_file, "aggregate_refresh") as record:
        with database() as conn:
            report = refresh(conn, user or [], full=full)
        record.figures = {
            "duration": report.seconds,
            "user_days": report.days,
            "rows": sum(report.buckets.values()),
            "quarantined": 0,
            "failures": 0,
        }
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
def maintain(
    raw_retention_days: str | None = typer.Option(
        None,
        "--raw-retention-days",
        envvar="FITPIPE_RAW_RETENTION_DAYS",
        show_envvar=True,
        show_default=False,
        help="Keep raw 1 Hz rows (heart_rate, heart_rate_confidence) this many days; drop older chunks whose "
        "days are settled and rolled up, keeping their rollups. Default: keep everything.",
    ),
) -> None:
    """Storage upkeep, from cron after ingest: refresh pending rollups, drop raw 1 Hz chunks past
    --raw-retention-days (both editions, when set), then compress the chunks of the raw metric
    tables and rollup_1min that hold settled days only (community edition). On the Apache edition
    it says in one line that compression is unavailable.

    Example: fitpipe maintain --raw-retention-days 180
    """
    from fitpipe.derive.maintain import APACHE_NOTE
    from fitpipe.derive.maintain import maintain as run_maintain
    from fitpipe.derive.retention import parse_retention_days
    from fitpipe.output.render import retention_lines

    days = parse_retention_days(raw_retention_days)
    with database() as conn:
        report = run_maintain(conn, days)
    for line in retention_lines(report.retention):
        console().print(line)
    if report.edition != "community":
        console().print(APACHE_NOTE)
        return
    ratio = f" ({report.bytes_before / report.bytes_after:.0f}x)" if report.bytes_after else ""
    console().print(
        f"compressed {report.chunks_compressed} chunk(s) holding settled days before {report.horizon}: "
        f"{report.bytes_before:,} -> {report.bytes_after:,} bytes{ratio}; "
        f"{report.rollup_days_refreshed} rollup day(s) refreshed first; {report.seconds:.2f} s"
    )


@app.command()
@handles_errors
def impute(
    user: Users = None,
    start: Start = None,
    end: End = None,
    metric: str | None = typer.Option(None, "--metric", help="Only this metric."),
    method: ImputeMethod = typer.Option(
        ImputeMethod.profile, "--method", help="profile, linear or statespace (needs the impute extra)."
    ),
    max_gap: str = typer.Option("2h", "--max-gap", help="Leave longer gaps empty, e.g. 90min, 2h."),
    metrics_file: MetricsFile = None,
) -> None:
    """Fill missing 1-minute buckets into their own table, marked as imputed.

    Only gaps with a measurement on both sides and no longer than --max-gap are filled, between
    the study start and the last ingested day. Measured rows are never changed; re-running
    replaces the earlier imputations of the range. Every imputed minute gets a 90% predictive
    interval (lower, upper), calibrated on stretches of the participant's own measured data.
    Methods: profile (the participant's typical day blended with the gap's edges; default),
    linear (the reference) and statespace (a Kalman smoother of a daily cycle plus local level
    and AR(1), fitted with statsmodels; needs the impute extra of the fitpipe package).

    Example: fitpipe impute --metric heart_rate --method profile --max-gap 2h
    """
    from fitpipe.derive.impute import impute as run_impute
    from fitpipe.derive.impute import parse_duration_minutes

    max_gap_minutes = parse_duration_minutes(max_gap)
    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    from fitpipe.output.metrics_file import recorded_run

    with recorded_run(metrics_file, "impute") as record:
        with database() as conn:
            report = run_impute(
                conn,
                user or [],
                start=first,
                end=last,
                metric_name=metric,
                method=method.value,
                max_gap_minutes=max_gap_minutes,
            )
        record.figures = {
            "duration": report.seconds,
            "user_days": report.days,
            "rows": report.total,
            "quarantined": 0,
            "failures": 0,
        }
    if not report.users:
        console().print("nothing to impute: no ingested days in the range")
        return
    parts = (
        ", ".join(
            f"{report.values.get(name, 0):,} minutes of {name} in {report.gaps.get(name, 0):,} gaps"
            for name in report.values
        )
        or "no gaps short enough to fill"
    )
    console().print(
        f"imputed ({method.value}, gaps up to {max_gap_minutes} min) for {report.users} participant(s): "
        f"{parts}; rollups refreshed; {report.seconds:.1f} s"
    )


@app.command()
@handles_errors
def export(
    metric: str = typer.Option(..., "--metric", help="Metric to export (see the catalogue)."),
    user: Users = None,
    start: Start = None,
    end: End = None,
    resolution: Resolution = typer.Option(Resolution.auto, "--resolution", help="raw, 1min, 1h, 1d or auto."),
    with_imputed: bool = typer.Option(False, "--with-imputed", help="Include imputed values (marked)."),
    tz: TimeMode = typer.Option(
        TimeMode.utc, "--tz", help="utc, or local: the zone the participant was in at the time."
    ),
    output: str = typer.Option("-", "--output", "-o", help="File path, or - for stdout."),
    max_rows: int = typer.Option(1_000_000, "--max-rows", min=1, help="Row budget for --resolution auto."),
    fmt: ExportFormat = typer.Option(
        ExportFormat.csv, "--format", help="csv, or parquet (needs --output; times as UTC instants)."
    ),
    draws: int | None = typer.Option(
        None,
        "--draws",
        help="Write M complete 1-minute series (column draw; CSV or Parquet), each gap a joint random draw.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for --draws (the same seed gives the same draws)."),
) -> None:
    """Write a metric as CSV or Parquet, streamed from the server (memory stays flat at any size).

    auto picks the finest resolution that stays under --max-rows and says which on stderr. On
    error no file is left behind. With --with-imputed, raw and 1min rows carry each imputed
    minute's 90% interval (<field>_lower, <field>_upper). --draws M writes multiple imputations
    for Rubin's rules: M copies of the 1-minute series, measured minutes unchanged, imputed ones
    drawn; without --seed a seed is chosen and printed on stderr.

    Example: fitpipe export --metric heart_rate --resolution 1h --tz local --output hr.csv

    Example: fitpipe export --metric heart_rate --draws 20 --seed 7 --output hr-draws.csv
    """
    from fitpipe.output.export import export as run_export

    first, last = parse_day(start, "--start"), parse_day(end, "--end")
    if draws is not None or seed is not None:
        from fitpipe.output.draws import export_draws

        with database() as conn:
            result = export_draws(
                conn,
                metric_name=metric,
                user_ids=user or [],
                start=first,
                end=last,
                draws=draws,
                seed=seed,
                tz=tz.value,
                output=output,
                resolution=resolution.value,
                fmt=fmt.value,
            )
        sys.stderr.write(result.note + "\n")
        if output != "-":
            sys.stderr.write(f"wrote {result.rows:,} rows (1min x draws) to {output}\n")
        return
    with database() as conn:
        result = run_export(
            conn,
            metric_name=metric,
            user_ids=user or [],
            start=first,
            end=last,
            resolution=resolution.value,
            with_imputed=with_imputed,
            tz=tz.value,
            output=output,
            max_rows=max_rows,
            fmt=fmt.value,
        )
    if result.note:
        sys.stderr.write(result.note + "\n")
    if output != "-":
        sys.stderr.write(f"wrote {result.rows:,} rows ({result.resolution}) to {output}\n")


@app.command()
@handles_errors
def adherence(
    user: Users = None,
    as_of: str | None = typer.Option(None, "--as-of", help="Local day to judge at. Default: newest ingested day."),
    min_wear: float = typer.Option(
        0.7, "--min-wear", help="Flag wear share (worn minutes / study minutes) below this."
    ),
    max_silence_hours: float = typer.Option(48, "--max-silence-hours", help="Flag no data for longer than this."),
    min_nights: int = typer.Option(5, "--min-nights", help="Flag fewer captured nights than this, of the last 7."),
    min_sleep_minutes: int = typer.Option(
        180, "--min-sleep-minutes", help="A night counts with a main sleep this long."
    ),
    max_sync_hours: float = typer.Option(
        72, "--max-sync-hours", help="Flag a watch that has not synced with its phone for longer than this."
    ),
    as_json: Json = False,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
) -> None:
    """Flag the participants whose data is not arriving well enough, worst first.

    Flags: low wear time, no recent data, low sleep capture, no credentials on file (never
    for the synthetic source), and a watch that has not synced for --max-sync-hours (sources that
    report the last sync: google-health). Days missing although the watch synced past them are counted.

    Each participant is measured over their own window: from their study start to --as-of, or, for a
    participant whose data arrives only in archives (a retrospective Takeout import), to the last day
    their archives hold; such a participant is marked "data ended" rather than flagged for silence.

    Example: fitpipe adherence --min-wear 0.8 --as-of 2024-01-31
    """
    from fitpipe.derive.adherence import FLAGS, Thresholds
    from fitpipe.derive.adherence import adherence as compute

    if as_json and as_csv:
        raise BadInput("--json and --csv exclude each other; choose one")
    thresholds = Thresholds(min_wear, max_silence_hours, min_nights, min_sleep_minutes, max_sync_hours)
    thresholds.validate()  # before connecting: a bad threshold is bad input, whatever the database
    with database() as conn:
        day, rows = compute(conn, user or [], parse_day(as_of, "--as-of"), thresholds)
    if as_json:
        import json

        typer.echo(
            json.dumps({"as_of": day, "thresholds": thresholds.__dict__, "participants": rows}, indent=2, default=str)
        )
    elif as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()) if rows else ["user_id"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        from fitpipe.output.render import adherence_table

        console().print(adherence_table(day, rows, FLAGS))


@app.command()
@handles_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Beyond loopback a secret is required."),
    port: int = typer.Option(8050, "--port", help="TCP port."),
    pool_size: int = typer.Option(4, "--pool-size", help="Most database connections the app holds."),
    statement_timeout: float = typer.Option(
        10.0, "--statement-timeout", help="Seconds a page's query may run before it is cancelled."
    ),
) -> None:
    """Start the read-only web app: cohort, participant charts, pipeline, and the /api/v1 data API.

    Run it with the read-only login from `fitpipe create-reader`. On anything but loopback it needs
    FITPIPE_SERVE_TOKEN (or FITPIPE_SERVE_PASSWORD_FILE); every request must then carry it (HTTP
    Basic password, or Authorization: Bearer). Needs the `web` extra.

    Example: fitpipe serve --port 8050
    """
    try:
        from fitpipe.web.server import serve as run_server
    except ImportError as exc:
        raise BadInput(
            f"fitpipe serve needs the web extra: pip install 'fitpipe[web]' ({exc.name} is missing)"
        ) from None
    from fitpipe.web.database import PoolSettings

    run_server(
        database_url(),
        host,
        port,
        pool=PoolSettings(max_connections=pool_size, statement_timeout_s=statement_timeout),
    )


@app.command("create-reader")
@handles_errors
def create_reader(
    name: str = typer.Argument(..., help="Login name, e.g. grafana."),
    password_env: str = typer.Option(
        "FITPIPE_READER_PASSWORD",
        "--password-env",
        help="Environment variable holding the password (never a flag: flags show in ps).",
    ),
) -> None:
    """Create a read-only login (or reset its password) for dashboards and analysts.

    The login can read every fitpipe table and call fitpipe_adherence(), and change nothing.
    The password comes from the environment variable FITPIPE_READER_PASSWORD (or --password-env).

    Example: fitpipe create-reader grafana
    """
    from fitpipe.readers import create_reader as create

    password = os.environ.get(password_env)
    if not password:
        raise BadInput(f"set the password in the environment variable {password_env}")
    with database() as conn:
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
    from fitpipe.reset import plan
    from fitpipe.reset import reset as drop

    with database(schema=False) as conn:
        what = plan(conn)
        if not (what.tables or what.functions or what.views):
            console().print("nothing to drop: this database has no fitpipe objects")
            return
        listing = ", ".join(
            what.tables + what.views + [f + "()" for f in what.functions] + [f"type {t}" for t in what.types]
        )
        if not yes:
            fail(f"refusing to drop without --yes; it would drop {listing}", 2)
        drop(conn, what)
    console().print(f"dropped {listing}")


@participants_app.command("add")
@handles_errors
def participants_add(
    source: SourceName,
    user_id: int = typer.Argument(..., min=1, help="Participant id."),
    timezone: str = typer.Option(..., "--timezone", help="IANA zone the participant lives in."),
    study_start: str = typer.Option(..., "--study-start", help="First local day of the study, YYYY-MM-DD."),
    name: str | None = typer.Option(None, "--name", help="Label. Default: participant-NNNN."),
    setting: list[str] | None = typer.Option(
        None,
        "--setting",
        help="A source setting KEY=VALUE (repeatable; VALUE read as JSON when it parses), e.g. sync_lag_hours=30.",
    ),
) -> None:
    """Enrol a participant with a source. An existing id is left as it is.

    Example: fitpipe participants add 7 --source synthetic --timezone Europe/Berlin --study-start 2024-03-01
    """
    from fitpipe.participants import add_participant

    with database() as conn:
        created = add_participant(
            conn,
            user_id,
            source=source,
            timezone=timezone,
            study_start=parse_day(study_start, "--study-start"),
            display_name=name,
            settings=_settings(setting or []),
        )
    console().print(f"participant {user_id} {'enrolled' if created else 'already exists; left as it was'}")


def _settings(pairs: list[str]) -> dict:
    import json

    settings = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise BadInput(f"--setting must look like KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


@participants_app.command("list")
@handles_errors
def participants_list(as_json: Json = False) -> None:
    """List participants: source, timezone history, credential state, withdrawal.

    Example: fitpipe participants list --json
    """
    import json

    from fitpipe.output.status import participant_rows

    with database() as conn:
        rows = participant_rows(conn)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        from fitpipe.output.render import participants_table

        console().print(participants_table(rows))


@participants_app.command("set-timezone")
@handles_errors
def participants_set_timezone(
    user_id: int = typer.Argument(..., min=1, help="Participant id."),
    timezone: str = typer.Argument(..., help="IANA zone from that day on."),
    effective_from: str = typer.Option(..., "--from", help="First local day in the new zone, YYYY-MM-DD."),
) -> None:
    """Record that a participant moved (or travels) to another zone from a local day on.

    Local days, day windows and local-day rollups use the zone in force on each day. Days already
    loaded from the day before the change on are marked provisional, so the next ingest cuts them again.

    Example: fitpipe participants set-timezone 3 Asia/Tokyo --from 2024-05-01
    """
    from fitpipe.participants import set_timezone

    with database() as conn:
        stale = set_timezone(conn, user_id, timezone, parse_day(effective_from, "--from"))
    console().print(
        f"participant {user_id} is in {timezone} from {effective_from}"
        + (f"; {len(stale)} loaded day(s) will be fetched again by the next ingest" if stale else "")
    )


@participants_app.command("withdraw")
@handles_errors
def participants_withdraw(
    user_id: int = typer.Argument(..., min=1, help="Participant id."),
    delete_data: bool = typer.Option(False, "--delete-data", help="Also delete every row of the participant."),
    yes: Yes = False,
) -> None:
    """Stop ingesting a participant. With --delete-data, remove all their rows in every table
    (raw, rollups, imputations, quarantine, ledger, settings, credentials), as a consent
    withdrawal requires. No other participant is touched.

    Example: fitpipe participants withdraw 3 --delete-data --yes
    """
    from fitpipe.participants import withdraw

    if delete_data and not yes:
        # From cron or a pipe nobody can answer, so a missing --yes is bad input, as for reset.
        if not sys.stdin.isatty():
            fail(f"refusing to delete participant {user_id}'s data without --yes", 2)
        typer.confirm(f"Delete every row of participant {user_id}? This cannot be undone", abort=True)
    with database() as conn:
        deleted = withdraw(conn, user_id, delete_data=delete_data)
    if delete_data:
        console().print(
            f"participant {user_id} withdrawn; deleted {sum(deleted.values()):,} rows in "
            f"{sum(1 for n in deleted.values() if n)} tables"
        )
    else:
        console().print(f"participant {user_id} withdrawn; their data stays (use --delete-data to remove it)")


@lake_app.command("sync")
@handles_errors
def lake_sync(
    root: str = typer.Option(
        ..., "--root", envvar="FITPIPE_LAKE_ROOT", show_envvar=True, help="Directory of the lake (created if missing)."
    ),
) -> None:
    """Write every metric's settled days (complete or empty), the rollups and the imputed values as
    Parquet under ROOT, rewriting only what changed since the last sync: new or re-ingested days,
    rollups refreshed, participants withdrawn with --delete-data. A sync with nothing to do writes
    nothing; a killed sync leaves the previous lake readable and the next one finishes the job.
    Read it with fitpipe.lake.connect(ROOT) (DuckDB) or any Parquet reader (docs/lake.md).

    Example: fitpipe lake sync --root /data/lake
    """
    from pathlib import Path

    from fitpipe.lake.sync import sync

    with database() as conn:
        report = sync(conn, Path(root))
    if report.nothing_to_do:
        console().print(f"lake is up to date; nothing to do ({report.seconds:.2f} s)")
        return
    console().print(
        f"lake synced: {report.changed_days['raw']:,} participant-day(s) of data and "
        f"{report.changed_days['derived']:,} of rollups changed; {report.files_written} file(s) written "
        f"({report.rows_written:,} rows, {report.rows_from_database:,} from the database, "
        f"{report.bytes_written / 1e6:,.1f} MB), {report.files_deleted} replaced, in {report.seconds:.2f} s"
        + (f"; removed withdrawn participant(s) {', '.join(map(str, report.withdrawn))}" if report.withdrawn else "")
    )


@secrets_app.command("new-key")
@handles_errors
def secrets_new_key() -> None:
    """Print a new random key for FITPIPE_SECRET_KEY (keep it out of the database and of git),
    e.g. redirected into the file FITPIPE_SECRET_KEY_FILE names.

    Example: fitpipe secrets new-key
    """
    from fitpipe.secrets import new_key

    typer.echo(new_key())


@secrets_app.command("set")
@handles_errors
def secrets_set(
    user_id: int = typer.Option(..., "--user", min=1, help="Participant id."),
    source: str | None = typer.Option(None, "--source", help="Source the secret is for. Default: the participant's."),
) -> None:
    """Store a participant's secret for a source, encrypted. The secret is read from standard
    input (never a flag: flags show in `ps` and shell history), e.g. redirected from a file.

    Example: fitpipe secrets set --user 3
    """
    from fitpipe.participants import list_users
    from fitpipe.secrets import Keyring, store_secret

    keyring = Keyring.from_environment()
    secret = sys.stdin.read().strip()
    if not secret:
        raise BadInput("no secret on standard input")
    with database() as conn:
        name = source or list_users(conn, [user_id])[0].source
        store_secret(conn, keyring, user_id, name, secret)
    console().print(f"stored the secret of participant {user_id} for {name} (key {keyring.primary_id})")


@secrets_app.command("rotate")
@handles_errors
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first key of FITPIPE_SECRET_KEY.

    List the new key first and the old one after it (FITPIPE_SECRET_KEY="$NEW,$OLD"), run this,
    then drop the old key.

    Example: fitpipe secrets rotate
    """
    from fitpipe.secrets import Keyring, rotate_secrets

    keyring = Keyring.from_environment()
    with database() as conn:
        rotated, current = rotate_secrets(conn, keyring)
    console().print(f"re-encrypted {rotated} secret(s) with key {keyring.primary_id}; {current} already used it")


def _add_source_commands() -> None:
    """Each source's own sub-commands (`import`, `enroll`), asked through the contract."""
    import importlib

    from fitpipe.sources import registered_classes

    for source in registered_classes():
        for name, target in source.commands.items():
            module, _, function = target.partition(":")
            app.command(name)(getattr(importlib.import_module(module), function))


_add_source_commands()
reflow_help(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
