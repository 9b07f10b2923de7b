#!/usr/bin/env bash
# Entrypoint of the fitpipe image.
#
#   serve (the default)   bring the schema up to date (fitpipe init-db), make sure participants
#                         1..FITPIPE_USERS exist (fitpipe seed-users), then run cron in the
#                         foreground with one job: docker/ingest-job.sh on FITPIPE_INGEST_SCHEDULE.
#                         Both setup steps are idempotent, so every start runs them (a newer image
#                         applies its new migrations this way).
#   anything else         run it: a fitpipe subcommand (`status`, `backfill --start ...`) or a program
#                         (`bash`). Example: docker compose -f docker-compose.timescale.yml run --rm fitpipe status
#
# Settings (environment):
#   FITPIPE_DATABASE_URL      required
#   FITPIPE_USERS             participants to create (default 3)
#   FITPIPE_TIMEZONE          IANA timezone of new participants (default UTC)
#   FITPIPE_START_DATE        study start of new participants (default 2024-01-01)
#   FITPIPE_INGEST_SCHEDULE   cron expression, five fields, in the container's time (UTC unless TZ is
#                             set) (default "30 2 * * *": once a night)
#   FITPIPE_INGEST_DAYS       days each run ingests past every participant's cursor (default 1)
#   FITPIPE_DEMO              1: ingest every 2 minutes instead, to fill the dashboards quickly (default 0)
#   FITPIPE_METRICS_FILE      Prometheus textfile written by every run (default /metrics/fitpipe.prom)
#   FITPIPE_RUN_AS            the unprivileged user every fitpipe command runs as (default fitpipe,
#                             made by the Dockerfile); this script and cron stay root only to start
#                             them, hand the metrics folder and the cron environment to that user and
#                             open the container's log (/proc/1/fd/1 is root's)
#   GRAFANA_DB_PASSWORD       when set, the read-only login `grafana` is created with it
#   POSTGRES_EXPORTER_DB_PASSWORD  when set, the read-only login `postgres_exporter` is created with it
#   GRAFANA_ADMIN_PASSWORD    only checked: serve refuses the defaults (this 'admin', the database
#                             password 'fitpipe') unless FITPIPE_DEMO is on
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Where the cron job and its environment go; overridable so the tests can run this script.
CRON_FILE="${FITPIPE_CRON_FILE:-/etc/cron.d/fitpipe}"
ENV_FILE="${FITPIPE_CRON_ENV_FILE:-/etc/fitpipe/cron.env}"
JOB="$HERE/ingest-job.sh"
DEMO_SCHEDULE="*/2 * * * *"
# init-db exits with 3 while the database cannot be reached: retry that, for about two minutes.
DB_ATTEMPTS="${FITPIPE_DB_ATTEMPTS:-24}"
DB_RETRY_SECONDS=5

log() { printf '%s entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

RUN_AS="${FITPIPE_RUN_AS:-fitpipe}"
# Started as root (the default), every command drops to RUN_AS: as root, fitpipe could replace
# files such as /dev/null. Started as another user (`docker run --user`), commands run as that user.
if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv "--reuid=$RUN_AS" "--regid=$RUN_AS" --init-groups)
else
    as_user=()
fi

if [ "$#" -gt 0 ] && [ "$1" != serve ]; then
    # A program on PATH runs as given; anything else is a fitpipe subcommand.
    if [ -n "$(type -P -- "$1")" ]; then exec "${as_user[@]}" "$@"; fi
    exec "${as_user[@]}" fitpipe "$@"
fi

: "${FITPIPE_DATABASE_URL:?FITPIPE_DATABASE_URL must be set}"
FITPIPE_USERS="${FITPIPE_USERS:-3}"
FITPIPE_TIMEZONE="${FITPIPE_TIMEZONE:-UTC}"
FITPIPE_START_DATE="${FITPIPE_START_DATE:-2024-01-01}"
FITPIPE_INGEST_SCHEDULE="${FITPIPE_INGEST_SCHEDULE:-30 2 * * *}"
FITPIPE_INGEST_DAYS="${FITPIPE_INGEST_DAYS:-1}"
FITPIPE_DEMO="${FITPIPE_DEMO:-0}"
FITPIPE_METRICS_FILE="${FITPIPE_METRICS_FILE:-/metrics/fitpipe.prom}"

positive_integer() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive whole number, got '$2'"; }
positive_integer FITPIPE_USERS "$FITPIPE_USERS"
positive_integer FITPIPE_INGEST_DAYS "$FITPIPE_INGEST_DAYS"
case "$FITPIPE_DEMO" in
    1 | true | yes) schedule="$DEMO_SCHEDULE" demo=1 ;;
    0 | false | no | "") schedule="$FITPIPE_INGEST_SCHEDULE" demo=0 ;;
    *) die "FITPIPE_DEMO must be 0 or 1, got '$FITPIPE_DEMO'" ;;
