#!/usr/bin/env bash
# One scheduled ingest, started by cron with the environment file that entrypoint.sh wrote:
#
#   ingest-job.sh /etc/fitpipe/cron.env
#
# A run still going when the next one is due makes the next one skip (fitpipe would skip its
# user-days anyway, as held by another run). Output goes wherever cron sends it: the container log.
set -uo pipefail

ENV_FILE="${1:-/etc/fitpipe/cron.env}"
# shellcheck source=/dev/null
. "$ENV_FILE" || { echo "ingest-job: cannot read $ENV_FILE" >&2; exit 1; }
LOCK_FILE="${FITPIPE_INGEST_LOCK:-/tmp/fitpipe-ingest.lock}"

log() { printf '%s ingest-job: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

exec 9> "$LOCK_FILE"
if ! flock -n 9; then
    log "the previous ingest is still running; skipping this one"
    exit 0
fi

log "fitpipe ingest --days $FITPIPE_INGEST_DAYS started"
started=$SECONDS
fitpipe ingest --days "$FITPIPE_INGEST_DAYS" --quiet --metrics-file "$FITPIPE_METRICS_FILE"
status=$?
log "fitpipe ingest finished with exit status $status after $((SECONDS - started))s"
exit "$status"
