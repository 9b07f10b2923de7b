"""The source contract: what a source declares, the hooks it implements, and the errors it raises.

A source is a class with a few declarations, the way a Singer stream declares its name and keys:

    class MySource(Source):
        name = "my-source"                  # what users.source and participant_sources.source say
        credential_kind = "oauth"           # "none", "oauth" or "file"
        settle_days = 2                     # days after D during which the source may still change D
        request_budget = RequestBudget(300, 60)   # per participant, or None
        settings = MySettings               # a dataclass: what `participants add --setting` accepts
        produces = ("heart_rate", "steps")  # the catalogue metrics its parsers can write
        commands = {"enroll": "my_package.cli:enroll"}   # its own `fitpipe` sub-commands

        def fetch_day(self, participant, day, fetch): ...

        @classmethod
        def parsers(cls): ...               # the functions that turn its payloads into rows

and small named hooks with defaults: `default_settings` (what `participants add` stores),
`settle_days_for` (when the window depends on the participant's settings), `device_sync` (when
the participant's device last synced: evidence that settles a day; None keeps the calendar rule),
`prepare_workers` (before a run forks), `status_sections` and `status_lines`
(what `fitpipe status` shows about it).

`fetch_day` returns the day's payloads keyed by payload kind. It raises RetryLater when the day
cannot be had now but will be (a rate limit, a 5xx, a device that has not synced yet) and
SourceFailed when it cannot be had without a person acting (revoked consent, a broken file).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from fitpipe.errors import BadInput

if TYPE_CHECKING:
    import psycopg

    from fitpipe.days import DayContext
    from fitpipe.ingest.validate import Parser
    from fitpipe.participants import User as Participant

CredentialKind = Literal["none", "oauth", "file"]


class RetryLater(Exception):
    """The day is not available now; ask again after `after` seconds. The runner defers the day."""

    def __init__(self, reason: str, after: float | dt.timedelta = 3600.0):
        super().__init__(reason)
        self.reason = reason
        self.after = after.total_seconds() if isinstance(after, dt.timedelta) else float(after)


class SourceFailed(Exception):
    """The day cannot be fetched until someone acts; the runner fails the day with this reason.
    With needs_reconsent (revoked consent) the runner marks the participant's credentials and
    defers the day instead: it waits for the participant, not for a fix."""

    def __init__(self, reason: str, *, needs_reconsent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.needs_reconsent = needs_reconsent


class MissingExtra(BadInput):
    """A source's libraries are not installed: the message names the extra that brings them."""

    def __init__(self, source: str, extra: str, module: str):
        super().__init__(
            f"the {source} source needs {module}, which is not installed; "
            f"install it with: pip install 'fitpipe[{extra}]'"
        )


@dataclass(frozen=True)
class RequestBudget:
    """At most `requests` calls per participant in any `per_seconds` window."""

    requests: int
    per_seconds: float


@dataclass
class BudgetLedger:
    """The participant's recent request times. It travels with the participant's tasks, which run
    one at a time, so the budget holds across worker processes without shared state."""

    budget: RequestBudget | None
    spent: list[float] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def spend(self, requests: int = 1) -> None:
        """Account for requests about to be made; RetryLater when they would exceed the budget."""
        if self.budget is None:
            return
        now = self.clock()
        self.spent = [t for t in self.spent if t > now - self.budget.per_seconds]
        if len(self.spent) + requests > self.budget.requests:
            oldest = self.spent[len(self.spent) + requests - self.budget.requests - 1]
            raise RetryLater("request budget spent", after=max(oldest + self.budget.per_seconds - now, 0.001))
        self.spent += [now] * requests


@dataclass
class Fetch:
    """What a fetch may use besides the participant and the day."""

    # The instant the fetch is made (real time, or the simulated FITPIPE_TODAY).
    now: dt.datetime
    budget: BudgetLedger
    # Decrypts the participant's stored secret on first use; None when none is stored.
    secret: Callable[[], str | None] = lambda: None
    # True once the run was asked to stop (SIGTERM, Ctrl-C): a source that makes many requests
    # for one day checks it before each, so a stop never waits for a long fetch.
    stop_requested: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class PairedDevice:
    """One device paired to the participant's account, as the source reports it."""

    device: str  # the source's id of it
    device_type: str | None = None  # e.g. TRACKER, SCALE
    device_version: str | None = None  # product name
    last_sync_time: dt.datetime | None = None
    battery_level: int | None = None
    battery_status: str | None = None

    @property
    def is_tracker(self) -> bool:
        # A scale syncs too, but never carries a wearable's day.
        return self.device_type in (None, "", "TRACKER", "DEVICE_TYPE_UNSPECIFIED")


