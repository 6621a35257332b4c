#!/usr/bin/env python3
"""Two figures of the detached-containers issue, measured in one run:

1. monitor memory per detached container: RSS and PSS (shared pages split among sharers, the
   fairer figure for N alike processes) of minirun's monitors, beside podman's conmon for the same
   number of `sleep` containers when podman is installed;
2. `ps` with 100 containers: median wall time of `minirun ps` and `minirun ps -a` (target <= 150 ms).

    .venv/bin/python scripts/bench_ps_monitor.py [--containers 100] [--monitored 10] [--runs 10]

minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end;
podman's import runs with a blob-info cache of its own, never the host's (tests/peers.py).

A measurement, not a test: exits 0 whatever the figures, non-zero only if a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (the script's own directory, put on the path just above)
    add_mount_flag,
    forget_podman,
    podman_peer,
    remove_side_paths,
    runtime_option,
    side_paths_present,
    unfix_hybrid_cgroups,
)
from benchenv import own_blob_cache, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PODMAN = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
PODMAN_RUN = ["--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def minirun(root: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "minirun", "--root", root, *args], check=True, capture_output=True, text=True
    ).stdout


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/PID/smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def median_ms(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def podman_conmon(work: str, count: int, runtime: str | None) -> tuple[float, float] | None:
    if not shutil.which("podman"):
        return None
    roots = [os.path.join(work, "p-root"), os.path.join(work, "p-run")]
    base = [*PODMAN[:1], "--root", roots[0], "--runroot", roots[1], *PODMAN[1:], *runtime_option(runtime)]
    tar = os.path.join(work, "busybox.tar")
    with open(tar, "wb") as out:
        subprocess.run([sys.executable, str(REPO / "images/busybox/rootfs.py")], stdout=out, check=True)
    try:
        subprocess.run(own_blob_cache([*base, "import", tar, "bench-busybox"]), check=True, capture_output=True)
        for _ in range(count):
            subprocess.run(
                [*base, "run", "-d", *PODMAN_RUN, "bench-busybox", "sleep", "1000"], check=True, capture_output=True
            )
        pids = [
            int(p)
            for p in subprocess.run(["pgrep", "-f", f"conmon.*{work}"], capture_output=True, text=True).stdout.split()
        ]
        if not pids:
            return None
        figures = [memory_kib(p) for p in pids]
        return statistics.mean(f[0] for f in figures), statistics.mean(f[1] for f in figures)
    finally:
        forget_podman(base, roots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--monitored", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    add_mount_flag(parser)
    args = parser.parse_args()
    side_before = side_paths_present()  # podman's own state outside our dirs, if this run makes it
    work = tempfile.mkdtemp(prefix="minirun-bench-ps-", dir="/var/tmp")
    root = os.path.join(work, "store")
    names = private_names(work)  # before the first minirun
    try:
        ids = [minirun(root, "run", "-d", "busybox", "sleep", "1000").strip() for _ in range(args.monitored)]
        monitors = [json.load(open(os.path.join(root, "containers", i, "state.json")))["MonitorPid"] for i in ids]
        figures = [memory_kib(p) for p in monitors]
        rss, pss = statistics.mean(f[0] for f in figures), statistics.mean(f[1] for f in figures)
        hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
        try:
            conmon = podman_conmon(work, args.monitored, runtime)
        finally:
            unfix_hybrid_cgroups(hybrid_fix)
        print(f"monitor memory per detached container (mean of {args.monitored}, from smaps_rollup):")
        print(f"  minirun monitor   RSS {rss / 1024:5.1f} MiB   PSS {pss / 1024:5.1f} MiB   (target RSS <= 10 MB)")
        if conmon:
            print(f"  podman conmon     RSS {conmon[0] / 1024:5.1f} MiB   PSS {conmon[1] / 1024:5.1f} MiB")
        else:
            print("  podman conmon     not installed")
        print("  docker containerd-shim: no docker engine on these machines (PEERS.md: 14.6 MB)")
        # fill up to N containers: the rest exited, as a real host has both kinds
        for _ in range(args.containers - args.monitored):
            minirun(root, "run", "busybox", "true")
        ps = [sys.executable, "-m", "minirun", "--root", root, "ps"]
        running = median_ms(ps, args.runs)
        every = median_ms(ps + ["-a"], args.runs)
        print(f"`ps` with {args.containers} containers ({args.monitored} running), median of {args.runs}:")
        print(f"  ps      {running:6.1f} ms")
        print(f"  ps -a   {every:6.1f} ms   (target <= 150 ms)")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"command failed: {exc.cmd}: {exc.stderr}", file=sys.stderr)
        return 1
    finally:
        for line in subprocess.run(
            [sys.executable, "-m", "minirun", "--root", root, "ps", "-a", "-q", "--no-trunc"],
            capture_output=True,
            text=True,
        ).stdout.split():
            subprocess.run([sys.executable, "-m", "minirun", "--root", root, "rm", "-f", line], capture_output=True)
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        remove_side_paths(side_before)


if __name__ == "__main__":
    sys.exit(main())
