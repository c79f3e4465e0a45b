#!/usr/bin/env bash
# Sets everything up (same as demo.sh, without the demo) and runs all tests.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
