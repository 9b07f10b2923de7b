"""Pure ASGI middleware (no buffering of streamed bodies): the secret on every request, and the
security headers on every response."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fitpipe.web.auth import REALM, Auth

# No inline script or style: the pages' code is /static/*.js; data reaches it as JSON blocks.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                # Health data stays out of shared caches and the browser's disk cache.
                headers["cache-control"] = "private, max-age=3600" if static else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequireSecret:
    """401 with a Basic challenge unless the request carries the secret."""

    def __init__(self, app: ASGIApp, auth: Auth | None):
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.auth is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.auth.allows(Headers(scope=scope).get("authorization")):
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")
        body = b'{"error":"authentication required","status":401}' if api else b"authentication required\n"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json" if api else b"text/plain; charset=utf-8"),
                    (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
