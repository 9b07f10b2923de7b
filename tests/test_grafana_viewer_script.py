"""monitoring/grafana/create-viewer.sh against a small Grafana admin API on 127.0.0.1, with the
real curl: the viewer's and the admin's passwords reach Grafana in the request, never curl's
command line (issue 21, Low)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "monitoring" / "grafana" / "create-viewer.sh"
VIEWER_PASSWORD = 'viewer-"pass\\word-91'
ADMIN_PASSWORD = "admin-secret-17"


class FakeGrafana(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, dict | None, str | None]]] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.received.append((self.command, self.path, body, self.headers.get("Authorization")))

    def do_GET(self):
        self._record()
        self._answer(404, {"message": "user not found"})

    def do_POST(self):
        self._record()
        self._answer(200, {"id": 7, "message": "User created"})

    def log_message(self, *args):
        pass


def test_create_viewer_keeps_passwords_off_curls_command_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A curl on PATH that records its arguments, then runs the real one.
    shim = tmp_path / "bin"
    shim.mkdir()
    argv_log = tmp_path / "argv"
    (shim / "curl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {argv_log}\nexec /usr/bin/curl "$@"\n')
    (shim / "curl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim}:{os.environ['PATH']}",
        "GRAFANA_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "GRAFANA_ADMIN_USER": "admin",
        "GRAFANA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GRAFANA_VIEWER_USER": "viewer",
        "GRAFANA_VIEWER_PASSWORD": VIEWER_PASSWORD,
    }
    try:
        result = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "created viewer (Viewer)" in result.stdout
    created = [r for r in FakeGrafana.received if r[0] == "POST"]
    assert created and created[0][2] == {"name": "viewer", "login": "viewer", "password": VIEWER_PASSWORD, "OrgId": 1}
    assert created[0][3].startswith("Basic ")
    argv = argv_log.read_text()
    assert "/api/admin/users" in argv, "the shim saw curl's arguments"
    assert VIEWER_PASSWORD not in argv and ADMIN_PASSWORD not in argv
