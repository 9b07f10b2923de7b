"""What every `fitpipe` command shares: the database URL of this invocation, one-line errors with
their exit codes, the console, and day flags. Source packages' sub-commands use it too."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, ParamSpec, TypeVar, overload

import click
import typer

from fitpipe.config import mask_secrets
from fitpipe.errors import BadInput, FitpipeError, first_line

Params = ParamSpec("Params")
Result = TypeVar("Result")


def fail(message: str, code: int) -> NoReturn:
    # Plain write: rich would wrap the line at the terminal width.
    sys.stderr.write(f"error: {mask_secrets(message)}\n")
    raise typer.Exit(code)


def handles_errors(command: Callable[Params, Result]) -> Callable[Params, Result]:
    """Known errors become one line on stderr and their exit code; secrets are masked."""
    import psycopg

    @functools.wraps(command)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        try:
            return command(*args, **kwargs)
        except FitpipeError as exc:
            fail(str(exc), exc.exit_code)
        except psycopg.Error as exc:
            fail(f"database error ({type(exc).__name__}): {first_line(exc)}", 6)
        except BrokenPipeError:
            # The reader went away (e.g. `fitpipe export | head`): not an error worth a message.
            # Not a `with`: this stays open as the process's stdout until exit, so the final flush
            # goes nowhere instead of raising a second BrokenPipeError.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            raise typer.Exit(0) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or first_line(exc)}{where}", 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def database_url() -> str:
    """The URL the root command resolved from --database-url, FITPIPE_DATABASE_URL or the default."""
    return click.get_current_context().find_root().obj["url"]


@contextlib.contextmanager
def database(*, schema: bool = True) -> Iterator[Any]:
    """A connection to this invocation's database; with `schema`, one that fitpipe has migrated."""
    from fitpipe.db import connection
    from fitpipe.migrate import require_schema

    with connection(database_url()) as conn:
        if schema:
            require_schema(conn)
        yield conn


@overload
def parse_day(value: str, flag: str) -> dt.date: ...
@overload
def parse_day(value: None, flag: str) -> None: ...
@overload
def parse_day(value: str | None, flag: str) -> dt.date | None: ...


def parse_day(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{flag} must be a date like 2024-01-31, got {value!r}") from None
    if not dt.date(1900, 1, 1) <= day <= dt.date(9000, 12, 31):
        raise BadInput(f"{flag} {value} is outside the years 1900..9000")
    return day


def console(stderr: bool = False):
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        # Logs and pipes get whole rows rather than rich's 80-column default: a table keeps its
        # natural width (rich shrinks columns to fit, cutting ids to "1…"), a line is not wrapped.
        out = Console(stderr=stderr, highlight=False, width=OFF_TERMINAL_WIDTH)
    return out


OFF_TERMINAL_WIDTH = 10_000


def flowing(text: str) -> str:
    """A docstring with each paragraph on one line, so help reflows to the terminal's width
    instead of keeping the source's line breaks mid-sentence."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Give every command of `app` (and of its sub-apps) its docstring as flowing help."""
    for command in app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = flowing(command.callback.__doc__)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = flowing(info.help)
            reflow_help(group.typer_instance)
