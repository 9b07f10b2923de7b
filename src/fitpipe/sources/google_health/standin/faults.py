"""Faults on demand, and the traffic they are judged by: injected 429/503/504 answers and delays,
the per-account quota, a simulated round trip, and the log of every data request."""

from __future__ import annotations

import collections
import threading
import time


class Faults:
    """The fault and traffic half of the stand-in's state (a part of HealthApi, which holds the lock)."""

    lock: threading.RLock

    def __init__(self, quota: tuple[int, float] = (300, 60.0), latency: float = 0.0) -> None:
        self.quota = quota
        # Seconds every data request waits before it is answered (a simulated round trip).
        self.latency = latency
        self.faults: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        # Accounts whose every data page is empty and names a next page (a paging bug, for tests).
        self.endless_pages: set[str] = set()
        # (account, monotonic time, path, status) of every data request, for tests.
        self.requests: list[tuple[str, float, str, int]] = []
        # Data requests being answered now, and the most at once (a client's concurrency cap).
        self.in_flight = 0
        self.peak_in_flight = 0
        # Arrival to answer sent, per data request: the latency the stand-in actually gave.
        self.answer_seconds: list[float] = []

    def inject(self, name: str, *faults: dict) -> None:
        """Faults for the account's next data requests, one each: {"status": 429, "retry_after": 2},
        {"status": 503}, {"status": 504}, {"delay": 5.0}."""
        with self.lock:
            self.faults[name].extend(faults)

    def requests_per_window(self, name: str, seconds: float) -> int:
        """The most data requests of the account in any window of `seconds`."""
        with self.lock:
            times = sorted(t for account, t, _, _ in self.requests if account == name)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def take_fault(self, name: str) -> dict | None:
        with self.lock:
            queue = self.faults.get(name)
            return queue.popleft() if queue else None

    def over_quota(self, name: str) -> bool:
        limit, seconds = self.quota
        now = time.monotonic()
        with self.lock:
            recent = sum(1 for account, t, _, status in self.requests if account == name and t > now - seconds)
        return recent > limit