esac
# Five fields (numbers, names, * , - /), or cron would only complain in a log nobody reads.
read -r -a fields <<< "$schedule"
if [ "${#fields[@]}" -ne 5 ] || ! [[ "$schedule" =~ ^[0-9A-Za-z*,/\ -]+$ ]]; then
    die "FITPIPE_INGEST_SCHEDULE must be a cron expression of five fields like '30 2 * * *', got '$schedule'"
fi
schedule="${fields[*]}"

# The compose file's defaults (database fitpipe/fitpipe, Grafana admin/admin) are public: fine for a
# demo with synthetic data, never with participants' data. Refused before the database is touched.
if [ "$demo" = 0 ]; then
    defaults=()
    if [[ "$FITPIPE_DATABASE_URL" =~ ^[a-z]+://[^:/@]*:(.*)@ ]] && [ "${BASH_REMATCH[1]}" = fitpipe ]; then
        defaults+=("FITPIPE_DB_PASSWORD (database password 'fitpipe')")
    fi
    if [ "${GRAFANA_ADMIN_PASSWORD-}" = admin ]; then defaults+=("GRAFANA_ADMIN_PASSWORD ('admin')"); fi
    if [ "${#defaults[@]}" -gt 0 ]; then
        die "default passwords outside a demo: set ${defaults[*]} to your own, or FITPIPE_DEMO=1 for synthetic data"
    fi
fi

attempt=1
while true; do
    status=0
    "${as_user[@]}" fitpipe init-db || status=$?
    [ "$status" -eq 0 ] && break
    if [ "$status" -ne 3 ] || [ "$attempt" -ge "$DB_ATTEMPTS" ]; then die "fitpipe init-db failed (exit $status)"; fi
    log "database not reachable yet (attempt $attempt of $DB_ATTEMPTS); retrying in ${DB_RETRY_SECONDS}s"
    attempt=$((attempt + 1))
    sleep "$DB_RETRY_SECONDS"
done
"${as_user[@]}" fitpipe seed-users --count "$FITPIPE_USERS" --timezone "$FITPIPE_TIMEZONE" --start-date "$FITPIPE_START_DATE"
# Grafana reads through a login of its own that can only read (fitpipe_readonly).
if [ -n "${GRAFANA_DB_PASSWORD:-}" ]; then
    FITPIPE_READER_PASSWORD="$GRAFANA_DB_PASSWORD" "${as_user[@]}" fitpipe create-reader grafana
fi
# So does postgres_exporter (profile monitoring): it counts adherence flags with fitpipe_adherence().
if [ -n "${POSTGRES_EXPORTER_DB_PASSWORD:-}" ]; then
    FITPIPE_READER_PASSWORD="$POSTGRES_EXPORTER_DB_PASSWORD" "${as_user[@]}" fitpipe create-reader postgres_exporter
fi

# cron starts jobs with an almost empty environment: the job sources this file instead. It holds
# the database URL, so only RUN_AS (the job's user) and root may read it.
mkdir -p "$(dirname "$ENV_FILE")" "$(dirname "$FITPIPE_METRICS_FILE")"
if [ "$(id -u)" -eq 0 ]; then
    # The metrics volume may come from an older image, owned by root: RUN_AS writes it now.
    chown "$RUN_AS:" "$(dirname "$FITPIPE_METRICS_FILE")"
fi
(
    umask 077
    {
        echo "# Written by $0 at $(date -u +%Y-%m-%dT%H:%M:%SZ); sourced by $JOB."
        for name in PATH TZ LANG PYTHONUNBUFFERED FITPIPE_DATABASE_URL FITPIPE_MIGRATIONS_DIR \
                    FITPIPE_INGEST_DAYS FITPIPE_METRICS_FILE; do
            if [ -n "${!name+set}" ]; then printf 'export %s=%q\n' "$name" "${!name}"; fi
        done
    } > "$ENV_FILE.tmp"
    if [ "$(id -u)" -eq 0 ]; then chown "$RUN_AS:" "$ENV_FILE.tmp"; fi
    mv "$ENV_FILE.tmp" "$ENV_FILE"
)

# /proc/1/fd/1 and 2 are the container's stdout and stderr, so `docker compose logs fitpipe` shows
# every run. Only root may open them (they are PID 1's), so the job's entry is root's: its shell
# opens the log, then setpriv runs the job, and fitpipe in it, as RUN_AS. Files in /etc/cron.d
# name the user and must not be writable by others.
mkdir -p "$(dirname "$CRON_FILE")"
cat > "$CRON_FILE.tmp" <<CRON
# Written by $0 from FITPIPE_INGEST_SCHEDULE / FITPIPE_DEMO at every start.
SHELL=/bin/bash
$schedule root setpriv --reuid=$RUN_AS --regid=$RUN_AS --init-groups $JOB $ENV_FILE >/proc/1/fd/1 2>/proc/1/fd/2
CRON
chmod 0644 "$CRON_FILE.tmp"
mv "$CRON_FILE.tmp" "$CRON_FILE"

log "ingest scheduled at '$schedule' (container time, $(date +%Z)) as $RUN_AS: fitpipe ingest --days $FITPIPE_INGEST_DAYS, metrics in $FITPIPE_METRICS_FILE"
exec cron -f
