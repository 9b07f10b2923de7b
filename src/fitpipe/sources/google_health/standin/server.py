"""The stand-in over HTTP on 127.0.0.1: routing of the data, OAuth and `/_control` endpoints, errors
as Google describes them (JSON, or google.rpc.Status in protobuf for `$alt=proto`), and the
server in a background thread."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fitpipe.sources.google_health.standin.api import HealthApi
from fitpipe.sources.google_health.standin.devices import SETTINGS_SCOPE, paired_devices_page
from fitpipe.sources.google_health.standin.model import JSON, PROTOBUF, BadRequest


def _status_body(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def _status_proto(code: int, message: str) -> bytes:
    """An error as google.rpc.Status in protobuf, as Google describes errors when asked for `$alt=proto`."""
    from google.rpc import code_pb2, status_pb2

    grpc_codes = {429: code_pb2.RESOURCE_EXHAUSTED, 503: code_pb2.UNAVAILABLE, 504: code_pb2.DEADLINE_EXCEEDED}
    return status_pb2.Status(code=grpc_codes.get(code, code_pb2.UNKNOWN), message=message).SerializeToString()


class _Handler(BaseHTTPRequestHandler):
    api: HealthApi
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm the body's last
    # segment waits for the client's delayed ACK of the headers (40 ms on Linux), which no
    # real front end adds to a round trip.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo read stdout
        pass

    def _send(
        self, code: int, body: dict | bytes | None = None, headers: dict | None = None, content_type: str = JSON
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        wait = getattr(self, "_answer_at", 0.0) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._answered()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _query(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode() if length else ""
        if self.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(text or "{}")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def do_GET(self) -> None:
        path, query = self._query()
        try:
            if path == "/o/oauth2/v2/auth":
                location = self.api.authorize(query)
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path.startswith("/v4/users/me/dataTypes/"):
                self._data(path, query)
                return
            if path == "/v4/users/me/pairedDevices":
                self._paired_devices(query)
                return
            if path == "/_control/requests":
                with self.api.lock:
                    self._send(200, {"requests": [[a, t, p, s] for a, t, p, s in self.api.requests]})
                return
            self._send(404, _status_body(404, "NOT_FOUND", f"no such resource: {path}"))
        except BadRequest as exc:
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))

    def do_POST(self) -> None:
        path, query = self._query()
        form = self._form()
        try:
            if path == "/token":
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    # Client authentication by HTTP Basic (RFC 6749 2.3.1), as requests-oauthlib sends it.
                    client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
                    form = {"client_id": client_id, "client_secret": client_secret, **form}
                self._send(*self.api.token(form))
            elif path == "/revoke":
                self.api.revoke_token(form.get("token") or query.get("token", ""))
                self._send(200, {})
            elif path == "/_control/accounts":
                self.api.add_account(**form)
                self._send(200, {"ok": True})
            elif path == "/_control/faults":
                self.api.inject(form["account"], *form["faults"])
                self._send(200, {"ok": True})
            elif path == "/_control/revoke":
                self.api.revoke(form["account"])
                self._send(200, {"ok": True})
            elif path == "/_control/expire":
                self.api.expire_access_tokens(form["account"])
                self._send(200, {"ok": True})
            elif path == "/_control/sync":
                until = form.get("synced_until")
                settings: dict[str, Any] = {"synced_until": dt.datetime.fromisoformat(until) if until else None}
                if form.get("battery_level") is not None:
                    settings["battery_level"] = int(form["battery_level"])
                self.api.update_account(form["account"], **settings)
                self._send(200, {"ok": True})
            else:
                self._send(404, _status_body(404, "NOT_FOUND", f"no such resource: {path}"))
        except (BadRequest, KeyError, TypeError, ValueError) as exc:
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))

    def _paired_devices(self, query: dict[str, str]) -> None:
        """Not a data request: logged apart (api.device_requests), outside the data quota's count."""
        authorization = self.headers.get("Authorization")
        name = self.api.account_for(authorization)
        status = 200
        if name is None:
            status = 401
            self._send(status, _status_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
        elif SETTINGS_SCOPE not in self.api.scopes_of(authorization):
            status = 403
            self._send(
                status, _status_body(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")
            )
        else:
            with self.api.lock:
                account = self.api.accounts[name]
            body, content_type = paired_devices_page(account, query.get("$alt", "json"))
            self._send(200, body, content_type=content_type)
        with self.api.lock:
            self.api.device_requests.append((name or "", status))

    def _data(self, path: str, query: dict[str, str]) -> None:
        arrived = time.monotonic()  # quotas count requests as they arrive
        with self.api.lock:
            self.api.in_flight += 1
            self.api.peak_in_flight = max(self.api.peak_in_flight, self.api.in_flight)
        self._in_flight = True
        try:
            self._answer_data(path, query, arrived)
        finally:
            self._answered()
            with self.api.lock:
                self.api.answer_seconds.append(time.monotonic() - arrived)

    def _answered(self) -> None:
        # A request stops being in flight when its answer leaves, not when this handler thread
        # gets to run again: the client may already have sent its next request by then, which
        # on a loaded machine would count as two in flight.
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            with self.api.lock:
                self.api.in_flight -= 1

    def _answer_data(self, path: str, query: dict[str, str], arrived: float) -> None:
        # The round trip, on every data request (401s included): the answer leaves `latency`
        # after the request arrived, or later if building it took longer, as from Google, whose
        # serving time is part of the latency a client sees.
        self._answer_at = arrived + self.api.latency
        name = self.api.account_for(self.headers.get("Authorization"))
        if name is None:
            with self.api.lock:
                self.api.requests.append(("", arrived, path, 401))
            self._send(
                401,
                _status_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
            return
        rest = path[len("/v4/users/me/dataTypes/") :]
        data_type, _, method = rest.partition("/")
        reconcile = method == "dataPoints:reconcile"
        status = 200
        try:
            fault = self.api.take_fault(name)
            if fault and fault.get("delay"):
                time.sleep(float(fault["delay"]))
                fault = None
            if self.api.over_quota(name):
                fault = {"status": 429, "retry_after": None}
            if fault:
                status = int(fault["status"])
                names = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
                headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
                if query.get("$alt") == "proto":
                    self._send(status, _status_proto(status, "injected fault"), headers, PROTOBUF)
                else:
                    self._send(status, _status_body(status, names.get(status, "UNKNOWN"), "injected fault"), headers)
                return
            if method not in ("dataPoints", "dataPoints:reconcile"):
                status = 404
                self._send(404, _status_body(404, "NOT_FOUND", f"no such method: {method}"))
                return
            if name in self.api.endless_pages:
                body, content_type = self.api.endless_page(query, reconcile)
                self._send(200, body, content_type=content_type)
                return
            body, content_type = self.api.list_page(name, data_type, query, reconcile)
            self._send(200, body, content_type=content_type)
        except BadRequest as exc:
            status = 400
            self._send(400, _status_body(400, "INVALID_ARGUMENT", str(exc)))
        finally:
            with self.api.lock:
                self.api.requests.append((name, arrived, path, status))


class HealthApiServer:
    """The HTTP server on 127.0.0.1 in a background thread: `with HealthApiServer() as server: ...`."""

    def __init__(self, api: HealthApi | None = None, port: int = 0):
        self.api = api or HealthApi()
        handler = type("Handler", (_Handler,), {"api": self.api})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.api.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health-api", daemon=True)

    def __enter__(self) -> HealthApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
