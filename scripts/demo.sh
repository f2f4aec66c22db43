#!/usr/bin/env bash
# One command for the demo: install what is missing, then run forgetflow's demo on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/forgetflow demo "$@"
