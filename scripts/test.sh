#!/usr/bin/env bash
# One command for the test suite: install what is missing, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
