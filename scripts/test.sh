#!/usr/bin/env bash
# The whole set-up and test run on a fresh Debian 12 machine with Python 3.11: system packages,
# a virtualenv in .venv with the test dependencies, then pytest (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
