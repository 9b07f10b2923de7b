#!/usr/bin/env bash
# The one test command: a venv, the project with its test extras, the local TimescaleDB, pytest.
# `scripts/test.sh --fast [pytest args]` leaves out the tests marked slow (a quick check while
# working); without it, the full suite runs, as CI runs it. Other arguments go to pytest.
set -euo pipefail
args=()
for arg in "$@"; do
    if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
scripts/dev-db.sh start
scripts/test-tools.sh
set +e
.venv/bin/python -m pytest "${args[@]}"
code=$?
set -e
# pytest's 5 means no test ran: that is not a pass.
if [ "$code" -eq 5 ]; then echo "test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$code"
