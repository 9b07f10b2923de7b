"""Errors that fitpipe knows how to explain in one line.

The CLI turns any FitpipeError into its message on stderr and its exit code; anything
else is a bug and keeps its traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver errors add context lines and hints)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class FitpipeError(Exception):
    exit_code = 1


class BadInput(FitpipeError):
    """A flag, date, user or payload the user gave us is wrong."""

    exit_code = 2


class NoData(BadInput):
    """The request is well formed but selects no rows (a range past the data, a metric the
    participant has none of): the CLI exits as for bad input, the web app answers 404."""


class DatabaseUnavailable(FitpipeError):
    exit_code = 3


class SchemaError(FitpipeError):
    """The database is not in a state fitpipe can work with (missing extension, edited migration)."""

    exit_code = 4


class PartialFailure(FitpipeError):
    """Some units of work failed; the rest were committed."""

    exit_code = 5


class HeldByAnotherRun(FitpipeError):
    """Every user-day a run planned was skipped because another session held its lock."""

    exit_code = 7
