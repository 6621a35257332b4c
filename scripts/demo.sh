#!/usr/bin/env bash
# Set up (idempotent), then the seed's walkthrough on the embedded default image: build an image
# of three layers, see its history, read a file from the topmost layer, run it detached, change
# it, see the change from the container's thin writable layer, and see what is stored once.
# Then one service container: a web server serving a named volume, with a health check and a
# restart policy that brings it back when its server dies.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
minirun=.venv/bin/minirun
"$minirun" rm -f myapp myapp2 myapp3 web >/dev/null 2>&1 || true  # a previous demo's containers
"$minirun" volume rm site >/dev/null 2>&1 || true
await_web() {  # FORMAT VALUE: poll `inspect -f FORMAT web` until it prints VALUE (30 s at most)
    { set +x; } 2>/dev/null
    for _ in $(seq 60); do
        [ "$("$minirun" inspect -f "$1" web 2>/dev/null)" = "$2" ] && { set -x; return 0; }
        sleep 0.5
    done
    echo "demo: web never reached '$2'" >&2
    return 1
}
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
# the service: httpd under a shell, so that killing httpd ends the container and the policy restarts it
"$minirun" volume create site
"$minirun" run -d --name web -p 127.0.0.1:8080:80 -v site:/www --restart on-failure:3 \
    --health-cmd 'wget -q -O /dev/null http://127.0.0.1/' --health-interval 1s --health-retries 2 \
    busybox sh -c 'httpd -f -p 80 -h /www; exit 1'
"$minirun" exec web sh -c 'echo "hello from the volume site" > /www/index.html'
await_web '{{.State.Health.Status}}' healthy
"$minirun" ps --filter name=web
busybox wget -q -O - http://127.0.0.1:8080/
"$minirun" exec web sh -c 'kill $(pidof httpd)'   # the server dies; on-failure restarts the container
await_web '{{.RestartCount}} {{.State.Status}}' "1 running"
await_web '{{.State.Health.Status}}' healthy
"$minirun" inspect -f 'restarts: {{.RestartCount}}, health: {{.State.Health.Status}}' web
busybox wget -q -O - http://127.0.0.1:8080/   # the same volume, served again
"$minirun" rm -f web
"$minirun" volume rm site
