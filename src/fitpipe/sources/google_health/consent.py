"""Consent: the scopes fitpipe asks for, the OAuth client, the enrolment flow and the stored grant.

What is stored (encrypted, fitpipe.secrets) is google-auth's "authorized user" record without
the access token: refresh token, client id and secret, token URI and scopes. Ingest rebuilds
Credentials from it, so workers need neither the client-secrets file nor a browser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fitpipe.errors import BadInput, FitpipeError
from fitpipe.sources.google_health import ENV_CLIENT_SECRETS

_SCOPE = "https://www.googleapis.com/auth/googlehealth."
# The read-only scopes for what fitpipe stores and for when the watch last synced, and nothing else
# (all Google Health scopes are restricted; each extra one lengthens Google's review and the
# participant's consent screen).
SCOPES = (
    _SCOPE + "activity_and_fitness.readonly",  # steps, active zone minutes
    _SCOPE + "health_metrics_and_measurements.readonly",  # heart rate, HRV, SpO2, respiratory rate, resting HR
    _SCOPE + "sleep.readonly",  # sleep sessions and stages
    _SCOPE + "settings.readonly",  # paired devices: when the watch last synced, its battery (docs/late-data.md)
)
# How long `fitpipe enroll` waits for the participant to finish in the browser.
CONSENT_TIMEOUT_SECONDS = 15 * 60
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


class ConsentRefused(FitpipeError):
    exit_code = 1


def client_secrets_path(given: str | None) -> Path:
    path = given or os.environ.get(ENV_CLIENT_SECRETS)
    if not path:
        raise BadInput(
            f"name the OAuth client's JSON file with --client-secrets or {ENV_CLIENT_SECRETS} "
            "(Google Cloud console > APIs & Services > Credentials > Desktop app > Download JSON)"
        )
    file = Path(path)
    try:
        config = json.loads(file.read_text())
    except OSError as exc:
        raise BadInput(f"cannot read the client-secrets file {file}: {exc.strerror}") from None
    except ValueError:
        raise BadInput(f"the client-secrets file {file} is not JSON") from None
    if "installed" not in config:
        raise BadInput(
            f'the client-secrets file {file} is not for a Desktop app (no "installed" section); '
            "create an OAuth client of type Desktop app"
        )
    return file


def _is_loopback(uri: str) -> bool:
    return uri.startswith(("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/"))


def _allow_plain_http_to_loopback(*uris: str) -> None:
    """oauthlib refuses http:// token endpoints. The local test server (fitpipe.sources.google_health.standin)
    is http on 127.0.0.1; allow exactly that, never a remote http endpoint."""
    if any(_is_loopback(u) for u in uris if u):
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


def run_consent_flow(
    client_secrets: Path,
    *,
    open_browser: bool,
    announce: Callable[[str], None],
    timeout_seconds: int = CONSENT_TIMEOUT_SECONDS,
) -> str:
    """The installed-app flow: PKCE, a loopback redirect on 127.0.0.1 (a free port), offline access.

    Returns the grant to store (JSON without the access token). `announce` shows the URL.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    config = json.loads(client_secrets.read_text())["installed"]
    _allow_plain_http_to_loopback(config.get("token_uri", ""), config.get("auth_uri", ""))
    # The participant may untick scopes (granular consent); we check what was granted below
    # rather than have oauthlib fail with a Warning.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=list(SCOPES))
    _announce_url_with(flow, announce)
    try:
        credentials = flow.run_local_server(
            host="127.0.0.1",
            port=0,
            open_browser=open_browser,
            # Empty: the flow would print() its prompt; _announce_url_with shows ours instead.
            authorization_prompt_message="",
            success_message="fitpipe received the consent. You can close this window.",
            timeout_seconds=timeout_seconds,
            access_type="offline",
            # Always show the consent screen, so a re-consent yields a new refresh token.
            prompt="consent",
        )
    except Exception as exc:  # the flow raises oauthlib, requests and WSGI errors alike
        raise ConsentRefused(f"the consent did not complete: {_consent_error(exc)}") from None
    if credentials is None or not credentials.refresh_token:
        raise ConsentRefused(
            "Google returned no refresh token; revoke fitpipe's access in the Google account "
            "(myaccount.google.com > Security > Third-party apps) and enrol again"
        )
    granted = set(credentials.granted_scopes or credentials.scopes or ())
    missing = [s.rsplit(".", 2)[-2] for s in SCOPES if s not in granted]
    if missing:
        raise ConsentRefused(f"the participant did not allow: {', '.join(missing)}; enrol again and tick every box")
    return credentials.to_json(strip=["token", "expiry"])


def _announce_url_with(flow, announce: Callable[[str], None]) -> None:
    """Show the consent URL through `announce` as soon as the flow has made it (after binding
    the loopback port, which is part of the URL)."""
    make_url = flow.authorization_url

    def authorization_url(**kwargs):
        url, state = make_url(**kwargs)
        announce(
            "Ask the participant to open this URL, sign in with the Google account of their Fitbit "
            f"or Pixel Watch, and allow access:\n{url}\nWaiting for the consent..."
        )
        return url, state

    flow.authorization_url = authorization_url


