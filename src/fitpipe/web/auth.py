"""Who may read: nobody gets health data by accident.

On loopback the app may run open (one person's laptop). Bound anywhere else it refuses to start
unless a secret is configured, and then every request, static files included, must carry it:
as `Authorization: Bearer SECRET`, or as the password of HTTP Basic (any user name), which
browsers ask for themselves.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from fitpipe.errors import BadInput

ENV_TOKEN = "FITPIPE_SERVE_TOKEN"
ENV_PASSWORD_FILE = "FITPIPE_SERVE_PASSWORD_FILE"
# Shorter secrets are guessable over the network at the rate a server answers.
MIN_SECRET_LENGTH = 16
REALM = "fitpipe"


@dataclass(frozen=True)
class Auth:
    secret: bytes

    def allows(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries the secret (compared in constant time)."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        given: bytes | None = None
        if scheme == "bearer":
            given = credentials.strip().encode()
        elif scheme == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            given = decoded.partition(b":")[2]
        return given is not None and hmac.compare_digest(given, self.secret)


def auth_from_environment() -> Auth | None:
    """The configured secret: FITPIPE_SERVE_TOKEN, else the first line of FITPIPE_SERVE_PASSWORD_FILE."""
    token = os.environ.get(ENV_TOKEN, "")
    source = ENV_TOKEN
    path = os.environ.get(ENV_PASSWORD_FILE, "")
    if not token and path:
        source = ENV_PASSWORD_FILE
        try:
            token = Path(path).read_text(encoding="utf-8").splitlines()[0] if Path(path).stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{ENV_PASSWORD_FILE}: cannot read {path}: {exc.__class__.__name__}") from None
    token = token.strip()
    if not token:
        return None
    if len(token) < MIN_SECRET_LENGTH:
        raise BadInput(f"the secret in {source} is shorter than {MIN_SECRET_LENGTH} characters; use a longer one")
    return Auth(token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(host: str, auth: Auth | None) -> None:
    """Refuse to listen beyond this machine without a secret."""
    if auth is None and not is_loopback(host):
        raise BadInput(
            f"refusing to serve health data on {host} without authentication: set {ENV_TOKEN} "
            f"(at least {MIN_SECRET_LENGTH} characters) or {ENV_PASSWORD_FILE}, or bind 127.0.0.1"
        )
