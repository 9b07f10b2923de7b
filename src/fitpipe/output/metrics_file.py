"""Prometheus metrics for node_exporter's textfile collector.

One file can serve several commands: samples of other commands already in the file are kept,
and so is this command's last-success time when this run failed. The file is replaced
atomically (fitpipe.output.target); a symlink is followed, and anything but a regular file is
refused, since the file is read back to merge it.

Gauges describe each command's last run. `fitpipe_runs_total{command, result}` counts runs
across the file's life, so Prometheus can count runs between two scrapes even when several
runs happen in between (a deleted file restarts it at zero, which `increase()` treats as a reset).
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from fitpipe.output import early_sigterm
from fitpipe.output.target import Target, check_target, open_target

if TYPE_CHECKING:
    from fitpipe.ingest.runner import RunSummary

FLAG = "--metrics-file"

GAUGES = {
    "fitpipe_run_duration_seconds": "Wall time of the last run.",
    "fitpipe_run_user_days": "User-days the last run processed (loaded, refreshed or imputed).",
    "fitpipe_run_rows": "Rows the last run wrote.",
    "fitpipe_run_quarantined_rows": "Records the last run set aside in quarantine.",
    "fitpipe_run_failures": "User-days (or units of work) that failed in the last run.",
    "fitpipe_run_success": "1 if the last run succeeded, else 0.",
    "fitpipe_last_success_timestamp_seconds": "Unix time when the command last succeeded.",
    # Written only by commands that pass them (see write_metrics); absent until then.
    "fitpipe_deferred_days": "User-days the last run left for a later run because their source could not "
    "deliver them yet.",
    "fitpipe_participants_needing_reconsent": "Participants whose source refused their credentials in the "
    "last run: they must consent again.",
}
RUNS = "fitpipe_runs"  # exposed as fitpipe_runs_total
RUNS_HELP = "Runs finished, by command and result (ok or failed)."


class _Existing:
    """The samples of the file as it is: gauges by {name: {command: value}}, runs by {(command, result): n}."""

    def __init__(self, path: Path):
        self.gauges: dict[str, dict[str, float]] = {}
        self.runs: dict[tuple[str, str], float] = {}
        if not path.exists():
            return
        try:
            families = list(text_string_to_metric_families(path.read_text()))
        except (ValueError, OSError):
            return  # a damaged file is simply rewritten
        for family in families:
            for sample in family.samples:
                labels = sample.labels
                if sample.name in GAUGES and "command" in labels:
                    self.gauges.setdefault(sample.name, {})[labels["command"]] = sample.value
                elif sample.name == RUNS + "_total" and {"command", "result"} <= labels.keys():
                    self.runs[(labels["command"], labels["result"])] = sample.value


class _RunsCounter:
    """A collector for fitpipe_runs_total with the values carried over from the file."""

    def __init__(self, runs: dict[tuple[str, str], float]):
        self.runs = runs

    def collect(self):
        family = CounterMetricFamily(RUNS, RUNS_HELP, labels=["command", "result"])
        for (command, result), value in sorted(self.runs.items()):
            family.add_metric([command, result], value)
        yield family


def write_metrics(
    path: Path,
    command: str,
    *,
    duration: float,
    user_days: int,
    rows: int,
    quarantined: int,
    failures: int,
    success: bool,
    deferred_days: int | None = None,
    needing_reconsent: int | None = None,
) -> None:
    """Record one finished run of `command`.

    deferred_days and needing_reconsent are for commands whose sources can defer days or lose
    consent; None leaves the command's earlier value (or its absence) as it was.
    """
    target = check_metrics_file(path)
    target.path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, float] = {
        "fitpipe_run_duration_seconds": duration,
        "fitpipe_run_user_days": user_days,
        "fitpipe_run_rows": rows,
        "fitpipe_run_quarantined_rows": quarantined,
        "fitpipe_run_failures": failures,
        "fitpipe_run_success": 1.0 if success else 0.0,
    }
    if deferred_days is not None:
        current["fitpipe_deferred_days"] = deferred_days
    if needing_reconsent is not None:
        current["fitpipe_participants_needing_reconsent"] = needing_reconsent
    # Two commands finishing together must not write back each other's stale samples.
    with open(target.path.with_name(target.path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if success:
            current["fitpipe_last_success_timestamp_seconds"] = time.time()
        _update(target, command, current, "ok" if success else "failed")


def check_metrics_file(path: Path | str) -> Target:
    """Check before a run that its metrics file can be written; BadInput names the path."""
    return check_target(path, FLAG, regular_only=True, create_folders=True)


def _update(target: Target, command: str, current: dict[str, float], result: str) -> None:
    existing = _Existing(target.path)
    for name, value in current.items():
        existing.gauges.setdefault(name, {})[command] = value
    existing.runs[(command, result)] = existing.runs.get((command, result), 0.0) + 1
    registry = CollectorRegistry()
    for name, help_text in GAUGES.items():
        if not existing.gauges.get(name):
            continue
        gauge = Gauge(name, help_text, ["command"], registry=registry)
        for label, value in sorted(existing.gauges[name].items()):
            gauge.labels(command=label).set(value)
    registry.register(_RunsCounter(existing.runs))
    with open_target(target) as out:
        out.write(generate_latest(registry))


class RunFigures(TypedDict):
    """A run's figures as write_metrics takes them."""

    duration: float
    user_days: int
    rows: int
    quarantined: int
    failures: int


