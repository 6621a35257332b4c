#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite as root. pytest's exit 5 ("no tests ran") fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# The gates first: lint, format and types (their settings are in pyproject.toml).
.venv/bin/ruff check minirun tests scripts images
.venv/bin/ruff format --check minirun tests scripts images
.venv/bin/mypy
# A failed test gets one more try: tests here start real containers on a shared 2-core VM, and a
# rare timing flake must not hide the rest. A rerun is printed as RERUN in the summary (-r R), so a
# flaky test stays visible; a test that fails twice fails the run.
exec .venv/bin/python -m pytest -q --reruns 1 --reruns-delay 1 -r fER "$@"
