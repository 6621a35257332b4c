#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite as root. pytest's exit 5 ("no tests ran") fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q "$@"
