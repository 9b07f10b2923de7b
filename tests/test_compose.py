"""The Docker files, checked without Docker: the compose file, the image's Dockerfile and build
context, the entrypoint (run here with stand-ins for fitpipe and cron), and Grafana's provisioning.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from psycopg.conninfo import conninfo_to_dict

from fitpipe.config import DEFAULT_DATABASE_URL
from support import ROOT

yaml = pytest.importorskip("yaml")

COMPOSE_FILE = ROOT / "docker-compose.timescale.yml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
INGEST_JOB = ROOT / "docker" / "ingest-job.sh"
PROVISIONING = ROOT / "grafana" / "provisioning"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
# What Grafana 11 calls its PostgreSQL data source, and the id older dashboards use for it.
POSTGRES_TYPES = {"grafana-postgresql-datasource", "postgres"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def volume_mounts(service: dict) -> list[tuple[str, str, str]]:
    """(kind, source, target) of each volume, kind 'bind' or 'volume', short or long syntax."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((entry.get("type", "volume"), entry.get("source", ""), entry["target"]))
            continue
        source, _, rest = entry.partition(":")
        target = rest.split(":")[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def compose_default(value: str) -> str:
    """`${NAME:-default}` as compose resolves it when NAME is unset."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


# --------------------------------------------------------------------------------------------
# The compose file


def test_the_three_services_exist(services):
    assert {"timescaledb", "fitpipe", "grafana"} <= set(services)


def test_images_are_pinned(services):
    for name, service in services.items():
        if "image" not in service:
            assert "build" in service, f"service {name} has neither an image nor a build"
            continue
        image = service["image"]
        tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]  # registry:port/name:tag@digest
        assert tag or "@sha256:" in image, f"service {name}: image {image} has no tag"
        assert tag != "latest", f"service {name}: image {image} floats"


def test_health_gates(services):
    for name in ("timescaledb", "grafana"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"service {name} has no healthcheck"
    assert "/api/health" in str(services["grafana"]["healthcheck"]["test"])
    for name in ("fitpipe", "grafana"):
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"service {name}: depends_on needs the long form with a condition"
        assert depends.get("timescaledb", {}).get("condition") == "service_healthy", name
    # A service_healthy condition needs a healthcheck on the other side, or compose waits forever.
    for name, service in services.items():
        depends = service.get("depends_on")
        for other, condition in depends.items() if isinstance(depends, dict) else []:
            if condition.get("condition") == "service_healthy":
                assert services[other].get("healthcheck"), f"{name} waits for {other}, which has no healthcheck"


def test_published_ports_are_local_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"service {name} publishes {port} beyond this machine"


def test_named_volumes_are_declared_and_used(compose, services):
    used = {source for service in services.values() for kind, source, _ in volume_mounts(service) if kind == "volume"}
    declared = set(compose.get("volumes") or {})
    assert used == declared, f"used {sorted(used)}, declared {sorted(declared)}"


def test_bind_mounts_exist(services):
    for name, service in services.items():
        for kind, source, _ in volume_mounts(service):
            # Absolute sources are the Docker host's own paths (node_exporter's and cAdvisor's /, /sys, ...).
            if kind == "bind" and not source.startswith("/"):
                assert (COMPOSE_FILE.parent / source).exists(), f"service {name} mounts {source}, which is missing"


def test_fitpipe_service_builds_this_repository(services):
    build = services["fitpipe"]["build"]
    build = {"context": build} if isinstance(build, str) else build
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    assert context == ROOT
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_fitpipe_service_reaches_the_timescaledb_service_with_its_credentials(services):
    url = conninfo_to_dict(compose_default(environment(services["fitpipe"])["FITPIPE_DATABASE_URL"]))
    db_env = {k: compose_default(v) for k, v in environment(services["timescaledb"]).items()}
    default = conninfo_to_dict(DEFAULT_DATABASE_URL)
    assert url["host"] == "timescaledb"
    assert (url["user"], url["password"], url["dbname"]) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
        db_env["POSTGRES_DB"],
    )
    assert (url["user"], url["password"], url["dbname"], url["port"]) == (
        default["user"],
        default["password"],
        default["dbname"],
        default["port"],
    )


def test_fitpipe_service_defaults(services):
    env = {k: compose_default(v) for k, v in environment(services["fitpipe"]).items()}
    assert env["FITPIPE_USERS"] == "3"
    assert env["FITPIPE_TIMEZONE"] == "UTC"
    assert env["FITPIPE_START_DATE"] == "2024-01-01"
    assert env["FITPIPE_INGEST_SCHEDULE"] == "30 2 * * *"
    assert env["FITPIPE_INGEST_DAYS"] == "1"
    assert env["FITPIPE_DEMO"] == "0"
    metrics_dir = PurePosixPath(env["FITPIPE_METRICS_FILE"]).parent
    assert str(metrics_dir) in {target for _, _, target in volume_mounts(services["fitpipe"])}


# --------------------------------------------------------------------------------------------
# The Dockerfile and its build context


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        out.append((keyword.upper(), args))
    return out


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!").lstrip("/"))
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerfile_base_image_is_pinned():
    bases = [args[-1] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    assert bases[-1].startswith("python:3.11-slim-bookworm")


def test_dockerfile_copies_what_exists_and_is_in_the_build_context():
    copies = [args for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert copies
    for args in copies:
        if any(a.startswith("--from") for a in args):
            continue
        for source in [a for a in args if not a.startswith("--")][:-1]:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: missing from the repository"
            relative = path.relative_to(ROOT).as_posix()
            assert not dockerignore_excludes(relative), f"COPY {source}: excluded by .dockerignore"
            if path.is_dir():
                files = [p.relative_to(ROOT).as_posix() for p in path.rglob("*") if p.is_file()]
                assert any(not dockerignore_excludes(f) for f in files), f"COPY {source}: every file is ignored"


def test_dockerignore_keeps_local_state_out():
    for path in (
        ".venv/bin/python",
        ".devdb/data/PG_VERSION",
        ".git/HEAD",
        "tests/conftest.py",
        "src/fitpipe/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/README.md",
        "out/hr.csv",
    ):
        assert dockerignore_excludes(path), path
    for path in (
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "src/fitpipe/cli.py",
        "migrations/0001_core.sql",
        "docker/entrypoint.sh",
    ):
        assert not dockerignore_excludes(path), path


def test_dockerfile_installs_the_package_with_its_migrations_and_entrypoint():
    instructions = dockerfile_instructions()
    env = " ".join(" ".join(args) for keyword, args in instructions if keyword == "ENV")
    # The SQL ships inside the package: no second copy for the image to point at.
    assert "FITPIPE_MIGRATIONS_DIR" not in env
    assert (ROOT / "src/fitpipe/migrations/0001_core.sql").is_file()
    entrypoint = [args for keyword, args in instructions if keyword == "ENTRYPOINT"][-1]
    assert entrypoint == ["/app/docker/entrypoint.sh"]
    copied = [args for keyword, args in instructions if keyword == "COPY"]
    assert any(
        "docker/entrypoint.sh" in args and args[-1].rstrip("/") in ("./docker", "/app/docker") for args in copied
    )
    assert any(keyword == "RUN" and "cron" in args for keyword, args in instructions)


@pytest.mark.parametrize("script", [ENTRYPOINT, INGEST_JOB], ids=lambda p: p.name)
def test_scripts_are_executable_bash(script):
    assert script.is_file()
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------
# The entrypoint and the cron job, run here with stand-ins for fitpipe and cron


@pytest.fixture
def sandbox(tmp_path):
    """PATH with a fake `fitpipe` (logs its arguments and database URL) and a fake `cron`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    (bin_dir / "fitpipe").write_text(
        f'#!/usr/bin/env bash\nprintf "%s|%s\\n" "$*" "$FITPIPE_DATABASE_URL" >> {shlex.quote(str(log))}\n'
    )
    (bin_dir / "cron").write_text(f'#!/usr/bin/env bash\necho "cron $*" >> {shlex.quote(str(log))}\n')
    # Root, as in the image, with setpriv and chown logged instead of done (no such user here).
    (bin_dir / "id").write_text('#!/usr/bin/env bash\n[ "$1" = -u ] && echo 0 || /usr/bin/id "$@"\n')
    (bin_dir / "setpriv").write_text(
        f'#!/usr/bin/env bash\nopts=()\nwhile [[ "$1" == --* ]]; do opts+=("$1"); shift; done\n'
        f'echo "${{opts[*]}} -> $*" >> {shlex.quote(str(tmp_path / "setpriv.log"))}\nexec "$@"\n'
    )
    (bin_dir / "chown").write_text(f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(tmp_path / "chown.log"))}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FITPIPE_DATABASE_URL": "postgresql://fitpipe:p@ss'w$rd@timescaledb:5432/fitpipe",
        "FITPIPE_CRON_FILE": str(tmp_path / "cron.d" / "fitpipe"),
        "FITPIPE_CRON_ENV_FILE": str(tmp_path / "fitpipe" / "cron.env"),
        "FITPIPE_METRICS_FILE": str(tmp_path / "metrics" / "fitpipe.prom"),
    }
    return tmp_path, env, log


