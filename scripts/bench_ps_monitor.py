#!/usr/bin/env python3
"""Two figures of the detached-containers issue, measured in one run:

1. monitor memory per detached container: RSS and PSS (shared pages split among sharers, the
   fairer figure for N alike processes) of minirun's monitors, beside podman's conmon for the same
   number of `sleep` containers when podman is installed;
2. `ps` and `ps -a` with 100 containers (`--monitored` of them running, the rest exited), paired
   A B A B with `podman ps` on as many podman containers in the same states: medians and the
   median of the pair-by-pair ratios (the issue's target: <= 1.0x docker, whose engine these
   machines do not run: PEERS.md has its figure, 43 ms).

    .venv/bin/python scripts/bench_ps_monitor.py [--containers 100] [--monitored 10] [--runs 21]

minirun's modules are byte-compiled first (with PYTHONDONTWRITEBYTECODE set, as on these machines,
every start would compile them again, which no installed minirun does), and the records are left to
settle (2 s) before ps is timed, as ps caches only records older than that (containers/listindex.py).

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
from benchenv import minirun_command, own_blob_cache, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PODMAN = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
PODMAN_RUN = ["--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


def minirun(root: str, *args: str) -> str:
    return subprocess.run(
        [*minirun_command(), "--root", root, *args], check=True, capture_output=True, text=True
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


def wall_s(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def paired(a: list[str], b: list[str] | None, runs: int) -> tuple[float, float | None, float | None]:
    """A B A B ... after one untimed run of each: (A's median ms, B's, the median of A/B taken
    pair by pair); B's figures None when there is no B."""
    wall_s(a)
    if b:
        wall_s(b)
    times_a, times_b, ratios = [], [], []
    for _ in range(runs):
        times_a.append(wall_s(a))
        if b:
            times_b.append(wall_s(b))
            ratios.append(times_a[-1] / times_b[-1])
    if not b:
        return statistics.median(times_a) * 1000, None, None
    return statistics.median(times_a) * 1000, statistics.median(times_b) * 1000, statistics.median(ratios)


class Podman:
    """podman on a root of its own under the work dir: the peer of both figures."""

    def __init__(self, work: str, runtime: str | None) -> None:
        self.work = work
        self.roots = [os.path.join(work, "p-root"), os.path.join(work, "p-run")]
        self.base = [*PODMAN[:1], "--root", self.roots[0], "--runroot", self.roots[1], *PODMAN[1:]]
        self.base += runtime_option(runtime, Path(work) / "p-runtime")

    def import_busybox(self) -> None:
        tar = os.path.join(self.work, "busybox.tar")
        with open(tar, "wb") as out:
            subprocess.run([sys.executable, str(REPO / "images/busybox/rootfs.py")], stdout=out, check=True)
        subprocess.run(own_blob_cache([*self.base, "import", tar, "bench-busybox"]), check=True, capture_output=True)

    def run(self, count: int, *command: str, detached: bool = False) -> None:
        for _ in range(count):
            subprocess.run(
                [*self.base, "run", *(["-d"] if detached else []), *PODMAN_RUN, "bench-busybox", *command],
                check=True,
                capture_output=True,
            )

    def conmon_memory(self) -> tuple[float, float] | None:
        """Mean (RSS, PSS) KiB of this run's conmons."""
        found = subprocess.run(["pgrep", "-f", f"conmon.*{self.work}"], capture_output=True, text=True).stdout
        figures = [memory_kib(int(p)) for p in found.split()]
        if not figures:
            return None
        return statistics.mean(f[0] for f in figures), statistics.mean(f[1] for f in figures)

    def forget(self) -> None:
        forget_podman(self.base, self.roots)


