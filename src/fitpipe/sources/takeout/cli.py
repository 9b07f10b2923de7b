"""`fitpipe import`: the Takeout source's own command. Parses flags, calls
fitpipe.sources.takeout.importer.import_archive, renders its listing and progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from fitpipe.cli_options import MetricsFile, Quiet, Refresh, Workers
from fitpipe.cli_support import console, database, database_url, handles_errors


@handles_errors
def import_archive(
    path: Path = typer.Argument(..., help="The Takeout .zip, or the folder it was extracted to."),
    user: int = typer.Option(..., "--user", help="The participant the archive belongs to."),
    timezone: str | None = typer.Option(
        None,
        "--timezone",
        help="Read the archive's zone-less times in this IANA zone instead of the participant's "
        "timezone history (e.g. for history from before enrolment, lived elsewhere).",
    ),
    clock: list[str] | None = typer.Option(
        None,
        "--clock",
        help="FAMILY=utc|local: read this family's times in this clock, for when the archive's evidence cannot "
        "settle it (FAMILY: heart_rate, steps, or a family id such as heart-rate-json). Repeatable.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be loaded and skipped, then stop."),
    force: bool = typer.Option(
        False, "--force", help="Load an archive that is already on record again, or on record for another participant."
    ),
    all_days: bool = typer.Option(
        False,
        "--all-days",
        help="Also load days before the participant's study start and stray days far (over a year) outside "
        "the archive's span; without it they are listed and left out.",
    ),
    workers: Workers = None,
    refresh: Refresh = True,
    quiet: Quiet = False,
    metrics_file: MetricsFile = None,
) -> None:
    """Import a participant's Fitbit history from a Google Takeout archive (or a fitbit.com MyFitbitData or
    user-site-export archive, or a folder of Global Export Data files), exactly once.

    Recognises the layout generation, lists the metrics, files, date span and records it will load and what it skips
    and why, then loads day by day through the same per-day transaction as ingest.

    UTC times (ending in Z) are instants; zone-less times are the participant's local wall time on that date. The
    clock of the families real exports disagree on (heart rate and steps, JSON and CSV) is decided per archive from
    its own evidence (a UTC twin, the DST signature of the daily rhythm, agreement with the sleep sessions); the
    listing and the import record say which clock each got and the figure that decided it. --clock overrides it.

    Re-importing an archive on record does nothing unless --force (which rewrites every day); a newer archive
    replaces the days whose content it changes.

    Exit codes: 0 done, 2 bad input (missing file, broken zip, unknown layout or user), 5 some days failed (import
    again to finish).

    Example: fitpipe import takeout-20260601.zip --user 7 --dry-run
    """
    from fitpipe.output.metrics_file import progress_and_record, recorded_run
    from fitpipe.output.progress import Reporter
    from fitpipe.output.render import import_listing
    from fitpipe.sources.takeout.importer import import_archive as run_import

    out = console()
    reporters: list[Reporter] = []

    def show_report(report: dict) -> None:
        for line in [] if quiet else import_listing(report):
            out.print(line, soft_wrap=isinstance(line, str))

    with recorded_run(metrics_file, "import") as record:

        def on_plan(plan):
            reporters.append(Reporter("import", quiet=quiet))
            return progress_and_record(reporters[0], record)

        with database() as conn:
            outcome = run_import(
                conn,
                path,
                user,
                url=database_url(),
                timezone=timezone,
                clocks=clock,
                dry_run=dry_run,
                force=force,
                all_days=all_days,
                workers=workers,
                refresh=refresh,
                count_attention=metrics_file is not None,
                on_file=None if quiet else _file_progress(out),
                on_report=show_report,
                on_plan=on_plan,
            )
        if outcome.loaded is None:
            record.nothing_ran = True
            if dry_run:
                out.print("dry run: nothing was loaded")  # even with --quiet: it is the answer
            else:
                known = outcome.previous
                assert known is not None, "nothing loaded, not a dry run: the archive was imported before"
                out.print(
                    f"archive {outcome.sha256[:12]} was already imported for participant {user} "
                    f"(import {known.import_id}, {known.imported_at:%Y-%m-%d %H:%M %Z}); nothing to do "
                    "(--force loads it again)"
                )
            return
        run = outcome.loaded.run
        record.summary = run.summary
        record.deferred_days, record.needing_reconsent = run.deferred_days, run.needing_reconsent
        reporters[0].summary(run.summary)
        if not quiet:
            out.print(f"recorded as import {outcome.loaded.import_id} (run {run.run_id})")
        problem = run.problem()
        if problem:
            raise problem


def _file_progress(out):
    """Indexing progress: a bar on a terminal, a plain line every 1,000 files otherwise."""
    state_of: dict[str, Any] = {}

    def on_file(number: int, total: int, member) -> None:
        if out.is_terminal:
            if "bar" not in state_of:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                bar = Progress(
                    TextColumn("reading archive"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("files"),
                    console=out,
                    transient=True,
                )
                state_of["bar"], state_of["task"] = bar, bar.add_task("read", total=total)
                bar.start()
            state_of["bar"].update(state_of["task"], completed=number)
            if number == total:
                state_of["bar"].stop()
        elif number == 1 or number % 1000 == 0 or number == total:
            sys.stdout.write(f"reading archive: file {number} of {total}\n")
            sys.stdout.flush()

    return on_file
