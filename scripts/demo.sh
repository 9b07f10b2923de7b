#!/usr/bin/env bash
# The whole pipeline on a fresh machine: install, start TimescaleDB, then
# init-db -> seed-users -> backfill (rollups refresh at its end) -> status -> impute -> export -> adherence,
# then a participant whose phone syncs 30 hours late, over three simulated nights: the newest day
# loads as provisional and is fetched again until it settles as complete,
# then the Google Health API path against fitpipe's local stand-in for the API (no Google project):
# enrol a participant without a browser, ingest a day, status.
# Safe to re-run: every step is idempotent.
# FITPIPE_DEV_DB_SKIP=1 uses the database FITPIPE_DATABASE_URL names instead of starting scripts/dev-db.sh's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
[ -n "${FITPIPE_DEV_DB_SKIP:-}" ] || scripts/dev-db.sh start
export FITPIPE_DATABASE_URL="${FITPIPE_DATABASE_URL:-$(scripts/dev-db.sh url)}"
fitpipe=.venv/bin/fitpipe
step() { printf '\n\033[1m$ fitpipe %s\033[0m\n' "$*"; "$fitpipe" "$@"; }

step init-db
step seed-users --count 3 --timezone America/New_York --start-date 2024-03-01
# Participants 1-3 only: on a re-run, participant 5 (google-health, below) is enrolled too.
step backfill --start 2024-03-01 --end 2024-03-14 --workers 2 --user 1 --user 2 --user 3
step status
step aggregate refresh
step impute --method profile --max-gap 2h
mkdir -p out
step export --metric heart_rate --resolution 1h --with-imputed --tz local --output out/heart_rate_1h.csv
head -n 5 out/heart_rate_1h.csv
step export --metric heart_rate --user 1 --start 2024-03-10 --end 2024-03-10 --max-rows 5000 --output out/heart_rate_dst_day.csv
step export --metric daily_activity --output out/daily_activity.csv
step adherence

# A real device syncs late. Participant 4's phone is 30 hours behind; FITPIPE_TODAY simulates
# three nightly cron runs. Watch 2024-03-03 go provisional -> (unchanged) -> complete.
step participants add 4 --source synthetic --timezone Europe/Berlin --study-start 2024-03-01 --setting sync_lag_hours=30
for today in 2024-03-05 2024-03-05 2024-03-06; do
    printf '\n\033[1m# nightly run, today = %s\033[0m\n' "$today"
    FITPIPE_TODAY=$today "$fitpipe" ingest --days 4 --user 4
done
step status --user 4

# The Google Health API path, against the local stand-in (python -m fitpipe.sources.google_health.standin) on a
# free loopback port: its accounts' data comes from the synthetic generator, its OAuth endpoints
# consent at once. Each run starts a fresh stand-in (new OAuth client, new tokens) and a fresh
# secret key, and `fitpipe enroll` renews participant 5's consent, so a re-run works the same.
health=$(mktemp -d)
: >"$health/server.log"; : >"$health/enroll.log"  # there before the background jobs open them
health_pid=""
enroll_pid=""
stop_health() {
    [ -z "$enroll_pid" ] || kill "$enroll_pid" 2>/dev/null || true
    [ -z "$health_pid" ] || kill "$health_pid" 2>/dev/null || true
    [ -z "$health_pid" ] || wait "$health_pid" 2>/dev/null || true
    rm -rf "$health"
}
trap stop_health EXIT
printf '\n\033[1m$ python -m fitpipe.sources.google_health.standin --port 0 --participants 1 --client-secrets %s/client_secret.json &\033[0m\n' "$health"
.venv/bin/python -m fitpipe.sources.google_health.standin --port 0 --participants 1 \
    --client-secrets "$health/client_secret.json" >"$health/server.log" 2>&1 &
health_pid=$!
api_url=""
for _ in $(seq 600); do  # up to a minute for the stand-in to import Google's client and listen
    api_url=$(sed -nE 's#^Google Health API stand-in on (http://127\.0\.0\.1:[0-9]+) .*#\1#p' "$health/server.log")
    [ -n "$api_url" ] && break
    kill -0 "$health_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$api_url" ] || { cat "$health/server.log" >&2; echo "demo: the Google Health API stand-in did not start" >&2; exit 1; }
cat "$health/server.log"
export FITPIPE_HEALTH_API_URL="$api_url" FITPIPE_GOOGLE_CLIENT_SECRETS="$health/client_secret.json"
FITPIPE_SECRET_KEY=$("$fitpipe" secrets new-key)
export FITPIPE_SECRET_KEY

# `enroll --no-browser` prints the consent URL and waits on a loopback port; opening the URL (as the
# participant's browser would) makes the stand-in consent and redirect back to fitpipe.
printf '\n\033[1m$ fitpipe enroll --user 5 --timezone America/New_York --study-start 2024-03-04 --no-browser\033[0m\n'
"$fitpipe" enroll --user 5 --timezone America/New_York --study-start 2024-03-04 --no-browser >"$health/enroll.log" 2>&1 &
enroll_pid=$!
consent_url=""
for _ in $(seq 600); do
    consent_url=$(grep -m1 '^http://' "$health/enroll.log" || true)
    [ -n "$consent_url" ] && break
    kill -0 "$enroll_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$consent_url" ] || { cat "$health/enroll.log" >&2; echo "demo: fitpipe enroll printed no consent URL" >&2; exit 1; }
.venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=60).read()' "$consent_url"
wait "$enroll_pid" || { cat "$health/enroll.log" >&2; echo "demo: fitpipe enroll failed" >&2; exit 1; }
enroll_pid=""
cat "$health/enroll.log"
printf '\n\033[1m# nightly run, today = 2024-03-05\033[0m\n'
FITPIPE_TODAY=2024-03-05 "$fitpipe" ingest --days 1 --user 5
step status --user 5

# Last, the study's web page on the demo's data: cohort, participants (participant 1's spring-forward
# day is 23 hours), pipeline. Loopback only; Ctrl-C stops it. FITPIPE_DEMO_SERVE=0 ends the demo here
# instead (scripts, CI); FITPIPE_DEMO_PORT picks another port.
stop_health
trap - EXIT
if [ "${FITPIPE_DEMO_SERVE:-1}" != 0 ]; then
    port="${FITPIPE_DEMO_PORT:-8050}"
    printf '\n\033[1m$ fitpipe serve --port %s\033[0m\n' "$port"
    printf 'Open http://127.0.0.1:%s/ (participant 1 on the DST day: http://127.0.0.1:%s/participants/1?start=2024-03-10&end=2024-03-10)\n' "$port" "$port"
    "$fitpipe" serve --port "$port"
fi
