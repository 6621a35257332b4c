#!/usr/bin/env bash
# Set up (idempotent), then the embedded default image: built into the store on first use from the
# host's busybox-static, its history, and a container on it (overlay, new namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minirun=.venv/bin/minirun
set -x
"$minirun" history busybox
"$minirun" images
"$minirun" run --rm busybox sh -c 'echo "hello from $(hostname), PID $$, $(ls /sys/class/net) only"'
