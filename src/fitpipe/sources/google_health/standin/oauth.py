"""Google's OAuth, as fitpipe meets it: a consent screen that approves at once, a token endpoint
that issues, refreshes and (after a revocation) refuses tokens with invalid_grant, PKCE checked,
and the faults of a grant: expired access tokens and revoked consent."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from urllib.parse import urlencode

from fitpipe.sources.google_health.standin.model import Account, BadRequest

CLIENT_ID = "fitpipe-local.apps.googleusercontent.com"
ACCESS_TOKEN_SECONDS = 3600


class OAuthServer:
    """The OAuth half of the stand-in's state (a part of HealthApi, which holds the lock and the accounts)."""

    lock: threading.RLock
    accounts: dict[str, Account]
    base_url: str

    def __init__(self, client_secret: str | None = None) -> None:
        self.client_id = CLIENT_ID
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        # (grant_type, client_id) of every token request, for tests.
        self.token_requests: list[tuple[str, str]] = []

    def expire_access_tokens(self, name: str) -> None:
        with self.lock:
            for token in self.access_tokens.values():
                if token["account"] == name:
                    token["expires"] = 0

    def revoke(self, name: str) -> None:
        """As if the participant removed the app's access in their Google account."""
        with self.lock:
            for token in self.refresh_tokens.values():
                if token["account"] == name:
                    token["revoked"] = True
            self.access_tokens = {k: v for k, v in self.access_tokens.items() if v["account"] != name}

    def issued_secrets(self) -> list[str]:
        """Every token and code this server handed out, and the client secret: none may appear
        in fitpipe's output, logs or database in plain text."""
        with self.lock:
            return [self.client_secret, *self.codes, *self.refresh_tokens, *self.access_tokens]

    def client_secrets(self) -> dict:
        """The client-secrets JSON of a Desktop-app OAuth client, pointing at this server."""
        return {
            "installed": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "project_id": "fitpipe-local",
                "auth_uri": f"{self.base_url}/o/oauth2/v2/auth",
                "token_uri": f"{self.base_url}/token",
                "redirect_uris": ["http://localhost"],
            }
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The consent screen, approved: the redirect URL with a code."""
        if query.get("client_id") != self.client_id:
            raise BadRequest("invalid_client")
        redirect = query.get("redirect_uri", "")
        if not redirect.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise BadRequest("redirect_uri must be a loopback address")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise BadRequest("PKCE (S256) is required")
        with self.lock:
            name = query.get("login_hint")
            if not name:
                granted = {t["account"] for t in self.refresh_tokens.values() if not t["revoked"]}
                name = next((n for n in self.accounts if n not in granted), next(iter(self.accounts), None))
            if name not in self.accounts:
                raise BadRequest(f"no such account: {name}")
            code = secrets.token_urlsafe(24)
            self.codes[code] = {
                "account": name,
                "redirect_uri": redirect,
                "challenge": query["code_challenge"],
                "scope": query.get("scope", ""),
                "offline": query.get("access_type") == "offline",
            }
        params = {"code": code, "scope": query.get("scope", "")}
        if query.get("state"):
            params["state"] = query["state"]
        return f"{redirect}?{urlencode(params)}"

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type")
        self.token_requests.append((grant or "", form.get("client_id", "")))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        with self.lock:
            if grant == "authorization_code":
                code = self.codes.get(form.get("code", ""))
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if (
                    not code
                    or code.get("used")
                    or code["redirect_uri"] != form.get("redirect_uri")
                    or challenge != code["challenge"]
                ):
                    return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
                code["used"] = True
                answer = self._access_token(code["account"], code["scope"])
                if code["offline"]:
                    refresh = secrets.token_urlsafe(32)
                    self.refresh_tokens[refresh] = {
                        "account": code["account"],
                        "scope": code["scope"],
                        "revoked": False,
                    }
                    answer["refresh_token"] = refresh
                return 200, answer
            if grant == "refresh_token":
                held = self.refresh_tokens.get(form.get("refresh_token", ""))
                if not held or held["revoked"]:
                    return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                return 200, self._access_token(held["account"], held["scope"])
        return 400, {"error": "unsupported_grant_type"}

    def _access_token(self, name: str, scope: str) -> dict:
        token = secrets.token_urlsafe(32)
        self.access_tokens[token] = {"account": name, "expires": time.time() + ACCESS_TOKEN_SECONDS, "scope": scope}
        return {"access_token": token, "expires_in": ACCESS_TOKEN_SECONDS, "scope": scope, "token_type": "Bearer"}

    def revoke_token(self, token: str) -> None:
        with self.lock:
            if token in self.refresh_tokens:
                self.refresh_tokens[token]["revoked"] = True
            self.access_tokens.pop(token, None)

    def account_for(self, authorization: str | None) -> str | None:
        held = self._held(authorization)
        return held["account"] if held else None

    def scopes_of(self, authorization: str | None) -> set[str]:
        """The scopes the participant granted to this access token."""
        held = self._held(authorization)
        return set(held.get("scope", "").split()) if held else set()

    def _held(self, authorization: str | None) -> dict | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self.lock:
            held = self.access_tokens.get(authorization[7:])
            return held if held and held["expires"] > time.time() else None
