"""Query parameters and path ids checked once, as the CLI checks its flags: a bad one is a 400
with one line saying which and why; an unknown participant is a 404."""

from __future__ import annotations

import datetime as dt

import psycopg
from starlette.requests import Request

from fitpipe.cli_support import parse_day
from fitpipe.errors import BadInput
from fitpipe.participants import User, list_users


class NotFound(Exception):
    """Answered 404 with its message."""


def day(request: Request, name: str) -> dt.date | None:
    """A local day parameter, checked as the CLI checks its day flags."""
    value = request.query_params.get(name)
    return parse_day(value[:40], name) if value else None


def day_or(request: Request, name: str, default: dt.date) -> dt.date:
    """The day given, else `default`."""
    given = day(request, name)
    return default if given is None else given


def integer(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInput(f"{name} must be a whole number, got {value[:40]!r}") from None


def flag(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadInput(f"{name} must be 1 or 0, got {value[:40]!r}")


def choice(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name) or default
    if value not in allowed:
        raise BadInput(f"{name} must be one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


def participant(conn: psycopg.Connection, user_id: int) -> User:
    try:
        return list_users(conn, [user_id])[0]
    except BadInput:
        raise NotFound(f"no participant {user_id}") from None
