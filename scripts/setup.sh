#!/usr/bin/env bash
# Install everything forgetflow needs, from nothing, idempotently:
#   Debian package dataset-fashion-mnist (offline Fashion-MNIST), a virtualenv in .venv,
#   PostgreSQL (scale-out tests), torch/torchvision pinned by constraints.txt, and the project
#   with its test and scale-out extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "[setup] apt-get install dataset-fashion-mnist"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "[setup] no apt-get: Fashion-MNIST must be provided with --path (digits needs nothing)" >&2
    fi
fi

# PostgreSQL server binaries for the scale-out tests (Prefect and MLflow servers on PostgreSQL);
# those tests skip without them.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] apt-get install postgresql (scale-out tests)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
        || echo "[setup] postgresql not installed: the PostgreSQL tests will be skipped" >&2
fi

# Headless Chromium for the audit report's browser check (tests/test_auditor_view.py); that
# test skips without it.
if ! command -v chromium-headless-shell >/dev/null 2>&1 && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] apt-get install chromium-headless-shell (audit report browser check)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null \
        || echo "[setup] chromium-headless-shell not installed: the report's browser check will be skipped" >&2
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PYTHON" -m venv .venv
fi
STAMP=.venv/.forgetflow-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
    echo "[setup] installing forgetflow and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,scale-out]"
    touch "$STAMP"
fi
