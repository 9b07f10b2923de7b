"""Shared by the monitoring tests: the Debian tools, free loopback ports, processes that are
always stopped, and Prometheus' HTTP API."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from support import ROOT

MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RENDER_ALERTMANAGER = MONITORING / "alertmanager" / "render-config.sh"
ALERT_LOG = MONITORING / "alert-log" / "alert_log.py"
QUERIES = MONITORING / "postgres-exporter" / "queries.yml"
PROMETHEUS_DASHBOARDS = sorted((ROOT / "grafana" / "dashboards" / "monitoring").glob("*.json"))


def tool(name: str) -> str:
    """The executable's path; a missing tool fails the test (scripts/test.sh installs them)."""
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/test-tools.sh (scripts/test.sh does)"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Started processes, each with its output in a log file; stop() ends every one of them."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.log_dir)
        self.running[name] = (proc, log)
        return proc

    def log(self, name: str) -> str:
        return self.running[name][1].read_text(errors="replace")

    def check_alive(self) -> None:
        for name, (proc, log) in self.running.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"

    def stop(self) -> list[str]:
        """SIGTERM, then SIGKILL after 10 s; returns the names of those that needed the kill."""
        killed = []
        for proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in self.running.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed.append(name)
        return killed


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read()


def wait_for(what: str, check, timeout: float = 60, every: float = 0.25):
    """check() until it returns something truthy; fails the test with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


class PrometheusAPI:
    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as exc:  # 400 with a JSON error for a bad query
            body = json.loads(exc.read())
        return body

    def query(self, expr: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('errorType')}: {answer.get('error')}"
        return answer["data"]["result"]

    def alerts(self) -> list[dict]:
        return self.get("/api/v1/alerts")["data"]["alerts"]

    def alert_states(self, name: str) -> set[str]:
        return {a["state"] for a in self.alerts() if a["labels"].get("alertname") == name}


def panel_expressions(board: dict):
    """(panel title, refId, expr) of every PromQL target, rows' panels included."""

    def panels(items):
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel.get("title", ""), target.get("refId", "A"), target["expr"]


# Grafana's variables in the dashboards' PromQL, as Grafana fills them for a short range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def grafana_expand(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable these tests do not fill: {expr}"
    return expr
