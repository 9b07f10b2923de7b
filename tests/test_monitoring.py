"""The monitoring files checked by the tools that will read them (promtool, amtool), the alert
rules' unit tests, the alert-log receiver, the dashboards and the runbook in docs/monitoring.md. The
running stack is tested in tests/test_monitoring_integration.py, the metrics file in test_metrics_file.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import yaml

from support import ROOT
from support.monitoring import (
    ALERT_LOG,
    PROMETHEUS_DASHBOARDS,
    PROMETHEUS_DIR,
    RENDER_ALERTMANAGER,
    RULE_FILES,
    RULE_TESTS,
    Processes,
    free_port,
    panel_expressions,
    tool,
    wait_for,
)

RUNBOOK_DOC = (ROOT / "docs" / "monitoring.md").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.timescale.yml").read_text())


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kwargs)


def alert_names() -> list[str]:
    return [
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


# --------------------------------------------------------------------------------------------
# Prometheus


def test_prometheus_configuration_and_rules_are_valid():
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout + result.stderr
    result = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_exporter_of_the_compose_profile():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    services = COMPOSE["services"]
    for target in targets - {"localhost:9090"}:
        host, _, port = target.partition(":")
        assert host in services and "monitoring" in services[host].get("profiles", []), target
        assert f":{port}" in " ".join(map(str, services[host].get("command", []))) or (
            host == "cadvisor" and f"--port={port}" in services[host]["command"]
        ), f"{host} does not listen on {port}"
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


@pytest.mark.slow
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_alert_rules_unit_tests_pass(path):
    result = run(tool("promtool"), "test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_a_runbook_line():
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    names = alert_names()
    assert len(names) >= 13
    assert set(names) == fired, f"alerts never shown firing: {set(names) - fired}"
    runbook = RUNBOOK_DOC.split("### Alerts", 1)[1].split("\n## ", 1)[0]
    for name in names:
        line = rf"^\| `{name}` \|.+\|.+\|$"
        assert re.search(line, runbook, re.M), f"docs/monitoring.md has no runbook line for {name}"


@pytest.mark.slow
def test_rule_unit_tests_can_fail(tmp_path):
    """A rule whose threshold moved must fail its unit test: the tests are not vacuous."""
    for source in RULE_FILES:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / source.name).write_text(source.read_text().replace("36 * 3600", "40 * 3600"))
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "fitpipe_test.yml"
    test_file.write_text((PROMETHEUS_DIR / "tests" / "fitpipe_test.yml").read_text())
    result = run(tool("promtool"), "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode != 0 and "FitpipeIngestStale" in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Alertmanager


RECEIVERS = {
    "log": {},
    "webhook": {"ALERT_WEBHOOK_URL": "https://hooks.example.org/alerts?token=s3cr'et"},
    "slack": {
        "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/s3cret",
        "ALERT_SLACK_CHANNEL": "#study",
    },
    "email": {
        "ALERT_EMAIL_TO": "team@example.org",
        "ALERT_EMAIL_FROM": "fitpipe@example.org",
        "ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
        "ALERT_SMTP_USERNAME": "fitpipe",
        "ALERT_SMTP_PASSWORD": "s3cret",
    },
}


@pytest.mark.parametrize("kind", RECEIVERS)
def test_alertmanager_configuration_from_the_environment_is_valid(tmp_path, kind):
    out = tmp_path / "alertmanager.yml"
    rendered = run("sh", str(RENDER_ALERTMANAGER), str(out), env={"PATH": os.environ["PATH"], **RECEIVERS[kind]})
    assert rendered.returncode == 0, rendered.stderr
    assert f"to the {kind} receiver" in rendered.stderr
    assert "s3cret" not in rendered.stdout + rendered.stderr, "a secret was printed"
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    check = run(tool("amtool"), "check-config", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(out.read_text())
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    if kind == "log":
        assert receiver["webhook_configs"][0]["url"] == "http://alert-log:8080/"
    if kind == "webhook":
        assert receiver["webhook_configs"][0]["url"] == RECEIVERS[kind]["ALERT_WEBHOOK_URL"]  # quotes survive
    if kind == "slack":
        assert receiver["slack_configs"][0]["channel"] == "#study"
    if kind == "email":
        assert receiver["email_configs"][0]["auth_password"] == "s3cret"


def test_email_without_a_smarthost_is_refused(tmp_path):
    result = run(
        "sh",
        str(RENDER_ALERTMANAGER),
        str(tmp_path / "a.yml"),
        env={"PATH": os.environ["PATH"], "ALERT_EMAIL_TO": "x@example.org", "ALERT_EMAIL_FROM": "y@example.org"},
    )
    assert result.returncode != 0 and "ALERT_SMTP_SMARTHOST" in result.stderr


def test_alert_log_prints_each_alert_on_one_line(tmp_path):
    port = free_port()
    processes = Processes(tmp_path)
    processes.start("alert_log", [sys.executable, "-u", str(ALERT_LOG), "--listen", f"127.0.0.1:{port}"])
    try:
        wait_for(
            "alert-log", lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
        )
        notification = {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "FitpipeRunFailed", "command": "ingest"},
                    "annotations": {"summary": "the last fitpipe ingest run failed"},
                    "startsAt": "2026-01-01T00:00:00Z",
                },
                {
                    "status": "resolved",
                    "labels": {"alertname": "DatabaseDown", "instance": "pg"},
                    "annotations": {},
                    "startsAt": "2026-01-01T00:00:00Z",
                    "endsAt": "2026-01-01T01:00:00Z",
                },
            ],
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=json.dumps(notification).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert urllib.request.urlopen(request, timeout=5).status == 200
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{not json")
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(bad, timeout=5)
        lines = wait_for(
            "two lines",
            lambda: (
                [line for line in processes.log("alert_log").splitlines() if "Z " in line][-2:]
                if processes.log("alert_log").count("Z ") >= 2
                else None
            ),
        )
    finally:
        processes.stop()
    assert lines == [
        "2026-01-01T00:00:00Z FIRING FitpipeRunFailed command=ingest :: the last fitpipe ingest run failed",
        "2026-01-01T01:00:00Z RESOLVED DatabaseDown instance=pg",
    ]


# --------------------------------------------------------------------------------------------
# The images run what is tested


def installed_version(binary: str) -> str:
    result = run(tool(binary), "--version")
    return re.search(r"version (\d+\.\d+\.\d+)", result.stdout + result.stderr).group(1)


@pytest.mark.parametrize(
    "service, binary",
    [
        ("prometheus", "prometheus"),
        ("node-exporter", "prometheus-node-exporter"),
        ("alertmanager", "prometheus-alertmanager"),
        ("postgres-exporter", "prometheus-postgres-exporter"),
    ],
)
def test_compose_images_are_the_tested_versions(service, binary):
    image = COMPOSE["services"][service]["image"]
    assert image.endswith(f":v{installed_version(binary)}"), f"{service}: {image} is not what the tests ran"


# --------------------------------------------------------------------------------------------
# The metrics file: runs counted, the optional gauges for the runner


# --------------------------------------------------------------------------------------------
# Dashboards


def test_prometheus_dashboards_are_well_formed_and_use_the_provisioned_source():
    names = {p.name for p in PROMETHEUS_DASHBOARDS}
    assert names == {"application.json", "host.json", "containers.json"}
    sources = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["uid"] == "prometheus" and source["url"] == "http://prometheus:9090"
    uids = [json.loads(p.read_text())["uid"] for p in (ROOT / "grafana" / "dashboards").rglob("*.json")]
    assert len(uids) == len(set(uids)), "dashboard uids repeat"
    for path in PROMETHEUS_DASHBOARDS:
        board = json.loads(path.read_text())
        assert 36 <= board["schemaVersion"] <= 41
        expressions = list(panel_expressions(board))
        assert expressions, path.name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "prometheus" and target["expr"], panel["title"]
    application = json.loads((ROOT / "grafana" / "dashboards" / "monitoring" / "application.json").read_text())
    exprs = " ".join(e for _, _, e in panel_expressions(application))
    for metric in (
        "fitpipe_runs_total",
        "fitpipe_run_duration_seconds",
        "fitpipe_run_rows",
        "fitpipe_run_failures",
        "fitpipe_run_quarantined_rows",
        "fitpipe_deferred_days",
        "fitpipe_last_success_timestamp_seconds",
    ):
        assert metric in exprs, f"the Application dashboard does not show {metric}"
