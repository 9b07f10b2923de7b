"""What ingest and backfill print while they run.

On a terminal: a rich progress bar (user-days, rows, rows/s), then a summary table.
Otherwise (cron): one plain line per user-day and one summary line, no ANSI codes.
--quiet: only errors, on stderr.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

from fitpipe.ingest.load import DayOutcome

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    def __init__(self, command: str, *, quiet: bool = False):
        from rich.console import Console

        self.command = command
        self.quiet = quiet
        self.console = Console(highlight=False)
        self.interactive = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.rows = 0
        self.run_id: int | None = None

    def start(self, run_id: int, total: int) -> None:
        self.run_id = run_id
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(
                TextColumn(f"{self.command} run {run_id}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("user-days"),
                TextColumn("{task.fields[rows]:,} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.task = progress.add_task(self.command, total=total, rows=0, rate=0.0)
            progress.start()
            self.progress = progress
        elif not self.quiet:
            self._line(f"run={run_id} status=started user_days_planned={total}")

    def _line(self, text: str, error: bool = False) -> None:
        stream = sys.stderr if error else sys.stdout
        stream.write(f"{_stamp()} {self.command} {text}\n")
        stream.flush()

    def day_done(self, outcome: DayOutcome) -> None:
        self.rows += outcome.rows
        if outcome.status == "failed":
            if self.progress:
                from rich.markup import escape

                self.progress.console.print(
                    f"[red]failed[/red] user {outcome.user_id} day {outcome.day}: {escape(outcome.error or '')}",
                    markup=True,
                    highlight=False,
                )
            else:
                self._line(
                    f"user={outcome.user_id} day={outcome.day} status=failed error={outcome.error!r}", error=True
                )
        if self.progress and self.task is not None:
            elapsed = self.progress.tasks[0].elapsed or 1e-9
            self.progress.update(self.task, advance=1, rows=self.rows, rate=self.rows / elapsed)
        elif not self.quiet and outcome.status != "failed":
            note = {
                "done": " note=already-settled",
                "busy": " note=held-by-another-run",
                "withdrawn": " note=participant-withdrew",
                "deferred": f" note={outcome.error!r}",
            }.get(outcome.status, "")
            state = f" state={outcome.state}" if outcome.state else ""
            self._line(
                f"user={outcome.user_id} day={outcome.day} status={outcome.status}{state} rows={outcome.rows} "
                f"quarantined={outcome.quarantined}{note}"
            )

    def stop(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None

    def summary(self, summary) -> None:
        if self.quiet:
            return
        rate = summary.rows / summary.seconds if summary.seconds else 0.0
        fields = (
            f"run={summary.run_id} status=finished user_days={summary.count('loaded')} rows={summary.rows} "
            f"quarantined={summary.quarantined} skipped_already_ingested={summary.count('done')} "
            f"skipped_held_by_another_run={summary.count('busy')} unchanged={summary.count('unchanged')} "
            f"deferred={summary.count('deferred')} failed={summary.count('failed')} "
            f"seconds={summary.seconds:.1f} rows_per_s={rate:.0f}"
        )
        withdrawn = summary.count("withdrawn")
        if withdrawn:
            fields += f" skipped_participant_withdrew={withdrawn}"
        if not self.interactive:
            self._line(fields)
            return
        from rich.table import Table

        table = Table(title=f"{summary.command} run {summary.run_id}: rows per metric")
        table.add_column("metric")
        table.add_column("rows", justify="right")
        for name, rows in sorted(summary.rows_by_metric().items()):
            table.add_row(name, f"{rows:,}")
        table.add_row("[bold]total[/bold]", f"[bold]{summary.rows:,}[/bold]")
        self.console.print(table)
        self.console.print(
            f"{summary.count('loaded')} user-days loaded, {summary.quarantined} records quarantined, "
            f"{summary.count('done')} skipped (already settled), {summary.count('busy')} skipped "
            f"(held by another run), {summary.count('unchanged')} unchanged, {summary.count('deferred')} deferred, "
            f"{summary.count('failed')} failed, "
            + (f"{withdrawn} skipped (the participant withdrew), " if withdrawn else "")
            + f"in {summary.seconds:.1f} s "
            f"({rate:,.0f} rows/s)"
        )
