#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite as root. pytest's exit 5 ("no tests ran") fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# The gates first: lint, format and types (their settings are in pyproject.toml).
.venv/bin/ruff check minirun tests scripts images
.venv/bin/ruff format --check minirun tests scripts images
.venv/bin/mypy
# The architecture: layers one way, no cycles (the contracts are in pyproject.toml).
.venv/bin/lint-imports --no-cache
# No reruns: a flaky test is fixed, or marked with its reason. `-m "not slow"`, `-m "not peers"`
# pick a quicker subset (the markers are in pyproject.toml).
# Four pytest-xdist workers on two cores: the tests wait on containers, CLIs and the disk as much
# as they compute (measured: -n 2 about 9 min, -n 4 about 6 min). `--maxschedchunk 2` hands tests out
# two at a time, so the slow ones, which tests/conftest.py puts first, start side by side. `-n 0`
# after it runs serially.
# pytest keeps the test modules it rewrote for its asserts only where bytecode may be written;
# with PYTHONDONTWRITEBYTECODE set (as on these machines) each worker recompiled every one of
# them (~5 s of CPU each). One collection first writes them, for the four workers to read.
unset PYTHONDONTWRITEBYTECODE
.venv/bin/python -m pytest -q --collect-only -p no:cacheprovider -n 0 >/dev/null || true  # errors: the run says
exec .venv/bin/python -m pytest -q -r fE -n 4 --maxschedchunk 2 "$@"