class RunRecord:
    """What a command's metrics say about its run, filled in as the run goes.

    It is also a runner Progress (start/day_done/stop), so the days finished before an
    interrupt still count. `summary` (a RunSummary) or `figures` (refresh, impute) set at the
    end take precedence.
    """

    def __init__(self, command: str):
        self.command = command
        self.started = time.monotonic()
        self.planned = 0
        self.outcomes: list = []
        self.summary: RunSummary | None = None
        self.figures: RunFigures | None = None
        self.deferred_days: int | None = None
        self.needing_reconsent: int | None = None
        # Set by a command that ended without running anything (a dry run): nothing is written.
        self.nothing_ran = False

    def start(self, run_id: int, total: int) -> None:
        self.planned = total

    def day_done(self, outcome) -> None:
        self.outcomes.append(outcome)

    def stop(self) -> None:
        pass

    def write(self, path: Path, success: bool) -> None:
        figures: RunFigures
        if self.figures is not None:
            figures = self.figures.copy()
        else:
            outcomes = self.summary.outcomes if self.summary else self.outcomes
            loaded = sum(1 for o in outcomes if o.status == "loaded")
            failed = sum(1 for o in outcomes if o.status == "failed")
            if not success and not self.summary:
                failed += max(self.planned - len(outcomes), 0)  # days an interrupt left undone
            figures = {
                "duration": self.summary.seconds if self.summary else time.monotonic() - self.started,
                "user_days": loaded,
                "rows": sum(o.rows for o in outcomes),
                "quarantined": sum(o.quarantined for o in outcomes),
                "failures": failed,
            }
        if not success:
            figures["failures"] = max(figures.get("failures", 0), 1)
        write_metrics(
            path,
            self.command,
            success=success,
            deferred_days=self.deferred_days,
            needing_reconsent=self.needing_reconsent,
            **figures,
        )


class _Both:
    """Two runner Progress objects as one."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def start(self, run_id: int, total: int) -> None:
        self.first.start(run_id, total)
        self.second.start(run_id, total)

    def day_done(self, outcome) -> None:
        self.first.day_done(outcome)
        self.second.day_done(outcome)

    def stop(self) -> None:
        self.first.stop()
        self.second.stop()


def progress_and_record(progress, record: RunRecord):
    return _Both(progress, record)


@contextlib.contextmanager
def recorded_run(path: Path | None, command: str) -> Iterator[RunRecord]:
    """Check the metrics file before the work, and write it on every way out of the block.

    A block that raises (a lost database, SIGTERM, Ctrl-C, failed days) is written as a failed
    run: success 0, at least one failure, and the last-success time left as it was. The
    block's own exception is never hidden by a failure to write the file.
    """
    if path is not None:
        check_metrics_file(path)
    record = RunRecord(command)
    try:
        with early_sigterm.interrupts() if path is not None else contextlib.nullcontext():
            yield record
    except BaseException:
        if path is not None:
            with contextlib.suppress(Exception):
                record.write(path, success=False)
        raise
    if path is not None and not record.nothing_ran:
        ok = record.summary.status == "ok" if record.summary else True
        record.write(path, success=ok)
