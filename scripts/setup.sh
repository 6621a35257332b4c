#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 / Ubuntu machine, as root: system packages, a virtual
# environment in .venv (system pip refuses installs under PEP 668), and minirun itself.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

# nftables: `-p` publishes ports with DNAT rules in minirun's own table
packages=(busybox-static libcap-dev python3-venv python3-dev gcc nftables tini)
if [[ "${1:-}" == "--test" ]]; then
  # peers the interoperability tests run: archives (podman with runc, skopeo), a registry
  # (distribution); libc6-dev for the static probe the containment tests build; containerd
  # (1.6, with ctr and its runc shim) runs minirun-oci as its runtime (tests/e2e/test_oci_containerd.py)
  packages+=(zstd xz-utils skopeo podman runc docker-registry openssl libc6-dev containerd)
  # crun: the start and exec benchmarks' second OCI runtime beside runc (scripts/bench_start.py);
  # the tests run podman with runc (tests/e2e/test_load_save.py says why)
  packages+=(crun)
  # docker-compose 1.29 (Debian's, on the system python3 and its python3-docker): the Engine
  # API's compose test drives it; --no-install-recommends keeps docker.io's daemon out
  packages+=(docker-compose)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The system interpreter, not a pyenv shim: the shim costs 0.2 s on every start.
if [[ ! -x .venv/bin/python ]]; then
  /usr/bin/python3 -m venv .venv
fi
extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"
stamp=".venv/.installed${extra}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  # compat mode: a plain path in a .pth file; the default import-hook finder costs ~13 ms per start
  .venv/bin/pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".${extra}"
  touch "$stamp"
fi
# The docker CLI the Engine API's tests drive (tests/e2e/test_engine_api.py): Debian's docker.io
# client, taken out of its package, never installed: its postinst would start dockerd.
if [[ "${1:-}" == "--test" && ! -x .venv/docker/docker ]]; then
  cache=.venv/docker/deb
  mkdir -p "$cache"
  (cd "$cache" && { apt-get download -qq docker.io 2>/dev/null || { apt-get update -qq && apt-get download -qq docker.io 2>/dev/null; }; })
  rm -rf "$cache/x"
  dpkg -x "$cache"/docker.io_*.deb "$cache/x"
  cp "$cache/x/usr/bin/docker" .venv/docker/docker
  rm -rf "$cache"
fi
# Byte-compile now: with PYTHONDONTWRITEBYTECODE set (as on these machines) every start would
# otherwise recompile minirun's modules, ~13 ms of each `run`.
.venv/bin/python -m compileall -q minirun images >/dev/null
# and the dependencies': pip leaves some uncompiled (python-prctl's setup.py install writes no
# .pyc), and PID 1 of every container compiled prctl.py anew, ~4 ms of each start
.venv/bin/python -m compileall -q "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null
# Our own `minirun` over pip's: `python -S -P`, ~15 ms less of every verb (minirun/launcher.py)
.venv/bin/python -m minirun.launcher .venv/bin/minirun
.venv/bin/python -m minirun.launcher .venv/bin/minirun-oci minirun.oci.main

# `minirun` by name, with bash completion: for the machine's user, so the plain set-up only (a
# test run's clone must not take over the host's command; it calls .venv/bin/minirun itself)
if [[ "${1:-}" != "--test" ]]; then
  ln -sfn "$PWD/.venv/bin/minirun" /usr/local/bin/minirun
  if [[ -d /etc/bash_completion.d ]]; then
    .venv/bin/minirun completion bash >/etc/bash_completion.d/minirun
  fi
fi
