"""The Google Health API (v4): what fitpipe asks for, and how.

Google's own libraries do the generic work: `google-devicesandservices-health` (the generated
client) gives the request and response types and the HTTP rule of each method; `google-auth`
holds the credentials, sends the requests and refreshes the access token; `google-auth-oauthlib`
runs the installed-app consent flow. This package holds only what is particular to a study:

- `queries`: which data types fitpipe reads, and the filter that selects one local day of each;
- `wire`: one page request in protobuf's binary format (`$alt=proto`) rather than JSON, and why;
- `calls`: the request budget, back-off on 429/503/504 and timeouts around each API call;
- `consent`: scopes, the client-secrets file, the enrolment flow and the stored grant.
"""

from fitpipe.sources.contract import MissingExtra

ENV_API_URL = "FITPIPE_HEALTH_API_URL"
DEFAULT_API_URL = "https://health.googleapis.com"
ENV_CLIENT_SECRETS = "FITPIPE_GOOGLE_CLIENT_SECRETS"


def require_google_libraries() -> None:
    try:
        import google.auth.transport.requests  # noqa: F401
        from google.devicesandservices import health_v4  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("google-health", "google-health", exc.name or "Google's client libraries") from None
