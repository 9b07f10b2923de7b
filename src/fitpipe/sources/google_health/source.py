"""The google-health source: a participant's Fitbit or Pixel Watch data from the Google Health API v4.

Per participant-day it reads each data type of fitpipe.sources.google_health.queries for the
participant's local day, page by page, with Google's request and response types over the API's
binary wire (fitpipe.sources.google_health.wire says why not the generated client's JSON pager)
and google-auth credentials rebuilt from the grant `fitpipe enroll` stored.

Duplicates: a participant's steps or heart rate can reach Google from the watch and again from
the phone (Health Connect, Google Fit). fitpipe reads through the `reconcile` endpoint, where
Google merges overlapping sources into one stream, restricted to the `google-wearables` data
source family (Fitbit trackers and Pixel Watch, no manual or phone entries). Filtering `list`
by dataSource ourselves would mean re-implementing Google's merge and guessing which source
wins; reconcile is the documented way, and the wearable family is what a wearable study
measures. A participant's `data_source_family` setting can widen it (e.g. all-sources).

Outcomes, per the source contract:
- no grant stored yet: RetryLater (the day waits for `fitpipe enroll`);
- invalid_grant on refresh (revoked, or 7-day expiry of a Testing-mode app): SourceFailed with
  needs_reconsent, which the runner records as a deferred day and a needs_reconsent credential;
- 429/503/504/timeouts: retried with back-off (fitpipe.sources.google_health.calls), then RetryLater.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fitpipe.sources.contract import DeviceSync, Fetch, RequestBudget, RetryLater, Source, SourceFailed
from fitpipe.sources.google_health import DEFAULT_API_URL, ENV_API_URL, require_google_libraries
from fitpipe.sources.google_health.calls import (
    DEFAULT_BUDGET,
    ENV_DAY_SECONDS,
    ENV_MAX_PAGES,
    CallPolicy,
    StudyRetry,
    request_budget_from_environment,
)
from fitpipe.sources.google_health.wire import wire_from_environment

if TYPE_CHECKING:
    from fitpipe.ingest.validate import Parser
    from fitpipe.participants import User as Participant

# A day whose participant has not consented (or must consent again) is asked for again after
# this long; `fitpipe enroll` makes their deferred days due at once.
WAIT_FOR_CONSENT = dt.timedelta(hours=24)
DEFAULT_SETTLE_DAYS = 3
# ListPairedDevicesRequest.page_size is at most 100; a participant has one or two devices, so more
# pages than this is a server that never stops paging, not a participant.
MAX_DEVICES_PAGE = 100
MAX_DEVICE_PAGES = 5


@dataclass(frozen=True)
class GoogleHealthSettings:
    """data_source_family: which of Google's merged source families to read (google-wearables:
    Fitbit trackers and Pixel Watch; all-sources adds phones and manual entries).
    settle_days: days after D during which Google may still change D. api_url: another endpoint
    for this participant (a stand-in), instead of FITPIPE_HEALTH_API_URL."""

    data_source_family: str = "google-wearables"
    settle_days: int = DEFAULT_SETTLE_DAYS
    api_url: str | None = None


def api_url(participant: Participant) -> str:
    """The data API's URL for this participant: https, or plain http to this machine only (the
    stand-in), since every request carries the participant's bearer token."""
    url = participant.settings.get("api_url") or os.environ.get(ENV_API_URL) or DEFAULT_API_URL
    parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        where = "the participant's api_url setting" if participant.settings.get("api_url") else ENV_API_URL
        raise SourceFailed(
            f"refusing to send the participant's access token to {parts.scheme}://{parts.hostname} ({where}): "
            "the Google Health API URL must be https (plain http only to 127.0.0.1, ::1 or localhost)"
        )
    return url


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class GoogleHealthSource(Source):
    name = "google-health"
    credential_kind = "oauth"
    settle_days = DEFAULT_SETTLE_DAYS
    request_budget = DEFAULT_BUDGET
    settings = GoogleHealthSettings
    commands: ClassVar[Mapping[str, str]] = {"enroll": "fitpipe.sources.google_health.cli:enroll"}
    produces = (
        "heart_rate",
        "active_zone_minutes",
        "spo2",
        "hrv_intraday",
        "breathing_rate",
        "sleep_sessions",
        "sleep_stages",
        "heart_rate_daily",
        "hrv_daily",
        "daily_activity",
        "device_utc_offsets",
    )

    def __init__(self) -> None:
        self.policy = CallPolicy.from_environment()
        self.wire = wire_from_environment()
        # A worker keeps one instance for its whole run (fitpipe.ingest.runner), so these live as
        # long as the worker: credentials (with their access token) in a session, so one refresh
        # serves a participant's days; keyed by a digest of the grant, so a new consent starts afresh.
        self._sessions: dict[tuple[int, str, str, str], Any] = {}
        self._revoked: dict[tuple[int, str], str] = {}
        # The participant's devices, asked once per grant for the worker's run (its days share it).
        self._device_syncs: dict[tuple[int, str], DeviceSync | None] = {}

    def _pages_for(self, user_id: int, grant: str, endpoint: str) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        from fitpipe.sources.google_health.consent import credentials_from_grant
        from fitpipe.sources.google_health.wire import ReconcilePages

        key = (user_id, hashlib.sha256(grant.encode()).hexdigest(), endpoint, self.wire)
        if key not in self._sessions:
            self._sessions[key] = ReconcilePages(AuthorizedSession(credentials_from_grant(grant)), endpoint, self.wire)
        return self._sessions[key]

    @classmethod
    def parsers(cls) -> Sequence[Parser]:
        from fitpipe.sources.google_health.parse import PARSERS

        return PARSERS

    def budget(self) -> RequestBudget | None:
        # Configurable per deployment (FITPIPE_HEALTH_REQUEST_BUDGET), e.g. after Google raised a quota.
        return request_budget_from_environment()

    @classmethod
    def default_settings(cls, user_id: int) -> dict[str, Any]:
        return {k: v for k, v in super().default_settings(user_id).items() if v is not None}

    @classmethod
    def prepare_workers(cls) -> None:
        # Imported once here, before the fork, rather than in every worker on its first day:
        # Google's generated types take ~0.6 s of CPU to import, and a run's first request
        # would wait for that in each worker at once.
        require_google_libraries()
        from fitpipe.sources.google_health import consent, wire  # noqa: F401

        wire.share_request_slots()

    def settle_days_for(self, participant: Participant) -> int:
        return int(participant.settings.get("settle_days", self.settle_days))

    def _before_request(self, data_type: str, pages: int, started: float, fetch: Fetch) -> None:
        """The bounds of one day's fetch, checked before each request: it runs inside the day's
        transaction, so a server that never stops paging must not hold it (or the run) for ever."""
        if fetch.stop_requested():
            raise RetryLater("the run was stopped before the day's fetch ended", after=0)
        if pages >= self.policy.max_pages:
            raise SourceFailed(
                f"the Google Health API kept sending page tokens for {data_type}: over {self.policy.max_pages} "
                f"pages for one day ({ENV_MAX_PAGES}); the day was left as it was"
            )
        elapsed = time.monotonic() - started
        if elapsed > self.policy.max_day_seconds:
            raise RetryLater(
                f"the day's fetch took longer than {self.policy.max_day_seconds:g} s ({ENV_DAY_SECONDS}); will retry",
                after=3600,
            )

    def fetch_day(self, participant: Participant, day: dt.date, fetch: Fetch) -> dict[str, Any]:
        require_google_libraries()
        from google.api_core import exceptions as api_errors
        from google.auth.exceptions import RefreshError
        from google.devicesandservices import health_v4

        from fitpipe.sources.google_health.consent import is_revoked, revocation_reason
        from fitpipe.sources.google_health.queries import QUERIES

        grant = fetch.secret()
        if not grant:
            raise RetryLater(
                f"no Google consent stored; run `fitpipe enroll --user {participant.user_id}`", after=WAIT_FOR_CONSENT
            )
        grant_key = (participant.user_id, hashlib.sha256(grant.encode()).hexdigest())
        if grant_key in self._revoked:
            raise SourceFailed(self._revoked[grant_key], needs_reconsent=True)
        pages = self._pages_for(participant.user_id, grant, api_url(participant))
        ctx = participant.day_context(day)
        family = f"users/me/dataSourceFamilies/{participant.settings.get('data_source_family', 'google-wearables')}"
        retry = StudyRetry(self.policy, fetch.budget)
        payloads: dict[str, Any] = {}
        started = time.monotonic()
        try:
            for query in QUERIES:
                request = health_v4.ReconcileDataPointsRequest.pb()(
                    parent=query.parent,
                    filter=query.day_filter(ctx),
                    page_size=query.page_size,
                    data_source_family=family,
                )
                found: list[Any] = []
                payloads[query.data_type] = found
                while True:
                    self._before_request(query.data_type, len(found), started, fetch)
                    found.append(retry(pages.page)(request, self.policy.timeout))
                    token = found[-1].next_page_token
                    if not token:
                        break
                    if token == request.page_token:
                        raise SourceFailed(
                            f"the Google Health API sent the same page token twice for {query.data_type}; "
                            "the day was left as it was"
                        )
                    request.page_token = token
        except RefreshError as exc:
            if is_revoked(exc):
                self._revoked[grant_key] = revocation_reason(exc)
                raise SourceFailed(self._revoked[grant_key], needs_reconsent=True) from None
            raise RetryLater(
                "Google's token endpoint did not refresh the access token; will retry", after=300
            ) from None
        # From HTTP the classes are Unauthorized (401) and Forbidden (403); from a gRPC status,
        # Unauthenticated and PermissionDenied: each means the same here.
        except (
            api_errors.Unauthorized,
            api_errors.Forbidden,
            api_errors.Unauthenticated,
            api_errors.PermissionDenied,
        ) as exc:
            # Still refused after google-auth refreshed the token: the grant lost its scopes.
            raise SourceFailed(
                f"the Google Health API refused the participant's grant (HTTP {exc.code}); "
                f"re-consent with `fitpipe enroll --user {participant.user_id}`",
                needs_reconsent=True,
            ) from None
        except api_errors.GoogleAPICallError as exc:
            raise SourceFailed(f"the Google Health API answered HTTP {exc.code}: {exc.message}") from None
        return payloads

    def device_sync(self, participant: Participant, fetch: Fetch) -> DeviceSync | None:
        """users/me/pairedDevices: each device's last sync with the Fitbit app and its battery.
        None (days settle by the calendar) without a stored grant, or for a grant made before
        fitpipe asked for the settings scope (HTTP 403): re-enrolling adds it."""
        require_google_libraries()
        from google.api_core import exceptions as api_errors
        from google.auth.exceptions import RefreshError
        from google.devicesandservices import health_v4

        from fitpipe.sources.google_health.devices import device_sync_from

        grant = fetch.secret()
        if not grant:
            return None  # fetch_day says why the day waits
        grant_key = (participant.user_id, hashlib.sha256(grant.encode()).hexdigest())
        if grant_key in self._revoked:
            raise SourceFailed(self._revoked[grant_key], needs_reconsent=True)
        if grant_key in self._device_syncs:
            return self._device_syncs[grant_key]
        from fitpipe.sources.google_health.wire import ReconcilePages

        endpoint = api_url(participant)
        # The data pages' authorised session: one token refresh serves both.
        session = self._pages_for(participant.user_id, grant, endpoint).session
        pages = ReconcilePages(session, endpoint, self.wire, "pairedDevices")
        request = health_v4.ListPairedDevicesRequest.pb()(parent="users/me", page_size=MAX_DEVICES_PAGE)
        retry = StudyRetry(self.policy, fetch.budget)
        answers = []
        try:
            for _ in range(MAX_DEVICE_PAGES):
                answers.append(retry(pages.page)(request, self.policy.timeout))
                if not answers[-1].next_page_token:
                    break
                request.page_token = answers[-1].next_page_token
        except (api_errors.Forbidden, api_errors.PermissionDenied):
            answers = []  # HTTP 403: the grant lacks googlehealth.settings.readonly, so no evidence
        except (RefreshError, api_errors.Unauthenticated):
            return None  # the day's own fetch meets the same refusal and says what it means
        except api_errors.GoogleAPICallError as exc:
            raise SourceFailed(
                f"the Google Health API answered HTTP {exc.code} for the paired devices: {exc.message}"
            ) from None
        sync = device_sync_from(answers) if answers else None
        self._device_syncs[grant_key] = sync
        return sync
