"""The receiver Alertmanager uses when no team channel is configured: it prints every alert it
is sent as one line on stdout, so `docker compose logs alert-log` shows them.

    python alert_log.py [--listen HOST:PORT]      (default 0.0.0.0:8080, the compose network only)

It accepts Alertmanager's webhook JSON (version 4) on POST and answers GET /health. Standard
library only, so it runs in the plain Python image.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20  # Alertmanager's batches are small; refuse anything absurd


def alert_lines(notification: dict) -> list[str]:
    """One line per alert: time, status, name, labels, summary."""
    lines = []
    for alert in notification.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        name = labels.pop("alertname", "?")
        status = alert.get("status", notification.get("status", "?")).upper()
        when = alert.get("endsAt") if status == "RESOLVED" else alert.get("startsAt")
        shown = " ".join(f"{key}={value}" for key, value in sorted(labels.items()))
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(f"{when} {status} {name} {shown} :: {summary}".rstrip(" :"))
    return lines


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(200 if self.path == "/health" else 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._answer(400)
            return
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400)
            return
        for line in alert_lines(notification):
            print(line, flush=True)
        self._answer(200)

    def _answer(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # the alerts are the log; requests are noise
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"alert-log: listening on {args.listen}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
