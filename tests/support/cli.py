"""The real CLI, in-process (typer's CliRunner) or as a subprocess (as cron runs it), and the check
that a refused command wrote one clear line and its documented exit code.

Exit codes (README, cli_support.py): 0 done, 1 other known error, 2 bad input, 3 database
unreachable, 4 schema not initialised or not current, 5 some user-days failed, 6 database error,
7 every planned user-day held by another run, 130 interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from typer.testing import CliRunner, Result

from fitpipe.cli import app

BAD_INPUT = 2
UNREACHABLE = 3
SCHEMA = 4
DAYS_FAILED = 5
DATABASE_ERROR = 6
ALL_HELD = 7


def fitpipe(url: str, *args: str, ok: bool = True) -> Result:
    """The real CLI in-process (CliRunner); with ok, a non-zero exit fails the test with its output."""
    result = CliRunner().invoke(app, ["--database-url", url, *args])
    if ok:
        assert result.exit_code == 0, (
            f"fitpipe {' '.join(args)} -> exit {result.exit_code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
    return result


def run_fitpipe(database_url: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """fitpipe in a subprocess, as cron would run it."""
    env = {**os.environ, "FITPIPE_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", *args], env=env, capture_output=True, text=True, **kwargs
    )


def popen(url: str, *args: str) -> subprocess.Popen:
    """fitpipe started in the background, as a second cron run would be."""
    return subprocess.Popen(
        [sys.executable, "-m", "fitpipe.cli", *args],
        env={**os.environ, "FITPIPE_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def exit_code(result: Result | subprocess.CompletedProcess) -> int:
    return result.exit_code if isinstance(result, Result) else result.returncode


def one_error_line(result: Result | subprocess.CompletedProcess, *words: str, code: int) -> str:
    """The single `error: ...` line a refused command writes to stderr: exactly one line, each of
    words in it, exit code `code`, and no traceback anywhere. Works on CliRunner results and on
    finished subprocesses."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    if isinstance(result, Result):
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]

    assert exit_code(result) == code, (exit_code(result), lines[0])
    return lines[0]


def wait_for_loaded_days(process: subprocess.Popen, count: int, timeout: float = 120) -> list[str]:
    """Read the run's plain log lines until `count` days are loaded."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if sum("status=loaded" in logged for logged in lines) >= count:
            return lines
    raise AssertionError("the run did not load days in time:\n" + "".join(lines))
