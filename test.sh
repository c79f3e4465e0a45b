#!/usr/bin/env bash
# Sets everything up (same as demo.sh, without the demo) and runs all tests.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
# Lint and format gate first: a change that does not pass it does not land.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "$@"
