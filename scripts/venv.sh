# Sourced by test.sh and demo.sh: create .venv when missing and install the project into it.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import fitpipe, pytest, wearipedia, ruff, mypy" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.fitpipe-installed ] || [ constraints.txt -nt .venv/.fitpipe-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    # constraints.txt pins the versions tested here; without it pip backtracks for minutes
    # through wearipedia's loose requirements.
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
    touch .venv/.fitpipe-installed
fi
