#!/usr/bin/env bash
# The real programs the tests drive, from Debian: Prometheus, promtool, node_exporter,
# Alertmanager, amtool and postgres_exporter for the monitoring tests (tests/test_monitoring*.py),
# and chromium for the browser tests of `fitpipe serve` (Playwright drives Debian's build; its own
# browser download cannot work here), and a Java runtime for Spark reading the lake
# (tests/test_lake_spark.py). Installs only what is missing and returns at once when
# everything is there; scripts/test.sh runs it before pytest.
#
#   scripts/test-tools.sh          install what is missing
#   scripts/test-tools.sh check    exit 1 (and name them) when tools are missing
#
# Debian's packages register services; in containers policy-rc.d keeps them from starting, and
# on a machine where they do start they listen on the default ports (9090, 9093, 9100, 9187),
# which the tests never use: each test process gets a free port of its own.
set -euo pipefail

# package -> the executable the tests call
declare -A TOOLS=(
    [prometheus]="prometheus promtool"
    [prometheus-node-exporter]="prometheus-node-exporter"
    [prometheus-alertmanager]="prometheus-alertmanager amtool"
    [prometheus-postgres-exporter]="prometheus-postgres-exporter"
    [chromium]="chromium"
    [openjdk-17-jre-headless]="java"
)

say() { printf 'test-tools: %s\n' "$*" >&2; }

missing_packages() {
    local pkg tool
    for pkg in "${!TOOLS[@]}"; do
        for tool in ${TOOLS[$pkg]}; do
            if ! command -v "$tool" >/dev/null 2>&1; then
                printf '%s\n' "$pkg"
                break
            fi
        done
    done | sort
}

mapfile -t missing < <(missing_packages)

if [ "${1:-install}" = check ]; then
    [ ${#missing[@]} -eq 0 ] && exit 0
    say "missing: ${missing[*]}"
    exit 1
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then exec sudo "$0" "$@"; fi
    say "root (or sudo) is needed to install ${missing[*]}"
    exit 1
fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
mapfile -t still < <(missing_packages)
if [ ${#still[@]} -ne 0 ]; then
    say "still missing after apt-get: ${still[*]}"
    exit 1
fi
