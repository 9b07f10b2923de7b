"""--metrics-file: the Prometheus textfile a run writes (counts, optional gauges), refused before a
run when unusable, and marked failed when the run cannot reach the database or is stopped."""

from __future__ import annotations

import os
import signal
import stat

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from fitpipe.cli import app
from fitpipe.output.metrics_file import write_metrics
from support.cli import fitpipe, one_error_line, popen, run_fitpipe, wait_for_loaded_days

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow


def parse_metrics(path):
    values = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            values[(sample.name, sample.labels.get("command"))] = sample.value
    return values


def test_metrics_file_parses_and_keeps_other_commands(cohort, tmp_path):
    path = tmp_path / "textfile" / "fitpipe.prom"
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            cohort,
            "backfill",
            "--start",
            "2024-01-08",
            "--end",
            "2024-01-08",
            "--user",
            "3",
            "--metrics-file",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    values = parse_metrics(path)
    with psycopg.connect(cohort) as conn:
        run = conn.execute(
            "SELECT user_days, rows_loaded, quarantined, failed FROM ingest_runs ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
    assert values[("fitpipe_run_user_days", "backfill")] == run[0] == 1
    assert values[("fitpipe_run_rows", "backfill")] == run[1] > 0
    assert values[("fitpipe_run_quarantined_rows", "backfill")] == run[2]
    assert values[("fitpipe_run_failures", "backfill")] == run[3] == 0
    assert values[("fitpipe_run_success", "backfill")] == 1
    first_success = values[("fitpipe_last_success_timestamp_seconds", "backfill")]
    assert values[("fitpipe_run_duration_seconds", "backfill")] > 0

    for command in (["aggregate", "refresh"], ["impute", "--user", "1"]):
        result = CliRunner().invoke(app, ["--database-url", cohort, *command, "--metrics-file", str(path)])
        assert result.exit_code == 0, result.output
    values = parse_metrics(path)
    assert ("fitpipe_run_rows", "aggregate_refresh") in values
    assert ("fitpipe_run_rows", "impute") in values
    assert values[("fitpipe_last_success_timestamp_seconds", "backfill")] == first_success
    assert not list(path.parent.glob("*.tmp*")), "written atomically, no temporary file left"


def test_an_unusable_metrics_file_is_refused_before_the_run(loaded, tmp_path):
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("")
    fifo = tmp_path / "metrics-fifo"
    os.mkfifo(fifo)
    with psycopg.connect(loaded) as conn:
        runs_before = conn.execute("SELECT count(*) FROM ingest_runs").fetchone()[0]
    for path in (not_a_folder / "fitpipe.prom", fifo):
        result = run_fitpipe(
            loaded,
            "backfill",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--force",
            "--metrics-file",
            str(path),
            timeout=60,
        )
        assert result.returncode == 2
        line = one_error_line(result, code=2)
        assert str(path) in line and ".partial" not in line and ".tmp" not in line
    with psycopg.connect(loaded) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_runs").fetchone()[0] == runs_before, "the work ran first"
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_run_that_cannot_reach_the_database_marks_the_metrics_failed(loaded, tmp_path):
    path = tmp_path / "fitpipe.prom"
    fitpipe(loaded, "ingest", "--days", "1", "--metrics-file", str(path))
    before = metric_values(path)
    assert before[("fitpipe_run_success", "ingest")] == 1
    result = run_fitpipe(
        "postgresql://fitpipe:secret-pw@127.0.0.1:1/nowhere", "ingest", "--days", "1", "--metrics-file", str(path)
    )
    assert result.returncode == 3
    after = metric_values(path)
    assert after[("fitpipe_run_success", "ingest")] == 0
    assert after[("fitpipe_run_failures", "ingest")] >= 1
    assert (
        after[("fitpipe_last_success_timestamp_seconds", "ingest")]
        == before[("fitpipe_last_success_timestamp_seconds", "ingest")]
    )
    assert "secret-pw" not in path.read_text()


def test_sigterm_marks_the_metrics_failed_and_keeps_the_last_success(loaded, tmp_path):
    path = tmp_path / "fitpipe.prom"
    fitpipe(loaded, "ingest", "--days", "1", "--metrics-file", str(path), "--no-refresh")
    before = metric_values(path)
    run = popen(
        loaded,
        "backfill",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-08",
        "--force",
        "--workers",
        "1",
        "--metrics-file",
        str(path),
    )
    try:
        wait_for_loaded_days(run, 1)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    after = metric_values(path)
    assert after[("fitpipe_run_success", "backfill")] == 0
    assert after[("fitpipe_run_failures", "backfill")] >= 1
    assert ("fitpipe_last_success_timestamp_seconds", "backfill") not in after
    assert (
        after[("fitpipe_last_success_timestamp_seconds", "ingest")]
        == before[("fitpipe_last_success_timestamp_seconds", "ingest")]
    )


def test_metrics_file_counts_runs_and_keeps_the_optional_gauges(tmp_path):
    path = tmp_path / "fitpipe.prom"
    common = dict(duration=2.0, user_days=3, rows=100, quarantined=1)
    write_metrics(path, "ingest", failures=0, success=True, deferred_days=4, needing_reconsent=1, **common)
    write_metrics(path, "ingest", failures=2, success=False, **common)
    write_metrics(path, "ingest", failures=0, success=True, deferred_days=0, **common)
    write_metrics(path, "impute", failures=0, success=True, **common)
    values = samples(path)
    assert values[("fitpipe_runs_total", (("command", "ingest"), ("result", "ok")))] == 2
    assert values[("fitpipe_runs_total", (("command", "ingest"), ("result", "failed")))] == 1
    assert values[("fitpipe_runs_total", (("command", "impute"), ("result", "ok")))] == 1
    assert values[("fitpipe_deferred_days", (("command", "ingest"),))] == 0
    # Not reported by the last run: the earlier value stays; never reported by impute: absent.
    assert values[("fitpipe_participants_needing_reconsent", (("command", "ingest"),))] == 1
    assert ("fitpipe_deferred_days", (("command", "impute"),)) not in values


def samples(path) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def metric_values(path) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("command", "")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_sigterm_while_the_run_starts_still_writes_the_metrics_file(database_url, tmp_path):
    """Issue 21: a SIGTERM in the first second (libraries still loading) ended the process at once."""
    import time

    path = tmp_path / "fitpipe.prom"
    run = popen(database_url, "backfill", "--start", "2024-01-01", "--end", "2024-01-02", "--metrics-file", str(path))
    try:
        # A SIGTERM before the interpreter runs fitpipe's first line can only kill it; what is
        # tested is the window after that, while the libraries load. Wait until the process
        # catches SIGTERM (its SigCgt mask in /proc), not for a fixed time that a loaded machine
        # can overrun.
        deadline = time.monotonic() + 30
        while not _catches_sigterm(run.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr
    after = metric_values(path)
    assert after[("fitpipe_run_success", "backfill")] == 0
    assert after[("fitpipe_run_failures", "backfill")] >= 1


def _catches_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            mask = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)
