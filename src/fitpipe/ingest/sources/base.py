"""The source contract: what a source declares, the hooks it implements, and the errors it raises.

A source is a class with a few declarations, the way a Singer stream declares its name and keys:

    class MySource(Source):
        name = "my-source"                 # what users.source and participant_sources.source say
        payload_format = "fitbit-webapi"   # which parsers read its payloads (fitpipe.ingest.formats)
        credential_kind = "oauth"          # "none", "oauth" or "file"
        settle_days = 2                    # days after D during which the source may still change D
        request_budget = RequestBudget(300, 60)   # per participant, or None

        def fetch_day(self, participant, day, fetch): ...

and small named hooks with defaults: `default_settings` (what `participants add` stores for it)
and `settle_days_for` (when the window depends on the participant's settings).

`fetch_day` returns the day's payloads keyed by payload kind. It raises RetryLater when the day
cannot be had now but will be (a rate limit, a 5xx, a device that has not synced yet) and
SourceFailed when it cannot be had without a person acting (revoked consent, a broken file).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

CREDENTIAL_KINDS = ("none", "oauth", "file")


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


class Source:
    name: ClassVar[str]
    payload_format: ClassVar[str]
    credential_kind: ClassVar[str] = "none"
    settle_days: ClassVar[int] = 0
    request_budget: ClassVar[RequestBudget | None] = None

    @classmethod
    def default_settings(cls, user_id: int) -> dict[str, Any]:
        """Settings stored for a newly enrolled participant (participant_sources.settings)."""
        return {}

    def settle_days_for(self, participant: Any) -> int:
        return self.settle_days

    @classmethod
    def prepare_workers(cls) -> None:
        """Called by a run before it forks its workers: state they must share (a semaphore) is made here."""

    def fetch_day(self, participant: Any, day: dt.date, fetch: Fetch) -> Mapping[str, Any]:
        raise NotImplementedError
