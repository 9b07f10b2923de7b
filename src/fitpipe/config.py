"""Where the database is, and how to show that without leaking the password."""

from __future__ import annotations

import os
import re

ENV_DATABASE_URL = "FITPIPE_DATABASE_URL"
# Matches scripts/dev-db.sh and docker-compose.timescale.yml, so either works unchanged.
DEFAULT_DATABASE_URL = "postgresql://fitpipe:fitpipe@127.0.0.1:5432/fitpipe"

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
_PASSWORD_IN_DSN = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.I)


def database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL


def mask_secrets(text: str) -> str:
    """Replace every password found in URLs or key=value DSNs inside `text` with ***."""
    text = _PASSWORD_IN_URL.sub(lambda m: f"{m.group('head')}:***@", text)
    return _PASSWORD_IN_DSN.sub(lambda m: f"{m.group('head')}***", text)