@dataclass(frozen=True)
class DeviceSync:
    """What a source knows about the participant's devices at fetch time (Source.device_sync)."""

    devices: tuple[PairedDevice, ...]

    @property
    def last_sync(self) -> dt.datetime | None:
        """The latest sync of a tracker: nothing the trackers measured after it has reached the
        source yet. The latest, not the earliest, so that an old tracker left in a drawer does not
        hold every day back for ever (a participant wears one watch)."""
        times = [d.last_sync_time for d in self.devices if d.is_tracker and d.last_sync_time]
        return max(times) if times else None


def day_end(ctx: DayContext) -> dt.datetime:
    """The last instant day D's rows can come from: the end of its night window (noon of D+1), which
    is later than the calendar day's end. A device synced past it has delivered all of D."""
    from fitpipe.catalogue import DayWindow

    return max(ctx.bounds(window)[1] for window in (DayWindow.CALENDAR, DayWindow.NIGHT))


def synced_past(sync: DeviceSync | None, ctx: DayContext) -> bool:
    """Whether the evidence allows day D to settle: no evidence (None, or no tracker paired) keeps
    the calendar rule; with a tracker, it must have synced after the day's end."""
    if sync is None or not any(d.is_tracker for d in sync.devices):
        return True
    last = sync.last_sync
    return last is not None and last >= day_end(ctx)


@dataclass(frozen=True)
class NoSettings:
    """A source without settings of its own."""


def check_settings(source: str, schema: type, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` checked against a source's settings dataclass: known keys, values of the declared
    types (an int where a float is declared is taken). BadInput names the first problem."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    checked: dict[str, Any] = {}
    for key, value in given.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise BadInput(f"unknown setting {key!r} for the {source} source; its settings: {known}")
        allowed = _allowed_types(hints[key])
        if isinstance(value, bool) and bool not in allowed:
            allowed_names = " or ".join(sorted(t.__name__ for t in allowed))
            raise BadInput(f"setting {key} of the {source} source must be {allowed_names}, got {value!r}")
        if not isinstance(value, tuple(allowed)):
            if float in allowed and isinstance(value, int):
                value = float(value)
            else:
                allowed_names = " or ".join(sorted(t.__name__ for t in allowed))
                raise BadInput(f"setting {key} of the {source} source must be {allowed_names}, got {value!r}")
        checked[key] = value
    return checked


def _allowed_types(hint: Any) -> set[type]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return {t for arg in typing.get_args(hint) for t in _allowed_types(arg)}
    if hint is type(None):
        return {type(None)}
    return {typing.get_origin(hint) or hint}


class Source:
    name: ClassVar[str]
    credential_kind: ClassVar[CredentialKind] = "none"
    settle_days: ClassVar[int] = 0
    request_budget: ClassVar[RequestBudget | None] = None
    settings: ClassVar[type] = NoSettings
    produces: ClassVar[tuple[str, ...]] = ()
    # Its own sub-commands of `fitpipe`: command name -> "module:function" (a typer command
    # function), imported when the CLI starts. Named, not imported, so the source never imports its CLI.
    commands: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def parsers(cls) -> Sequence[Parser]:
        """The functions that turn this source's payloads into rows (fitpipe.ingest.validate)."""
        raise NotImplementedError

    @classmethod
    def default_settings(cls, user_id: int) -> dict[str, Any]:
        """Settings stored for a newly enrolled participant (participant_sources.settings)."""
        return {f.name: f.default for f in dataclasses.fields(cls.settings) if f.default is not dataclasses.MISSING}

    @classmethod
    def check_settings(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        return check_settings(cls.name, cls.settings, given)

    def budget(self) -> RequestBudget | None:
        """The per-participant request budget of this run (a deployment may configure it)."""
        return self.request_budget

    def settle_days_for(self, participant: Participant) -> int:
        return self.settle_days

    def device_sync(self, participant: Participant, fetch: Fetch) -> DeviceSync | None:
        """When the participant's devices last synced, asked before each day is fetched: a day
        settles only once a tracker synced past its end (contract.synced_past). None: the source
        has no such evidence, and days settle by the calendar (settle_days) alone. May raise
        RetryLater and SourceFailed as fetch_day does; the day is then deferred or failed."""
        return None

    @classmethod
    def prepare_workers(cls) -> None:
        """Called by a run before it forks its workers: heavy imports and state the workers share
        (a semaphore) are made here."""

    @classmethod
    def forget(cls, user_id: int) -> None:
        """Remove what the source keeps about a participant outside the database (withdrawal)."""

    @classmethod
    def status_sections(cls, conn: psycopg.Connection, user_ids: Sequence[int]) -> dict[str, list[dict]]:
        """Extra sections of `fitpipe status --json` for these participants, by section name."""
        return {}

    @classmethod
    def status_lines(cls, report: Mapping[str, Any]) -> list[str]:
        """Lines `fitpipe status` prints about this source, from the report its sections are in."""
        return []

    def fetch_day(self, participant: Participant, day: dt.date, fetch: Fetch) -> Mapping[str, Any]:
        raise NotImplementedError
