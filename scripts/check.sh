#!/usr/bin/env bash
# The quality gate: ruff lint and format on src, tests and benchmarks, mypy on src (settings in
# pyproject.toml). Runs every step, prints one line per failing step (the tools' own findings
# above it), and exits non-zero when any step failed.
# Usage: scripts/check.sh [PATH...]   (ruff's paths; default: src tests benchmarks)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
paths=("$@")
if [ "${#paths[@]}" -eq 0 ]; then paths=(src tests benchmarks); fi
failed=()
step() {
    local name="$1"
    shift
    "$@" || failed+=("$name")
}
step "ruff check (lint) on ${paths[*]}" .venv/bin/ruff check "${paths[@]}"
step "ruff format --check on ${paths[*]}" .venv/bin/ruff format --check "${paths[@]}"
step "mypy on src/fitpipe" .venv/bin/mypy src/fitpipe
for name in "${failed[@]}"; do echo "check.sh: FAILED: $name" >&2; done
if [ "${#failed[@]}" -gt 0 ]; then exit 1; fi
echo "check.sh: ruff, ruff format and mypy are clean"
