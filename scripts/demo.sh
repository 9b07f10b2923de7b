#!/usr/bin/env bash
# The whole pipeline on a fresh machine: install, start TimescaleDB, then
# init-db -> seed-users -> backfill (rollups refresh at its end) -> status -> impute -> export -> adherence,
# then a participant whose phone syncs 30 hours late, over three simulated nights: the newest day
# loads as provisional and is fetched again until it settles as complete.
# Safe to re-run: every step is idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
scripts/dev-db.sh start
export FITPIPE_DATABASE_URL="${FITPIPE_DATABASE_URL:-$(scripts/dev-db.sh url)}"
fitpipe=.venv/bin/fitpipe
step() { printf '\n\033[1m$ fitpipe %s\033[0m\n' "$*"; "$fitpipe" "$@"; }

step init-db
step seed-users --count 3 --timezone America/New_York --start-date 2024-03-01
step backfill --start 2024-03-01 --end 2024-03-14 --workers 2
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
