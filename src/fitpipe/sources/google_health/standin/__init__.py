"""A local Google Health API v4 and Google OAuth server, for tests and for trying fitpipe without
a Google project:

    python -m fitpipe.sources.google_health.standin --port 8765 --participants 3 \
        --client-secrets client.json [--latency 0.1]

It serves, on 127.0.0.1, what fitpipe uses:
- `GET /v4/users/me/dataTypes/{type}/dataPoints` and `...dataPoints:reconcile`, paged newest
  first, with the AIP-160 time filters fitpipe sends;
- `GET /v4/users/me/pairedDevices`: the account's watch, its last sync (the account's
  `synced_until`, set with `/_control/sync`) and battery (`devices`);
- an authorization endpoint that consents at once (as the participant would in a browser) and
  redirects to the loopback redirect URI, with PKCE checked at the token endpoint;
- a token endpoint that issues, refreshes and (after a revocation) refuses tokens with invalid_grant;
- `/_control/...` to add accounts and inject faults.

Its parts, by seam:
- `days`: the data. Accounts' days come from fitpipe's synthetic source (wearipedia, seeded),
  turned into Google's types: the test for an account with the seed of synthetic participant N
  can compare what arrives through the API with what the synthetic source loads for N;
- `pages`: those points as the API's pages: filters, reconcile, page tokens. Every body is built
  from the generated client's own protobuf types (google.devicesandservices.health_v4), serialised
  with protobuf's JSON mapping (int64 as strings, Duration as "NNNs", camelCase names), or, asked
  for `$alt=proto` (as fitpipe asks), in protobuf's binary format (application/x-protobuf);
- `oauth`: consent, tokens, expired access tokens and revoked grants;
- `faults`: 429 (with or without Retry-After), 503, 504, slow responses and the quota, and
  `--latency SECONDS` (HealthApi(latency=...)), which delays every data request's answer by that
  long, as the network and Google's servers would (benchmarks/google_health.py uses 0.1). Faults
  that are properties of an account (pages in random order, late sync, the same points from a phone
  as well as the watch, an account without data) are its settings (`model.Account`);
- `api`: HealthApi, the state those parts share; `server`: the HTTP routes and the server thread;
  `__main__`: the command line.
"""

from fitpipe.sources.google_health.standin.api import HealthApi
from fitpipe.sources.google_health.standin.days import DayMaker, synthetic_seed
from fitpipe.sources.google_health.standin.model import Account, BadRequest, Point
from fitpipe.sources.google_health.standin.pages import parse_filter
from fitpipe.sources.google_health.standin.server import HealthApiServer

__all__ = [
    "Account",
    "BadRequest",
    "DayMaker",
    "HealthApi",
    "HealthApiServer",
    "Point",
    "parse_filter",
    "synthetic_seed",
]