def run_entrypoint(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60)


def crontab_line(path: Path) -> list[str]:
    lines = [
        line
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(lines) == 1, lines
    return lines[0].split()


def test_entrypoint_prepares_the_database_then_hands_over_to_cron(sandbox):
    tmp, env, log = sandbox
    result = run_entrypoint({**env, "FITPIPE_USERS": "5", "FITPIPE_TIMEZONE": "Europe/Paris"})
    assert result.returncode == 0, result.stderr
    calls = [line.split("|")[0] for line in log.read_text().splitlines()]
    assert calls == ["init-db", "seed-users --count 5 --timezone Europe/Paris --start-date 2024-01-01", "cron -f"]

    cron_file = tmp / "cron.d" / "fitpipe"
    assert oct(cron_file.stat().st_mode & 0o777) == "0o644"
    fields = crontab_line(cron_file)
    assert fields[:5] == ["30", "2", "*", "*", "*"] and fields[5] == "root"  # root opens the container log...
    assert fields[6:10] == [
        "setpriv",
        "--reuid=fitpipe",
        "--regid=fitpipe",
        "--init-groups",
    ]  # ...the job runs as fitpipe
    assert fields[10] == str(INGEST_JOB) and fields[11] == env["FITPIPE_CRON_ENV_FILE"]
    assert fields[-2:] == [">/proc/1/fd/1", "2>/proc/1/fd/2"]

    env_file = tmp / "fitpipe" / "cron.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"  # it holds the password
    # What cron's job sees: the env file only, then the job runs fitpipe ingest with it.
    job = subprocess.run(
        [str(INGEST_JOB), str(env_file)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "FITPIPE_INGEST_LOCK": str(tmp / "ingest.lock")},
        capture_output=True,
        text=True,
    )
    assert job.returncode == 0, job.stderr
    last = log.read_text().splitlines()[-1]
    assert last == f"ingest --days 1 --quiet --metrics-file {env['FITPIPE_METRICS_FILE']}|{env['FITPIPE_DATABASE_URL']}"
    assert "fitpipe ingest --days 1 started" in job.stdout and "exit status 0" in job.stdout


def test_demo_mode_ingests_every_two_minutes(sandbox):
    tmp, env, _ = sandbox
    result = run_entrypoint({**env, "FITPIPE_DEMO": "1", "FITPIPE_INGEST_DAYS": "3"})
    assert result.returncode == 0, result.stderr
    assert crontab_line(tmp / "cron.d" / "fitpipe")[:5] == ["*/2", "*", "*", "*", "*"]
    assert "export FITPIPE_INGEST_DAYS=3" in (tmp / "fitpipe" / "cron.env").read_text()


@pytest.mark.parametrize(
    "setting",
    [
        {"FITPIPE_INGEST_SCHEDULE": "30 2 * *"},
        {"FITPIPE_INGEST_SCHEDULE": "30 2 * * * ; rm -rf /"},
        {"FITPIPE_USERS": "0"},
        {"FITPIPE_INGEST_DAYS": "one"},
        {"FITPIPE_DEMO": "maybe"},
    ],
)
def test_entrypoint_refuses_bad_settings_before_touching_the_database(sandbox, setting):
    _, env, log = sandbox
    result = run_entrypoint({**env, **setting})
    assert result.returncode != 0
    assert next(iter(setting)) in result.stderr
    assert not log.exists()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"FITPIPE_DATABASE_URL": "postgresql://fitpipe:fitpipe@timescaledb:5432/fitpipe"}, "FITPIPE_DB_PASSWORD"),
        ({"GRAFANA_ADMIN_PASSWORD": "admin"}, "GRAFANA_ADMIN_PASSWORD"),
    ],
)
def test_entrypoint_refuses_the_compose_default_passwords_outside_a_demo(sandbox, setting, named):
    """Issue 21: compose's defaults (fitpipe/fitpipe, admin/admin) were accepted silently."""
    _, env, log = sandbox
    result = run_entrypoint({**env, **setting})
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and named in result.stderr and "FITPIPE_DEMO=1" in result.stderr
    assert not log.exists()
    demo = run_entrypoint({**env, **setting, "FITPIPE_DEMO": "1"})
    assert demo.returncode == 0, demo.stderr


