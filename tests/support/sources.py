"""Synthetic participants and fetches as the runner hands them to a source, without a database,
and a store holding one synthetic participant."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import psycopg

from fitpipe.participants import User, add_participant
from fitpipe.sources.contract import BudgetLedger, Fetch
from support.cli import fitpipe
from support.db import emptied


def synthetic_user(
    user_id: int,
    timezone: str = "UTC",
    study_start: dt.date = dt.date(2024, 1, 1),
    *,
    wear_gaps: bool = True,
    display_name: str | None = None,
    **settings,
) -> User:
    """A synthetic participant as list_users would return it, without a database: the source's
    default settings for the id (its seed), with wear_gaps and any other setting overridden."""
    from fitpipe.sources.synthetic.source import SyntheticSource

    return User(
        user_id,
        display_name or f"participant-{user_id:04d}",
        timezone,
        "synthetic",
        study_start,
        settings=SyntheticSource.default_settings(user_id) | {"wear_gaps": wear_gaps} | settings,
        zones=((study_start, timezone),),
    )


def fetch_now(now: dt.datetime | None = None) -> Fetch:
    """What a source's fetch_day gets from the runner: the instant of the fetch and no request budget."""
    return Fetch(now=now or dt.datetime.now(dt.UTC), budget=BudgetLedger(None))


def one_participant_store(url: str, backfill_through: str | None = None) -> str:
    """The database of url emptied, with synthetic participant 1 from 2024-01-01, and with its days
    up to `backfill_through` (YYYY-MM-DD) loaded when given."""
    emptied(url)
    fitpipe(url, "seed-users", "--count", "1", "--start-date", "2024-01-01")
    if backfill_through:
        fitpipe(url, "backfill", "--start", "2024-01-01", "--end", backfill_through, "--workers", "1")
    return url


def payload_digest(payloads) -> str:
    """A digest of a source's payloads for one day, equal across processes when the payloads are."""

    def plain(value):
        return value.item() if hasattr(value, "item") else str(value)

    return hashlib.sha256(json.dumps(payloads, sort_keys=True, default=plain).encode()).hexdigest()


def three_participant_week(url: str) -> str:
    """Three UTC participants from 2024-01-01 with 2024-01-01..07 loaded into the (initialised)
    database of url; users 1 and 2 from seed-users, user 3 ("always-worn") without wear gaps."""
    fitpipe(url, "seed-users", "--count", "2", "--start-date", "2024-01-01")
    with psycopg.connect(url, autocommit=True) as conn:
        add_participant(
            conn,
            3,
            source="synthetic",
            timezone="UTC",
            study_start=dt.date(2024, 1, 1),
            display_name="always-worn",
            settings={"seed": 777, "wear_gaps": False},
        )
    fitpipe(url, "backfill", "--start", "2024-01-01", "--end", "2024-01-07", "--workers", "2")
    return url
