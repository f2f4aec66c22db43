#!/usr/bin/env bash
# One command for the test suite: install what is missing, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers, one test file each at a time (a file's tests share module fixtures and run in
# order), in collection order: conftest puts the real-servers module, the longest, first. The
# suite is half waiting on subprocesses and servers, so two workers on two cores take about 0.6 of
# the serial time (9.2-9.9 min against 14.3-16.1 on the same VM, 2026-12-03). `-n 0` after the command runs it serially.
exec .venv/bin/python -m pytest -n "${FORGETFLOW_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
