"""How long `fitpipe --help` takes to start, against a bare interpreter measured in the same run.

    .venv/bin/python benchmarks/startup.py [--runs 10]

Absolute times drift from run to run on shared machines; the ratio to `python -c pass` is the
figure to compare. Prints figures only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def interpreter() -> str:
    """The project's venv interpreter when there is one, so the script works from any python."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def fitpipe_command(python: str) -> list[str]:
    """The console script next to the interpreter (as users run it), else `python -m fitpipe.cli`."""
    script = Path(python).with_name("fitpipe")
    if script.exists():
        return [str(script)]
    found = shutil.which("fitpipe")
    return [found] if found else [python, "-m", "fitpipe.cli"]


def measure(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)  # warm caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {proc.stderr.decode().strip()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs

    python = interpreter()
    fitpipe = fitpipe_command(python)
    cases = [
        ("python -c pass", [python, "-c", "pass"]),
        ("python -c 'import fitpipe.cli'", [python, "-c", "import fitpipe.cli"]),
        ("fitpipe --help", [*fitpipe, "--help"]),
        ("fitpipe --version", [*fitpipe, "--version"]),
    ]
    results = [(label, measure(command, runs)) for label, command in cases]
    baseline = statistics.median(results[0][1])

    print(f"startup, {runs} runs each ({' '.join(fitpipe)}; {python})")
    print(f"{'command':<34}{'median ms':>11}{'min ms':>9}{'x baseline':>12}")
    for label, times in results:
        median = statistics.median(times)
        print(f"{label:<34}{median * 1000:>11.1f}{min(times) * 1000:>9.1f}{median / baseline:>12.1f}")


if __name__ == "__main__":
    main()