def monitor_pss(root: str, ids: list[str]) -> float:
    """PSS KiB of the processes that monitor `ids` (each counted once)."""
    pids = {json.load(open(os.path.join(root, "containers", i, "state.json")))["MonitorPid"] for i in ids}
    return sum(memory_kib(p)[1] for p in pids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--monitored", type=int, default=10)
    parser.add_argument("--runs", type=int, default=21)
    add_mount_flag(parser)
    args = parser.parse_args()
    side_before = side_paths_present()  # podman's own state outside our dirs, if this run makes it
    work = tempfile.mkdtemp(prefix="minirun-bench-ps-", dir="/var/tmp")
    root = os.path.join(work, "store")
    names = private_names(work)  # before the first minirun
    hybrid_fix: list[tuple[str, bool]] = []
    podman: Podman | None = None
    try:
        # the monitors' server (containers/monitorserver.py) monitors every detached container of
        # the store in a thread: its PSS with one container is the fixed cost, and what N more add
        # is the cost per container; the figure to set beside conmon is its PSS over N
        first = minirun(root, "run", "-d", "busybox", "sleep", "1000").strip()
        time.sleep(1)  # the launcher, a throwaway fork, is gone
        one = monitor_pss(root, [first])
        ids = [first] + [
            minirun(root, "run", "-d", "busybox", "sleep", "1000").strip() for _ in range(args.monitored - 1)
        ]
        time.sleep(1)
        monitors = {json.load(open(os.path.join(root, "containers", i, "state.json")))["MonitorPid"] for i in ids}
        figures = [memory_kib(p) for p in monitors]
        rss, pss = sum(f[0] for f in figures), sum(f[1] for f in figures)
        hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
        conmon = None
        if shutil.which("podman"):
            podman = Podman(work, runtime)
            podman.import_busybox()
            podman.run(args.monitored, "sleep", "1000", detached=True)
            conmon = podman.conmon_memory()
        n = len(ids)
        print(f"monitor memory per detached container ({n} running, from smaps_rollup):")
        print(
            f"  minirun monitors: {len(monitors)} process(es), RSS {rss / 1024:5.1f} MiB, PSS {pss / 1024:5.1f} MiB in all"
        )
        print(f"  minirun per container: PSS {pss / n / 1024:5.2f} MiB   (target PSS <= 1.0 MiB)")
        print(
            f"  with 1 container: PSS {one / 1024:5.2f} MiB; each more adds {(pss - one) / max(n - 1, 1) / 1024:5.2f} MiB"
        )
        if conmon:
            print(f"  podman conmon     RSS {conmon[0] / 1024:5.1f} MiB   PSS {conmon[1] / 1024:5.1f} MiB")
        else:
            print("  podman conmon     not installed")
        print("  docker containerd-shim: no docker engine on these machines (PEERS.md: 14.6 MB)")
        # fill up to N containers: the rest exited, as a real host has both kinds
        for _ in range(args.containers - args.monitored):
            minirun(root, "run", "busybox", "true")
        if podman:
            podman.run(args.containers - args.monitored, "true")
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "minirun")], check=True)
        from minirun.containers.listindex import SETTLED_NS  # here: after private_names, as benchenv asks

        # ps reads a record written in the last SETTLED_NS from its files, not from its index: the
        # last containers made above are that young, a host's are not (the first ps then caches them)
        time.sleep(SETTLED_NS / 1e9)
        ps = [*minirun_command(), "--root", root, "ps"]
        print(f"`ps` with {args.containers} containers ({args.monitored} running), {args.runs} pairs A B A B:")
        for extra in ([], ["-a"]):
            mine, peer, ratio = paired(ps + extra, [*podman.base, "ps", *extra] if podman else None, args.runs)
            line = f"  minirun ps{' -a' if extra else '   '} {mine:6.1f} ms"
            if peer is not None:
                line += f"   podman {peer:6.1f} ms   ratio {ratio:.2f} (median of pairs)"
            print(line)
        print("  docker ps: no docker engine on these machines (PEERS.md: 43 ms with 100 running containers)")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"command failed: {exc.cmd}: {exc.stderr}", file=sys.stderr)
        return 1
    finally:
        if podman:
            podman.forget()
        unfix_hybrid_cgroups(hybrid_fix)
        for line in subprocess.run(
            [*minirun_command(), "--root", root, "ps", "-a", "-q", "--no-trunc"],
            capture_output=True,
            text=True,
        ).stdout.split():
            subprocess.run([*minirun_command(), "--root", root, "rm", "-f", line], capture_output=True)
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        remove_side_paths(side_before)


if __name__ == "__main__":
    sys.exit(main())
