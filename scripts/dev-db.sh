#!/usr/bin/env bash
# A local TimescaleDB for machines without Docker.
#
#   scripts/dev-db.sh start    install what is missing, build TimescaleDB if needed, start the cluster
#   scripts/dev-db.sh stop     stop the cluster
#   scripts/dev-db.sh status   say whether it runs, and which edition
#   scripts/dev-db.sh url      print the database URL to use
#   scripts/dev-db.sh edition  print the installed TimescaleDB build: community, apache or none
#
# Editions:
#   FITPIPE_TSDB_SOURCE=path/to/timescaledb-2.19.3.tar.gz   build the community edition (with the
#       Timescale-License code: compression, continuous aggregates, gapfill, policies) from that
#       source, as in the timescale/timescaledb Docker image. CI uses ../shared/vendor/.
#   unset: build the Apache-2 edition from Debian's source package.
#   FITPIPE_TSDB_LICENSE=apache|timescale   the cluster's timescaledb.license; default timescale
#       with a source tarball, apache without. The community build with license apache runs exactly
#       the Apache-2 code (the Timescale-License module is never loaded): CI tests that way.
#
# The cluster lives in .devdb/ (FITPIPE_DEV_DB_DIR; git-ignored) and runs as the postgres user,
# because the server refuses to run as root. Port and credentials match docker-compose.timescale.yml,
# so fitpipe's default URL works with either.
set -euo pipefail

