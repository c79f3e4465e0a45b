#!/usr/bin/env bash
# Sets everything up and runs the main job on the embedded default pool.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/python -m coppice.demo "$@"
