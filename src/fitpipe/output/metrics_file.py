"""Prometheus metrics for node_exporter's textfile collector.

One file can serve several commands: samples of other commands already in the file are kept,
and so is this command's last-success time when this run failed. The file is replaced
atomically (prometheus_client writes a temporary file and renames it).

Gauges describe each command's last run. `fitpipe_runs_total{command, result}` counts runs
across the file's life, so Prometheus can count runs between two scrapes even when several
runs happen in between (a deleted file restarts it at zero, which `increase()` treats as a reset).
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families

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


def write_metrics(path: Path, command: str, *, duration: float, user_days: int, rows: int,
                  quarantined: int, failures: int, success: bool,
                  deferred_days: int | None = None, needing_reconsent: int | None = None) -> None:
    """Record one finished run of `command`.

    deferred_days and needing_reconsent are for commands whose sources can defer days or lose
    consent; None leaves the command's earlier value (or its absence) as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, float] = {
        "fitpipe_run_duration_seconds": duration, "fitpipe_run_user_days": user_days, "fitpipe_run_rows": rows,
        "fitpipe_run_quarantined_rows": quarantined, "fitpipe_run_failures": failures,
        "fitpipe_run_success": 1.0 if success else 0.0,
    }
    if deferred_days is not None:
        current["fitpipe_deferred_days"] = deferred_days
    if needing_reconsent is not None:
        current["fitpipe_participants_needing_reconsent"] = needing_reconsent
    # Two commands finishing together must not write back each other's stale samples.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if success:
            current["fitpipe_last_success_timestamp_seconds"] = time.time()
        _update(path, command, current, "ok" if success else "failed")


def _update(path: Path, command: str, current: dict[str, float], result: str) -> None:
    existing = _Existing(path)
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
    write_to_textfile(str(path), registry)


def write_run_metrics(path: Path, command: str, summary, status: str, *,
                      deferred_days: int | None = None, needing_reconsent: int | None = None) -> None:
    """ingest/backfill: from the runner's RunSummary."""
    write_metrics(path, command, duration=summary.seconds, user_days=summary.count("loaded"), rows=summary.rows,
                  quarantined=summary.quarantined, failures=summary.count("failed"), success=status == "ok",
                  deferred_days=deferred_days, needing_reconsent=needing_reconsent)
