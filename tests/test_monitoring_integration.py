"""The monitoring stack for real, on loopback ports: node_exporter reading the textfile of a real
`fitpipe ingest --metrics-file`, postgres_exporter (with fitpipe's queries) against a database of
its own, Prometheus with the versioned rules, Alertmanager with the rendered configuration and
alert-log as its receiver. The only stand-in is cAdvisor, which needs Docker: a static page of
cAdvisor's metric names (the container series) is scraped in its place.

Everything started here is stopped at the end, and the database and login are dropped.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from support.db import ADMIN_URL, url_for
from support.monitoring import (
    ALERT_LOG,
    PROMETHEUS_DASHBOARDS,
    QUERIES,
    RENDER_ALERTMANAGER,
    RULE_FILES,
    Processes,
    PrometheusAPI,
    free_port,
    grafana_expand,
    http_get,
    panel_expressions,
    tool,
    wait_for,
)

# Every test here loads days into a database (or shares a fixture that does): minutes, not seconds.
pytestmark = pytest.mark.slow

# Alerts wait this long in pending here instead of their minutes or hours.
SHORT_FOR = "4s"

# What cAdvisor would expose for two containers (names and labels as cAdvisor writes them).
CADVISOR_PAGE = """\
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{cpu="total",id="/docker/aaa",image="timescale/timescaledb:2.19.3-pg17",name="fitpipe-timescaledb-1"} {cpu_db}
container_cpu_usage_seconds_total{cpu="total",id="/docker/bbb",image="fitpipe",name="fitpipe-fitpipe-1"} {cpu_app}
container_cpu_usage_seconds_total{cpu="total",id="/"} 99999
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{id="/docker/aaa",image="timescale/timescaledb:2.19.3-pg17",name="fitpipe-timescaledb-1"} 2.5e+08
container_memory_working_set_bytes{id="/docker/bbb",image="fitpipe",name="fitpipe-fitpipe-1"} 1.2e+08
# TYPE container_start_time_seconds gauge
container_start_time_seconds{id="/docker/aaa",image="timescale/timescaledb:2.19.3-pg17",name="fitpipe-timescaledb-1"} {start}
container_start_time_seconds{id="/docker/bbb",image="fitpipe",name="fitpipe-fitpipe-1"} {start}
# TYPE container_network_receive_bytes_total counter
container_network_receive_bytes_total{id="/docker/aaa",interface="eth0",name="fitpipe-timescaledb-1"} {net}
# TYPE container_network_transmit_bytes_total counter
container_network_transmit_bytes_total{id="/docker/aaa",interface="eth0",name="fitpipe-timescaledb-1"} {net}
"""  # noqa: E501 (cAdvisor's own label lines)


class CadvisorStandIn(http.server.BaseHTTPRequestHandler):
    started = time.time() - 3600

    def do_GET(self):
        now = time.time()
        body = (
            CADVISOR_PAGE.replace("{cpu_db}", f"{now / 100:.3f}")
            .replace("{cpu_app}", f"{now / 50:.3f}")
            .replace("{start}", f"{self.started:.0f}")
            .replace("{net}", f"{now * 10:.0f}")
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def short_rules(target_dir) -> list[str]:
    """The versioned rule files with every `for` shortened, so pending and firing fit in a test."""
    paths = []
    for source in RULE_FILES:
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and rule.get("for"):
                    rule["for"] = SHORT_FOR
        path = target_dir / source.name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        paths.append(str(path))
    return paths


def fitpipe_cli(url: str, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FITPIPE_DATABASE_URL": url, **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "fitpipe.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"fitpipe {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Database, real ingest, exporters, Prometheus, Alertmanager and alert-log, all on loopback."""
    for name in (
        "prometheus",
        "promtool",
        "prometheus-node-exporter",
        "prometheus-postgres-exporter",
        "prometheus-alertmanager",
    ):
        tool(name)
    work = tmp_path_factory.mktemp("monitoring")
    textfile_dir = work / "textfile"
    textfile_dir.mkdir()
    database = f"fitpipe_monitoring_{uuid.uuid4().hex[:8]}"
    reader = f"exporter_{uuid.uuid4().hex[:8]}"
    reader_password = uuid.uuid4().hex
    url = url_for(database)
    processes = Processes(work)
    server = None
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        # Four days ago, so the one ingested day is more than 48 h old: the participant is silent.
        start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)).isoformat()
        fitpipe_cli(url, "init-db")
        fitpipe_cli(url, "seed-users", "--count", "1", "--start-date", start)
        fitpipe_cli(url, "create-reader", reader, extra_env={"FITPIPE_READER_PASSWORD": reader_password})
        metrics_file = textfile_dir / "fitpipe.prom"
        fitpipe_cli(url, "ingest", "--days", "1", "--quiet", "--metrics-file", str(metrics_file))

        ports = {
            name: free_port() for name in ("node", "postgres", "cadvisor", "alertmanager", "alert_log", "prometheus")
        }
        server = http.server.ThreadingHTTPServer(("127.0.0.1", ports["cadvisor"]), CadvisorStandIn)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        processes.start(
            "node_exporter",
            [
                tool("prometheus-node-exporter"),
                f"--web.listen-address=127.0.0.1:{ports['node']}",
                f"--collector.textfile.directory={textfile_dir}",
            ],
        )
        db = conninfo_to_dict(url)
        processes.start(
            "postgres_exporter",
            [
                tool("prometheus-postgres-exporter"),
                f"--web.listen-address=127.0.0.1:{ports['postgres']}",
                f"--extend.query-path={QUERIES}",
            ],
            env={
                "PATH": os.environ["PATH"],
                "DATA_SOURCE_URI": f"{db.get('host', '127.0.0.1')}:{db.get('port', 5432)}/{database}?sslmode=disable",
                "DATA_SOURCE_USER": reader,
                "DATA_SOURCE_PASS": reader_password,
            },
        )
        processes.start(
            "alert_log", [sys.executable, "-u", str(ALERT_LOG), "--listen", f"127.0.0.1:{ports['alert_log']}"]
        )
        alertmanager_config = work / "alertmanager.yml"
        subprocess.run(
            ["sh", str(RENDER_ALERTMANAGER), str(alertmanager_config)],
            check=True,
            capture_output=True,
            env={
                "PATH": os.environ["PATH"],
                "ALERT_LOG_URL": f"http://127.0.0.1:{ports['alert_log']}/",
                "ALERT_GROUP_WAIT": "1s",
            },
        )
        processes.start(
            "alertmanager",
            [
                tool("prometheus-alertmanager"),
                f"--config.file={alertmanager_config}",
                f"--storage.path={work / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
        )

        rules = short_rules(work)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]},
            # The job names of monitoring/prometheus/prometheus.yml, so series are labelled the same.
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{ports[port]}"]}]}
                for job, port in (
                    ("node", "node"),
                    ("postgres", "postgres"),
                    ("cadvisor", "cadvisor"),
                    ("alertmanager", "alertmanager"),
                    ("prometheus", "prometheus"),
                )
            ],
        }
        config_path = work / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run([tool("promtool"), "check", "config", str(config_path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        processes.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
        )

        api = PrometheusAPI(f"http://127.0.0.1:{ports['prometheus']}")
        wait_for("Prometheus to be ready", lambda: http_get(f"{api.base}/-/ready"))
        wait_for(
            "every scrape target to be up",
            lambda: (
                processes.check_alive()
                or {t["labels"]["job"]: t["health"] for t in api.get("/api/v1/targets")["data"]["activeTargets"]}
                == {job: "up" for job in ("node", "postgres", "cadvisor", "alertmanager", "prometheus")}
            ),
        )
        yield {
            "api": api,
            "metrics_file": metrics_file,
            "processes": processes,
            "database": database,
            "alertmanager": f"http://127.0.0.1:{ports['alertmanager']}",
        }
    finally:
        killed = processes.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
        assert not killed, f"{killed} ignored SIGTERM"


def values(api: PrometheusAPI, expr: str) -> dict[tuple, float]:
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in api.query(expr)}


def test_fitpipe_metrics_of_the_real_ingest_are_scraped(stack):
    api = stack["api"]
    success = wait_for("fitpipe's ingest metrics", lambda: values(api, 'fitpipe_run_success{command="ingest"}'))
    assert list(success.values()) == [1.0]
    (labels,) = success
    assert dict(labels)["job"] == "node"
    last = values(api, 'time() - fitpipe_last_success_timestamp_seconds{command="ingest"}')
    assert 0 <= next(iter(last.values())) < 600, "the ingest succeeded minutes ago at most"
    assert (
        values(api, 'fitpipe_run_user_days{command="ingest"}')
        and next(iter(values(api, 'fitpipe_run_user_days{command="ingest"}').values())) == 1.0
    )
    assert next(iter(values(api, 'fitpipe_run_rows{command="ingest"}').values())) > 0
    runs = values(api, 'fitpipe_runs_total{command="ingest"}')
    assert {dict(k)["result"]: v for k, v in runs.items()} == {"ok": 1.0}
    # The same numbers as the file the CLI wrote.
    assert 'fitpipe_run_success{command="ingest"} 1.0' in stack["metrics_file"].read_text()


def test_database_and_adherence_metrics_are_scraped(stack):
    api = stack["api"]
    assert list(wait_for("pg_up", lambda: values(api, "pg_up")).values()) == [1.0]
    size = values(api, f'pg_database_size_bytes{{datname="{stack["database"]}"}}')
    assert size and next(iter(size.values())) > 1e6
    assert values(api, "pg_settings_max_connections")
    assert values(api, "sum(pg_stat_activity_count)")
    assert values(api, "pg_replication_lag") and set(values(api, "pg_replication_lag").values()) == {0.0}
    flags = wait_for(
        "adherence counts",
        lambda: {dict(k)["flag"]: v for k, v in values(api, "fitpipe_adherence_participants").items()},
    )
    # One participant, whose only ingested day ended more than 48 h ago.
    assert flags["all"] == 1.0 and flags["no_recent_data"] == 1.0
    assert set(flags) == {"all", "low_wear", "no_recent_data", "low_sleep_capture", "no_credentials"}
    assert flags["no_credentials"] == 0.0, "a synthetic participant needs no credentials"


def test_every_dashboard_expression_is_valid_and_returns_series(stack):
    api = stack["api"]
    assert len(PROMETHEUS_DASHBOARDS) == 3
    checked = 0
    for path in PROMETHEUS_DASHBOARDS:
        board = json.loads(path.read_text())
        for title, ref, expr in panel_expressions(board):
            query = grafana_expand(expr)
            result = wait_for(
                f"{board['title']} / {title} ({ref}) to return series: {query}",
                lambda query=query: api.query(query),
                timeout=30,
            )
            assert result, query
            checked += 1
    assert checked >= 25


def test_stale_ingest_goes_pending_then_firing_and_reaches_the_receiver(stack):
    api, processes = stack["api"], stack["processes"]
    assert "FitpipeIngestStale" not in {a["labels"]["alertname"] for a in api.alerts()}
    # The last success 37 h ago, as if every night since had failed to run.
    path = stack["metrics_file"]
    old = time.time() - 37 * 3600
    text, count = re.subn(
        r'^(fitpipe_last_success_timestamp_seconds\{command="ingest"\}) .*$',
        lambda m: f"{m.group(1)} {old:.3f}",
        path.read_text(),
        flags=re.M,
    )
    assert count == 1
    staged = path.with_name("fitpipe.prom.staged")
    staged.write_text(text)
    staged.rename(path)  # node_exporter must never read half a file

    wait_for("FitpipeIngestStale pending", lambda: api.alert_states("FitpipeIngestStale") == {"pending"}, every=0.1)
    wait_for("FitpipeIngestStale firing", lambda: api.alert_states("FitpipeIngestStale") == {"firing"})
    (alert,) = [a for a in api.alerts() if a["labels"]["alertname"] == "FitpipeIngestStale"]
    assert alert["labels"]["command"] == "ingest" and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith("fitpipe ingest last succeeded 1d 13h")

    def received():
        names = {a["labels"]["alertname"] for a in json.loads(http_get(stack["alertmanager"] + "/api/v2/alerts"))}
        return "FitpipeIngestStale" in names

    wait_for("the alert in Alertmanager", received)
    wait_for(
        "the alert in alert-log's output",
        lambda: re.search(r"FIRING FitpipeIngestStale .*command=ingest", processes.log("alert_log")),
        timeout=30,
    )


def test_silent_participant_alert_fires(stack):
    api = stack["api"]
    wait_for("FitpipeParticipantsSilent firing", lambda: api.alert_states("FitpipeParticipantsSilent") == {"firing"})
    # Healthy at the same time: nothing failed, the database is up, and every target answers.
    active = {a["labels"]["alertname"] for a in api.alerts()}
    assert not active & {
        "FitpipeRunFailed",
        "DatabaseDown",
        "MonitoringTargetDown",
        "FitpipeIngestMetricsMissing",
        "ContainerRestarting",
        "FitpipeQuarantineJump",
    }, active
