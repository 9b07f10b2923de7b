"""Around each Google Health API call: the participant's request budget, back-off on 429, 503 and
504, and a timeout for slow or hung responses.

Every page request (fitpipe.sources.google_health.wire) goes through `StudyRetry` below.
google-api-core's own Retry is not used because it cannot honour `Retry-After`, cannot count
requests against a per-participant budget, and gives up by raising; a study wants the day
deferred (RetryLater) instead.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fitpipe.errors import BadInput
from fitpipe.sources.contract import BudgetLedger, RequestBudget, RetryLater

ENV_REQUEST_BUDGET = "FITPIPE_HEALTH_REQUEST_BUDGET"
ENV_TIMEOUT = "FITPIPE_HEALTH_TIMEOUT"
ENV_MAX_ATTEMPTS = "FITPIPE_HEALTH_MAX_ATTEMPTS"
ENV_MAX_PAGES = "FITPIPE_HEALTH_MAX_PAGES"
ENV_DAY_SECONDS = "FITPIPE_HEALTH_DAY_SECONDS"
# Google's default quota: 300 requests per minute per user (developers.google.com/health/rate-limits).
DEFAULT_BUDGET = RequestBudget(300, 60)
# The longest Retry-After honoured: six hours.
MAX_RETRY_AFTER = 6 * 3600.0


def request_budget_from_environment() -> RequestBudget:
    """FITPIPE_HEALTH_REQUEST_BUDGET=REQUESTS/SECONDS, e.g. 300/60 (the default)."""
    text = os.environ.get(ENV_REQUEST_BUDGET)
    if not text:
        return DEFAULT_BUDGET
    requests, _, seconds = text.partition("/")
    try:
        budget = RequestBudget(int(requests), float(seconds or 60))
    except ValueError:
        budget = None
    if budget is None or budget.requests < 1 or budget.per_seconds <= 0:
        raise BadInput(f"{ENV_REQUEST_BUDGET} must look like 300/60 (requests per seconds), got {text!r}")
    return budget


@dataclass(frozen=True)
class CallPolicy:
    # Attempts per request before the day is deferred.
    max_attempts: int = 5
    first_backoff: float = 1.0
    max_backoff: float = 32.0
    # The longest pause inside one fetch (back-off, Retry-After, budget); a longer one defers the
    # day at once instead of holding a worker.
    max_pause: float = 60.0
    # Seconds to wait for a response; google-api-core's default for these methods is 60.
    timeout: float = 30.0
    # Pages of one data type for one day: a day of 1-second heart rate is 9 pages of 10,000
    # points; a server that keeps sending page tokens must not hold the day's transaction for ever.
    max_pages: int = 100
    # Wall time for one participant-day, all its requests and pauses: past it the day is deferred.
    max_day_seconds: float = 900.0

    @classmethod
    def from_environment(cls) -> CallPolicy:
        try:
            policy = cls(
                max_attempts=int(os.environ.get(ENV_MAX_ATTEMPTS) or cls.max_attempts),
                timeout=float(os.environ.get(ENV_TIMEOUT) or cls.timeout),
                max_pages=int(os.environ.get(ENV_MAX_PAGES) or cls.max_pages),
                max_day_seconds=float(os.environ.get(ENV_DAY_SECONDS) or cls.max_day_seconds),
            )
        except ValueError:
            policy = None
        if policy is None or not (
            policy.max_attempts >= 1
            and policy.max_pages >= 1
            and math.isfinite(policy.timeout)
            and policy.timeout > 0
            and math.isfinite(policy.max_day_seconds)
            and policy.max_day_seconds > 0
        ):
            raise BadInput(
                f"{ENV_MAX_ATTEMPTS} and {ENV_MAX_PAGES} must be whole numbers of at least 1, {ENV_TIMEOUT} and "
                f"{ENV_DAY_SECONDS} positive numbers of seconds"
            )
        return policy


def _transient_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions

    return (
        exceptions.TooManyRequests,
        exceptions.ServiceUnavailable,
        exceptions.GatewayTimeout,
        requests.exceptions.Timeout,
        requests.exceptions.ConnectionError,
    )


def retry_after_seconds(exc: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), when the error carries one."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.astimezone(dt.UTC).timestamp() - now()
    # NaN or infinite is no answer (back off as without one); a far date is capped, so a server's
    # slip never parks a day for years.
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return f"HTTP {code} from the Google Health API"
    return f"no answer from the Google Health API ({type(exc).__name__})"


class StudyRetry:
    """A decorator for one page request: spends the budget for each attempt, retries
    429/503/504 and timeouts with exponential back-off and jitter (or the server's Retry-After),
    and past `max_attempts` raises RetryLater so the runner waits or defers the day."""

    def __init__(
        self,
        policy: CallPolicy,
        budget: BudgetLedger,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        self.policy, self.budget, self.sleep, self.jitter = policy, budget, sleep, jitter
        self.requests = 0

    def backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential step, plus a random share of the other half, so
        # workers that were throttled together do not come back together.
        step = min(self.policy.max_backoff, self.policy.first_backoff * 2 ** (attempt - 1))
        return step / 2 + self.jitter() * step / 2

    def spend(self) -> None:
        while True:
            try:
                self.budget.spend(1)
                self.requests += 1
                return
            except RetryLater as exc:
                if exc.after > self.policy.max_pause:
                    raise
                self.sleep(exc.after)

    def landed(self) -> None:
        """Move the request's entry in the budget to now, after its answer. Google counts a
        request when it arrives, which can be later than when we counted it (a token refresh,
        a slow connection); spacing the next ones from the answer keeps every window of
        arrivals within the budget."""
        if self.budget.spent:
            self.budget.spent[-1] = max(self.budget.spent[-1], self.budget.clock())

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        transient = _transient_errors()

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, self.policy.max_attempts + 1):
                self.spend()
                try:
                    result = func(*args, **kwargs)
                except transient as exc:
                    self.landed()
                    asked = retry_after_seconds(exc)
                    pause = asked if asked is not None else self.backoff(attempt)
                    if attempt == self.policy.max_attempts or pause > self.policy.max_pause:
                        raise RetryLater(
                            f"{describe(exc)} after {attempt} attempt(s)", after=max(pause, self.backoff(attempt + 1))
                        ) from None
                    self.sleep(pause)
                    continue
                except BaseException:
                    self.landed()
                    raise
                self.landed()
                return result
            raise AssertionError("unreachable")

        return call
