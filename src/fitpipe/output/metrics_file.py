"""Prometheus metrics for node_exporter's textfile collector.

One file can serve several commands: samples of other commands already in the file are kept,
and so is this command's last-success time when this run failed. The file is replaced
atomically (prometheus_client writes a temporary file and renames it).
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

GAUGES = {
    "fitpipe_run_duration_seconds": "Wall time of the last run.",
    "fitpipe_run_user_days": "User-days the last run processed (loaded, refreshed or imputed).",
    "fitpipe_run_rows": "Rows the last run wrote.",
    "fitpipe_run_quarantined_rows": "Records the last run set aside in quarantine.",
    "fitpipe_run_failures": "User-days (or units of work) that failed in the last run.",
    "fitpipe_run_success": "1 if the last run succeeded, else 0.",
    "fitpipe_last_success_timestamp_seconds": "Unix time when the command last succeeded.",
}


def _existing(path: Path) -> dict[str, dict[str, float]]:
    """{metric name: {command: value}} of the file as it is."""
    found: dict[str, dict[str, float]] = {}
    if not path.exists():
        return found
    try:
        families = list(text_string_to_metric_families(path.read_text()))
    except (ValueError, OSError):
        return found  # a damaged file is simply rewritten
    for family in families:
        for sample in family.samples:
            if sample.name in GAUGES and "command" in sample.labels:
                found.setdefault(sample.name, {})[sample.labels["command"]] = sample.value
    return found


def write_metrics(path: Path, command: str, *, duration: float, user_days: int, rows: int,
                  quarantined: int, failures: int, success: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two commands finishing together must not write back each other's stale samples.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update(path, command, duration=duration, user_days=user_days, rows=rows, quarantined=quarantined,
                failures=failures, success=success)


def _update(path: Path, command: str, *, duration: float, user_days: int, rows: int,
            quarantined: int, failures: int, success: bool) -> None:
    values = _existing(path)
    current = {
        "fitpipe_run_duration_seconds": duration, "fitpipe_run_user_days": user_days, "fitpipe_run_rows": rows,
        "fitpipe_run_quarantined_rows": quarantined, "fitpipe_run_failures": failures,
        "fitpipe_run_success": 1.0 if success else 0.0,
    }
    if success:
        current["fitpipe_last_success_timestamp_seconds"] = time.time()
    for name, value in current.items():
        values.setdefault(name, {})[command] = value
    registry = CollectorRegistry()
    for name, help_text in GAUGES.items():
        if not values.get(name):
            continue
        gauge = Gauge(name, help_text, ["command"], registry=registry)
        for label, value in sorted(values[name].items()):
            gauge.labels(command=label).set(value)
    write_to_textfile(str(path), registry)


def write_run_metrics(path: Path, command: str, summary, status: str) -> None:
    """ingest/backfill: from the runner's RunSummary."""
    write_metrics(path, command, duration=summary.seconds, user_days=summary.count("loaded"), rows=summary.rows,
                  quarantined=summary.quarantined, failures=summary.count("failed"), success=status == "ok")
