#!/usr/bin/env bash
# Set up (idempotent) and show the embedded default image: built into the store on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minirun=.venv/bin/minirun
set -x
"$minirun" history busybox
"$minirun" images