PG_MAJOR=15
TSDB_VERSION=2.19.3
PORT="${FITPIPE_DEV_DB_PORT:-5432}"
DB_USER=fitpipe
DB_PASSWORD=fitpipe
DB_NAME=fitpipe

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVDB="${FITPIPE_DEV_DB_DIR:-$ROOT/.devdb}"
case "$DEVDB" in /*) ;; *) DEVDB="$ROOT/$DEVDB" ;; esac
TSDB_SOURCE="${FITPIPE_TSDB_SOURCE:-}"
if [ -n "$TSDB_SOURCE" ]; then
    case "$TSDB_SOURCE" in /*) ;; *) TSDB_SOURCE="$ROOT/$TSDB_SOURCE" ;; esac
    EDITION=community; DEFAULT_LICENSE=timescale
else
    EDITION=apache; DEFAULT_LICENSE=apache
fi
LICENSE="${FITPIPE_TSDB_LICENSE:-$DEFAULT_LICENSE}"
case "$LICENSE" in apache|timescale) ;; *) echo "dev-db: FITPIPE_TSDB_LICENSE must be apache or timescale" >&2; exit 2 ;; esac
DATA="$DEVDB/data"
RUN="$DEVDB/run"
LOG="$DEVDB/server.log"
PGBIN="/usr/lib/postgresql/$PG_MAJOR/bin"
PG_CONFIG="$PGBIN/pg_config"
[ -x "$PG_CONFIG" ] || PG_CONFIG="/usr/bin/pg_config"

say() { printf 'dev-db: %s\n' "$*" >&2; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

url() { printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$PORT" "$DB_NAME"; }

is_running() {
    [ -f "$DATA/postmaster.pid" ] && as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

timescaledb_installed() {
    [ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb--$TSDB_VERSION.sql" ] 2>/dev/null
}

# Which edition is installed: the community build adds the Timescale-License module next to the
# versioned library; the Apache-2 build has none.
installed_edition() {
    if ! timescaledb_installed; then echo none
    elif [ -f "$("$PG_CONFIG" --pkglibdir)/timescaledb-tsl-$TSDB_VERSION.so" ]; then echo community
    else echo apache; fi
}

# The community build is a superset of the Apache one (same version, same SQL), so a cluster asked
# to be Apache runs on it with timescaledb.license = apache; only community-over-apache rebuilds.
# Rebuilding Apache-only over a community install would break community clusters on this machine.
edition_ok() {
    case "$EDITION:$(installed_edition)" in
        community:community|apache:apache|apache:community) return 0 ;;
        *) return 1 ;;
    esac
}

# Copy a staged `make install` tree into place by rename, never by rewriting files in place:
# a running server has the old libraries mapped, and truncating them under it would crash it.
install_staged() {
    local stage="$1" file target tmp
    (cd "$stage" && find . -type f) | while read -r file; do
        target="/${file#./}"
        mkdir -p "$(dirname "$target")"
        tmp="$target.fitpipe-new.$$"
        cp "$stage/$file" "$tmp" && chmod 644 "$tmp" && case "$target" in *.so) chmod 755 "$tmp" ;; esac
        mv -f "$tmp" "$target"
    done
}

# Outside the project: TimescaleDB's cmake asks git for a revision and would find ours.
compile_timescaledb() {
    local srcdir="$1" stage="$2"; shift 2
    local log="$stage.log"
    (
        cd "$srcdir"
        ./bootstrap "$@" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
            -DENABLE_DEBUG_UTILS=OFF -DPG_CONFIG="$PG_CONFIG"
        cd build
        make -j"$(nproc)"
        make install DESTDIR="$stage"
    ) >"$log" 2>&1 || { tail -n 30 "$log" >&2; say "build failed (log: $log)"; exit 1; }
    install_staged "$stage"
}

build_timescaledb() {
    apt_install build-essential cmake dpkg-dev libssl-dev libkrb5-dev "postgresql-server-dev-$PG_MAJOR"
    local work
    work=$(mktemp -d /tmp/fitpipe-tsdb-build.XXXXXX)
    if [ "$EDITION" = community ]; then
        [ -f "$TSDB_SOURCE" ] || { say "FITPIPE_TSDB_SOURCE: no such file: $TSDB_SOURCE"; exit 2; }
        say "building TimescaleDB $TSDB_VERSION (community edition) from $TSDB_SOURCE"
        tar xzf "$TSDB_SOURCE" -C "$work"
        local srcdir
        srcdir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb*' | head -n1)
        [ -n "$srcdir" ] && [ -d "$srcdir/tsl" ] || { say "$TSDB_SOURCE holds no TimescaleDB source with tsl/"; exit 2; }
        compile_timescaledb "$srcdir" "$work/stage"
    else
        # Debian bookworm has no timescaledb package; trixie ships its source, which builds
        # against PostgreSQL 15. The +dfsg source drops the Timescale-licensed code, so the
        # build is the Apache-2 edition.
        local srclist=/etc/apt/sources.list.d/fitpipe-trixie-src.sources
        if [ ! -f "$srclist" ]; then
            # Reuse the mirror this machine is already configured with.
            local mirror
            mirror=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
            [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
            [ -n "$mirror" ] || { say "cannot find a Debian mirror in the apt configuration"; exit 1; }
            printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" > "$srclist"
            apt-get update -qq
        fi
        say "building TimescaleDB $TSDB_VERSION (Apache-2 edition) from Debian's source package"
        (cd "$work" && { apt-get source -qq "timescaledb/trixie" >/dev/null 2>&1 || apt-get source -qq timescaledb >/dev/null; })
        compile_timescaledb "$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)" \
            "$work/stage" -DAPACHE_ONLY=1
    fi
    edition_ok || { say "TimescaleDB build did not install the $EDITION edition of $TSDB_VERSION"; exit 1; }
    rm -rf "$work"
}

# The license line is rewritten on every start, so one cluster can be switched between editions.
set_license() {
    local conf="$DATA/postgresql.conf"
    sed -i '/^timescaledb\.license *=/d' "$conf"
    printf "timescaledb.license = '%s'\n" "$LICENSE" >> "$conf"
}

running_license() {
    as_postgres "$PGBIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -qAtc 'SHOW timescaledb.license' 2>/dev/null || echo unknown
}

start() {
    if is_running; then
        local running
        running=$(running_license)
        say "already running on 127.0.0.1:$PORT (timescaledb.license $running)"
        # A running server is never restarted behind its users' backs: say so and let them decide.
        [ "$running" = "$LICENSE" ] || say "asked for license $LICENSE: run 'stop' then 'start' to switch"
        return 0
    fi
    [ "$(id -u)" = 0 ] || [ "$(id -un)" = postgres ] || { say "run as root (to install packages) or as postgres"; exit 1; }
    apt_install "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
    if ! edition_ok; then
        [ "$(installed_edition)" = none ] || say "installed TimescaleDB is the $(installed_edition) edition; $EDITION asked: rebuilding"
        build_timescaledb
    fi
    mkdir -p "$DEVDB"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        say "creating a cluster in $DATA"
        mkdir -p "$DATA" "$RUN"
        chown -R postgres:postgres "$DEVDB"
        local pwfile="$DEVDB/.pw"
        printf '%s\n' "$DB_PASSWORD" > "$pwfile"; chown postgres "$pwfile"; chmod 600 "$pwfile"
        as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        cat >> "$DATA/postgresql.conf" <<CONF
# fitpipe dev cluster
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 100
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 15min
max_locks_per_transaction = 256
CONF
    fi
    set_license
    mkdir -p "$RUN"; chown -R postgres:postgres "$DEVDB"
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null || { tail -n 20 "$LOG" >&2; exit 1; }
    # Idempotent: the role and database are created once.
    as_postgres "$PGBIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 <<SQL >/dev/null
SELECT 'CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD ''$DB_PASSWORD'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') \gexec
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
    say "running on 127.0.0.1:$PORT, timescaledb.license $(running_license) ($(url | sed -E 's#://([^:]+):[^@]*@#://\1:***@#'))"
}

stop() {
    if is_running; then as_postgres "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; say "stopped"; else say "not running"; fi
}

status() {
    if is_running; then say "running on 127.0.0.1:$PORT, timescaledb.license $(running_license), installed build: $(installed_edition)"; else say "not running"; return 3; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) url ;;
    edition) installed_edition ;;
    *) echo "usage: $0 start|stop|status|url|edition" >&2; exit 2 ;;
esac
