"""SIGTERM before a recorded run has begun: a run given --metrics-file must still write the file.

Python's default for SIGTERM ends the process at once, so a run stopped while it was still
importing its libraries (the first seconds) left no metrics file, and monitoring saw nothing.
`hold()` runs first thing in the CLI: it remembers the signal when the command line names a
metrics file, and otherwise ends the process as before. `interrupts()` (around a recorded run)
turns a remembered or a new SIGTERM into KeyboardInterrupt, which is written as a failed run.
This module imports nothing heavy, so it can be installed before typer and pandas load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

_received = threading.Event()


def _names_metrics_file(argv: list[str]) -> bool:
    return any(arg == "--metrics-file" or arg.startswith("--metrics-file=") for arg in argv)


def _remember_or_die(signum, frame) -> None:
    if _names_metrics_file(sys.argv[1:]):
        _received.set()
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def hold() -> None:
    """Remember an early SIGTERM for a run that will write a metrics file (main thread, default handler only)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _remember_or_die)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt; one received earlier raises it at once.
    The runner installs its own handler while days run (it must not raise inside the process pool)."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if _received.is_set():
            _received.clear()
            raise KeyboardInterrupt
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
