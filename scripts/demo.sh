#!/usr/bin/env bash
# Set up (idempotent), then the seed's walkthrough on the embedded default image: build an image
# of three layers, see its history, read a file from the topmost layer, run it detached, change
# it, see the change from the container's thin writable layer, and see what is stored once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minirun=.venv/bin/minirun
"$minirun" rm -f myapp myapp2 myapp3 >/dev/null 2>&1 || true  # a previous demo's containers
set -x
"$minirun" build -t myapp:1.0 images/myapp
"$minirun" history myapp:1.0
"$minirun" run --rm myapp:1.0 cat /etc/config.yaml
"$minirun" run -d --name myapp myapp:1.0
"$minirun" exec myapp sh -c "echo data > /tmp/file.txt"
"$minirun" diff myapp
"$minirun" run -d --name myapp2 myapp:1.0
"$minirun" run -d --name myapp3 myapp:1.0
"$minirun" ps
"$minirun" system df -v
"$minirun" rm -f myapp myapp2 myapp3