def test_compose_defaults_are_the_ones_the_entrypoint_refuses(services):
    env = {k: compose_default(v) for k, v in environment(services["fitpipe"]).items()}
    assert conninfo_to_dict(env["FITPIPE_DATABASE_URL"])["password"] == "fitpipe"
    assert env["GRAFANA_ADMIN_PASSWORD"] == compose_default(
        environment(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    )


def test_entrypoint_runs_other_commands(sandbox):
    _, env, log = sandbox
    assert run_entrypoint(env, "status", "--json").returncode == 0
    assert log.read_text().splitlines() == [f"status --json|{env['FITPIPE_DATABASE_URL']}"]
    result = run_entrypoint(env, "echo", "hello")
    assert result.stdout == "hello\n"


def test_ingest_job_skips_while_the_previous_run_holds_the_lock(sandbox):
    tmp, env, log = sandbox
    assert run_entrypoint(env).returncode == 0
    lock = tmp / "ingest.lock"
    job_env = {"PATH": "/usr/bin:/bin", "FITPIPE_INGEST_LOCK": str(lock)}
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
    try:
        for _ in range(50):  # until flock holds it
            if subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
                break
            subprocess.run(["sleep", "0.1"])
        job = subprocess.run(
            [str(INGEST_JOB), env["FITPIPE_CRON_ENV_FILE"]], env=job_env, capture_output=True, text=True
        )
    finally:
        holder.kill()
        holder.wait()
    assert job.returncode == 0 and "skipping" in job.stdout
    assert not any(line.startswith("ingest ") for line in log.read_text().splitlines())


# --------------------------------------------------------------------------------------------
# Grafana


def provisioned(kind: str) -> list[dict]:
    items = []
    for path in sorted((PROVISIONING / kind).glob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        assert document.get("apiVersion") == 1, path
        items += document.get("datasources" if kind == "datasources" else "providers", [])
    return items


def test_datasource_is_the_compose_database(services):
    sources = provisioned("datasources")
    by_uid = {s["uid"]: s for s in sources}
    source = by_uid["timescaledb"]
    assert source["type"] in POSTGRES_TYPES and source["name"] == "TimescaleDB"
    db_env = environment(services["timescaledb"])
    assert source["url"] == "timescaledb:5432"
    # Grafana logs in as the read-only login the fitpipe service creates, with the password that
    # both services get from the same variable.
    assert source["user"] == "grafana" != db_env["POSTGRES_USER"]
    assert source["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    fitpipe_env, grafana_env = environment(services["fitpipe"]), environment(services["grafana"])
    assert fitpipe_env["GRAFANA_DB_PASSWORD"] == grafana_env["GRAFANA_DB_PASSWORD"]
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "fitpipe create-reader grafana" in entrypoint
    assert source["jsonData"]["database"] == db_env["POSTGRES_DB"]
    assert source["jsonData"]["timescaledb"] is True and source["jsonData"]["sslmode"] == "disable"
    assert source["jsonData"]["postgresVersion"] in (1500, 1700)


def test_dashboard_provider_reads_the_mounted_dashboards(services):
    providers = provisioned("dashboards")
    assert providers
    mounts = {target: source for kind, source, target in volume_mounts(services["grafana"]) if kind == "bind"}
    for provider in providers:
        path = provider["options"]["path"]
        assert path in mounts, f"provider {provider['name']} reads {path}, which nothing is mounted on"
        assert (COMPOSE_FILE.parent / mounts[path]).resolve() == (ROOT / "grafana" / "dashboards")
    # The provisioning folders Grafana reads are mounted from this repository.
    targets = {target for _, _, target in volume_mounts(services["grafana"])}
    assert {
        "/etc/grafana/provisioning/datasources",
        "/etc/grafana/provisioning/dashboards",
    } <= targets or "/etc/grafana/provisioning" in targets
    home = environment(services["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        mount = next(t for t in mounts if home.startswith(t + "/"))
        assert (COMPOSE_FILE.parent / mounts[mount] / home[len(mount) + 1 :]).is_file(), home


def test_grafana_needs_a_login_unless_a_demo_opens_it_to_viewers(services):
    env = environment(services["grafana"])
    # Health data: anonymous access off by default; the demo setting opens it read-only.
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS:-false}"
    assert compose_default(env["GF_AUTH_ANONYMOUS_ENABLED"]) == "false"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer" and env["GF_USERS_AUTO_ASSIGN_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    for name in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        assert compose_default(env[name]) and "${" in env[name], f"{name} must come from the environment"
    viewer = services["grafana-viewer"]
    viewer_env = environment(viewer)
    assert viewer_env["GRAFANA_VIEWER_PASSWORD"] == "${GRAFANA_VIEWER_PASSWORD:-}"  # no viewer without a password
    assert (viewer_env["GRAFANA_ADMIN_USER"], viewer_env["GRAFANA_ADMIN_PASSWORD"]) == (
        env["GF_SECURITY_ADMIN_USER"],
        env["GF_SECURITY_ADMIN_PASSWORD"],
    )
    assert viewer["depends_on"]["grafana"]["condition"] == "service_healthy"
    script = ROOT / "monitoring" / "grafana" / "create-viewer.sh"
    assert viewer["entrypoint"][-1].endswith("/" + script.name) and script.is_file()
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


# --------------------------------------------------------------------------------------------
# The monitoring profile

MONITORING_SERVICES = {"prometheus", "node-exporter", "cadvisor", "postgres-exporter", "alertmanager", "alert-log"}


def test_monitoring_services_are_in_the_profile_only(services):
    in_profile = {name for name, service in services.items() if "monitoring" in service.get("profiles", [])}
    assert in_profile == MONITORING_SERVICES
    for name in ("timescaledb", "fitpipe", "grafana"):
        assert not services[name].get("profiles"), f"{name} must start without a profile"


def test_monitoring_services_have_health_checks_and_start_in_order(services):
    for name in MONITORING_SERVICES:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("restart") == "unless-stopped", name
    waits = {other for other, c in services["prometheus"]["depends_on"].items() if c["condition"] == "service_healthy"}
    assert waits == {"node-exporter", "postgres-exporter", "cadvisor", "alertmanager"}
    assert services["postgres-exporter"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert services["alertmanager"]["depends_on"]["alert-log"]["condition"] == "service_healthy"


def test_only_prometheus_and_alertmanager_publish_ports_on_loopback(services):
    published = {
        name: service["ports"]
        for name, service in services.items()
        if name in MONITORING_SERVICES and service.get("ports")
    }
    assert published == {"prometheus": ["127.0.0.1:9090:9090"], "alertmanager": ["127.0.0.1:9093:9093"]}
    for name in MONITORING_SERVICES:
        assert services[name].get("network_mode") != "host", f"{name} would listen on the host's addresses"


def test_monitoring_mounts_and_volumes(services, compose):
    def mounts(name):
        return {target: (kind, source) for kind, source, target in volume_mounts(services[name])}

    assert mounts("prometheus")["/etc/prometheus"] == ("bind", "./monitoring/prometheus")
    assert mounts("prometheus")["/prometheus"] == ("volume", "prometheus-data")
    assert mounts("alertmanager")["/alertmanager"] == ("volume", "alertmanager-data")
    assert {"prometheus-data", "alertmanager-data"} <= set(compose["volumes"])
    # node_exporter's textfile collector reads the volume the fitpipe service writes its metrics to.
    fitpipe_dir = str(PurePosixPath(environment(services["fitpipe"])["FITPIPE_METRICS_FILE"]).parent)
    volume = next(source for _, source, target in volume_mounts(services["fitpipe"]) if target == fitpipe_dir)
    textfile = next(
        a.split("=", 1)[1]
        for a in services["node-exporter"]["command"]
        if a.startswith("--collector.textfile.directory=")
    )
    assert mounts("node-exporter")[textfile] == ("volume", volume)
    queries = next(
        a.split("=", 1)[1] for a in services["postgres-exporter"]["command"] if a.startswith("--extend.query-path=")
    )
    mount = mounts("postgres-exporter")[str(PurePosixPath(queries).parent)]
    assert (COMPOSE_FILE.parent / mount[1] / PurePosixPath(queries).name).is_file()
    script = services["alertmanager"]["entrypoint"][1]
    source = mounts("alertmanager")[str(PurePosixPath(script).parent)][1]
    assert (COMPOSE_FILE.parent / source / PurePosixPath(script).name).is_file()


def test_postgres_exporter_logs_in_as_the_reader_the_fitpipe_service_creates(services):
    exporter = environment(services["postgres-exporter"])
    fitpipe_env = environment(services["fitpipe"])
    assert exporter["DATA_SOURCE_PASS"] == fitpipe_env["POSTGRES_EXPORTER_DB_PASSWORD"]
    assert exporter["DATA_SOURCE_URI"].startswith("timescaledb:5432/")
    assert "DATA_SOURCE_NAME" not in exporter, "the password stays out of a URL"
    assert f"fitpipe create-reader {exporter['DATA_SOURCE_USER']}" in ENTRYPOINT.read_text()


def datasource_refs(node):
    """Every {"type", "uid"} data source reference anywhere in a dashboard."""
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield source
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_use_provisioned_datasources(path):
    sources = {s["uid"]: s for s in provisioned("datasources")}
    board = json.loads(path.read_text())
    refs = [r for r in datasource_refs(board) if r.get("type") != "grafana"]  # Grafana's built-in annotations
    assert refs, f"{board['title']} uses no data source"
    for ref in refs:
        assert ref["uid"] in sources, f"{board['title']}: data source uid {ref['uid']} is not provisioned"
        assert ref.get("type") in POSTGRES_TYPES and sources[ref["uid"]]["type"] in POSTGRES_TYPES, ref


def test_entrypoint_creates_the_exporters_reader_when_its_password_is_set(sandbox):
    _, env, log = sandbox
    result = run_entrypoint({**env, "POSTGRES_EXPORTER_DB_PASSWORD": "exporter-s3cret"})
    assert result.returncode == 0, result.stderr
    calls = [line.split("|")[0] for line in log.read_text().splitlines()]
    assert "create-reader postgres_exporter" in calls
    assert "exporter-s3cret" not in log.read_text() + result.stdout + result.stderr, "the password is not an argument"


def test_the_image_runs_fitpipe_as_an_unprivileged_user(sandbox):
    """Issue 13, finding 19: as root, fitpipe could replace /dev/null; in the image it never runs as root."""
    tmp, env, _log = sandbox
    assert run_entrypoint(env).returncode == 0
    dropped = (tmp / "setpriv.log").read_text().splitlines()
    expected = "--reuid=fitpipe --regid=fitpipe --init-groups -> fitpipe"
    assert dropped == [f"{expected} init-db", f"{expected} seed-users --count 3 --timezone UTC --start-date 2024-01-01"]
    # The metrics volume and the cron environment belong to that user, so the job can write and read them.
    owned = (tmp / "chown.log").read_text().splitlines()
    assert f"fitpipe: {tmp / 'metrics'}" in owned
    assert f"fitpipe: {env['FITPIPE_CRON_ENV_FILE']}.tmp" in owned
    # Direct commands too: a fitpipe subcommand and a program.
    assert run_entrypoint(env, "status").returncode == 0
    assert run_entrypoint(env, "echo", "hi").stdout == "hi\n"
    dropped = (tmp / "setpriv.log").read_text().splitlines()
    assert dropped[-2:] == [f"{expected} status", "--reuid=fitpipe --regid=fitpipe --init-groups -> echo hi"]
    # FITPIPE_RUN_AS names another user.
    assert run_entrypoint({**env, "FITPIPE_RUN_AS": "study"}, "status").returncode == 0
    assert (tmp / "setpriv.log").read_text().splitlines()[-1].startswith("--reuid=study --regid=study")


def test_dockerfile_creates_the_unprivileged_user_and_gives_it_the_metrics_folder():
    run_lines = " ".join(" ".join(args) for keyword, args in dockerfile_instructions() if keyword == "RUN")
    assert re.search(r"useradd [^&]*--system[^&]* fitpipe", run_lines)
    assert "chown fitpipe:fitpipe /metrics" in run_lines


def test_compose_file_matches_the_default_url():
    yaml = pytest.importorskip("yaml")
    from fitpipe.config import DEFAULT_DATABASE_URL

    compose = yaml.safe_load((ROOT / "docker-compose.timescale.yml").read_text())
    service = compose["services"]["timescaledb"]
    image, _, tag = service["image"].partition(":")
    assert image == "timescale/timescaledb" and tag and tag != "latest", service["image"]
    env = {k: compose_default(str(v)) for k, v in service["environment"].items()}
    info = conninfo_to_dict(DEFAULT_DATABASE_URL)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        info["user"],
        info["password"],
        info["dbname"],
    )
    assert f"{info['host']}:{info['port']}:5432" in service["ports"]
    assert "pg_isready" in str(service["healthcheck"]["test"])
    volume = service["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
