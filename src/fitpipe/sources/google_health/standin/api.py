"""The stand-in's state, thread-safe: its accounts, with the OAuth, fault and data parts around
them. Tests drive it directly, the command line through /_control."""

from __future__ import annotations

import threading
from typing import Any

from fitpipe.sources.google_health.standin.faults import Faults
from fitpipe.sources.google_health.standin.model import Account
from fitpipe.sources.google_health.standin.oauth import OAuthServer
from fitpipe.sources.google_health.standin.pages import DataPages


class HealthApi(OAuthServer, Faults, DataPages):
    """A Google Health API and its OAuth server, in memory: accounts, grants, faults and data."""

    def __init__(
        self, *, client_secret: str | None = None, quota: tuple[int, float] = (300, 60.0), latency: float = 0.0
    ):
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        # Where the server listens (HealthApiServer sets it): the OAuth client's endpoints point there.
        self.base_url = ""
        OAuthServer.__init__(self, client_secret)
        Faults.__init__(self, quota, latency)
        DataPages.__init__(self)
        # (account, HTTP status) of every users/me/pairedDevices request, for tests.
        self.device_requests: list[tuple[str, int]] = []

    def add_account(self, name: str, **settings: Any) -> Account:
        with self.lock:
            account = Account(name, **settings)
            self.accounts[name] = account
            return account

    def update_account(self, name: str, **settings: Any) -> None:
        with self.lock:
            account = self.accounts[name]
            for key, value in settings.items():
                setattr(account, key, value)
            self._days = {k: v for k, v in self._days.items() if k[0] != name}
            self._answers = {k: v for k, v in self._answers.items() if k[0] != name}
