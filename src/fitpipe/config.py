"""Where the database is, and how to show that without leaking the password."""

from __future__ import annotations

import os
import re

ENV_DATABASE_URL = "FITPIPE_DATABASE_URL"
# Matches scripts/dev-db.sh and docker-compose.timescale.yml, so either works unchanged.
DEFAULT_DATABASE_URL = "postgresql://fitpipe:fitpipe@127.0.0.1:5432/fitpipe"

# A password may hold a raw "@" (or a space): it runs to the *last* "@" of the authority, i.e.
# an "@" belongs to it when another "@" follows before any whitespace.
_RAW_PASSWORD = r"(?:[^@]|@(?=[^@\s]*@))*"
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<password>" + _RAW_PASSWORD + ")@", re.I)
_PASSWORD_IN_DSN = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def database_url(explicit: str | None = None) -> str:
    """The URL given, else FITPIPE_DATABASE_URL, else the default. An empty one is an error: falling
    back to the default would silently reach another server."""
    from fitpipe.errors import BadInput

    if explicit is not None and not explicit.strip():
        raise BadInput("--database-url is empty; give a PostgreSQL URL")
    if explicit is not None:
        return explicit
    from_environment = os.environ.get(ENV_DATABASE_URL)
    if from_environment is not None and not from_environment.strip():
        raise BadInput(f"{ENV_DATABASE_URL} is set but empty; give a PostgreSQL URL or unset it")
    return from_environment or DEFAULT_DATABASE_URL


def password_of(url: str) -> str | None:
    """The password in a URL or DSN, even one psycopg cannot parse."""
    from urllib.parse import unquote

    # A raw "@" in the password: libpq splits at the first one (and then quotes the rest of the
    # password as part of the host name), so the password is what runs to the last one.
    raw = re.search(r"://[^:/@\s]*:(" + _RAW_PASSWORD + ")@", url)
    if raw and "@" in raw.group(1):
        return unquote(raw.group(1))
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
        if password:
            return str(password)
    except Exception:
        pass
    match = re.search(r"://[^:/@\s]*:(" + _RAW_PASSWORD + ")@", url) or re.search(r"\bpassword\s*=\s*'?([^'\s]*)", url)
    return unquote(match.group(1)) if match and match.group(1) else None


def mask_secrets(text: str, url: str | None = None) -> str:
    """Replace every password found in URLs or key=value DSNs inside `text` with ***.

    Given the URL the text is about, its password is also removed wherever else it appears
    (driver errors sometimes quote it on its own).
    """
    if url:
        from urllib.parse import quote, urlsplit

        password = password_of(url)
        try:
            parts = urlsplit(url)
            names = {parts.username, parts.path.lstrip("/")}
        except ValueError:
            names = set()
        # A short password, or one equal to the user or database name, would blank out ordinary
        # words of the message; the URL patterns below still mask it where it stands in a URL.
        if password and len(password) >= 4 and password not in names:
            # Each piece between raw "@"s too: libpq quotes the later ones as a host name.
            pieces = [p for p in password.split("@") if len(p) >= 4 and p not in names] if "@" in password else []
            for form in sorted({password, quote(password, safe=""), *pieces}, key=len, reverse=True):
                text = text.replace(form, "***")
    text = _PASSWORD_IN_URL.sub(lambda m: f"{m.group('head')}:***@", text)
    return _PASSWORD_IN_DSN.sub(lambda m: f"{m.group('head')}***", text)