def _consent_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "Timed out" in first or type(exc).__name__ == "WSGITimeoutError":
        return "nobody finished the consent in the browser in time"
    if "access_denied" in first:
        return "the participant declined"
    if "browser" in first.lower():
        return "no browser to open here; use --no-browser and open the URL elsewhere"
    return first[:200]


def credentials_from_grant(grant: str, *, client_secrets: str | None = None) -> Any:
    """google-auth Credentials from a stored grant: the JSON `enroll` stores, or a bare refresh
    token stored with `fitpipe secrets set` (then the client comes from the client-secrets file)."""
    from google.oauth2.credentials import Credentials

    try:
        info = json.loads(grant)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        config = json.loads(client_secrets_path(client_secrets).read_text())["installed"]
        info = {
            "refresh_token": grant.strip(),
            "client_id": config["client_id"],
            "client_secret": config.get("client_secret"),
            "token_uri": config["token_uri"],
            "scopes": list(SCOPES),
        }
    token_uri = info.get("token_uri") or GOOGLE_TOKEN_URI
    # google-auth's from_authorized_user_info always uses Google's token URI; we build the
    # Credentials ourselves so the local test server works, but allow no other host.
    if not (token_uri.startswith("https://oauth2.googleapis.com/") or _is_loopback(token_uri)):
        raise BadInput(f"refusing to send a refresh token to {token_uri}: not Google's token endpoint")
    _allow_plain_http_to_loopback(token_uri)
    missing = [k for k in ("refresh_token", "client_id", "client_secret") if not info.get(k)]
    if missing:
        raise BadInput(f"the stored Google grant lacks {', '.join(missing)}; enrol the participant again")
    return Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=token_uri,
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=info.get("scopes") or list(SCOPES),
    )


def is_revoked(exc: BaseException) -> bool:
    """Whether a google-auth RefreshError says the grant is gone (revoked, expired after 7 days in
    a Testing-mode app, or unused for 6 months): Google answers all of them with invalid_grant."""
    details = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(details, dict):
        return details.get("error") == "invalid_grant"
    return "invalid_grant" in str(exc)


def revocation_reason(exc: BaseException) -> str:
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    said = details.get("error_description") or "Token has been expired or revoked."
    return (
        f"Google refused the stored grant (invalid_grant: {said}) - the participant revoked access, "
        "or the OAuth app is in Testing mode, where refresh tokens expire after 7 days; "
        "re-consent with `fitpipe enroll --user ID`"
    )


def enroll_participant(
    conn,
    keyring,
    user_id: int,
    *,
    client_secrets: str | None,
    open_browser: bool,
    announce: Callable[[str], None],
    timezone: str | None = None,
    study_start=None,
    display_name: str | None = None,
) -> bool:
    """Add (or re-consent) a participant with the google-health source: run the consent flow, store
    the grant encrypted, mark the credentials ok, and make days deferred for want of consent due
    now. Returns True when the participant was created. Nothing is written if the consent fails."""
    from fitpipe.participants import add_participant, list_users
    from fitpipe.secrets import store_secret
    from fitpipe.timezones import today_in, validate_timezone

    source = "google-health"
    new_participant_zone: str | None = None  # set (and checked) only for a participant not yet enrolled
    existing = (
        list_users(conn, [user_id], enrolled_only=True)
        if conn.execute("SELECT 1 FROM users WHERE user_id = %s", (user_id,)).fetchone()
        else []
    )
    if existing:
        user = existing[0]
        if user.source != source:
            raise BadInput(f"participant {user_id} reads from {user.source}, not {source}; enrol under a new id")
    else:
        if conn.execute("SELECT 1 FROM users WHERE user_id = %s AND withdrawn_at IS NOT NULL", (user_id,)).fetchone():
            raise BadInput(f"participant {user_id} withdrew; enrol under a new id")
        if not timezone:
            raise BadInput(f"participant {user_id} is new: give --timezone (and --study-start, default today)")
        validate_timezone(timezone)
        new_participant_zone = timezone
    secrets_file = client_secrets_path(client_secrets)
    conn.commit()  # no transaction stays open while the participant is in the browser
    grant = run_consent_flow(secrets_file, open_browser=open_browser, announce=announce)
    created = False
    if new_participant_zone is not None:
        created = add_participant(
            conn,
            user_id,
            source=source,
            timezone=new_participant_zone,
            study_start=study_start or today_in(new_participant_zone),
            display_name=display_name,
        )
    store_secret(conn, keyring, user_id, source, grant)
    with conn.transaction():
        conn.execute(
            "UPDATE participant_sources SET credential_note = %s WHERE user_id = %s AND source = %s",
            ("consent given with `fitpipe enroll`", user_id, source),
        )
        # Days deferred while consent was missing or revoked are due again now.
        conn.execute(
            "UPDATE ingested_days SET retry_after = now() WHERE user_id = %s AND state = 'deferred'", (user_id,)
        )
    return created
