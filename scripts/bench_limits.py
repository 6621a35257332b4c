#!/usr/bin/env python3
"""Benchmark what resource limits cost a container start: minirun and podman, each with and without
`--memory 64m --pids-limit 100 --cpus 1 --cpu-shares 512`, in one run; plus minirun's own cgroup work.

    .venv/bin/python scripts/bench_limits.py [--runs 20]

Timed (wall time of one command from this process, interleaved round-robin so noise hits all alike):
  - `minirun run --rm --network none busybox true` (every minirun container has its own cgroups,
    limits or not) and the same with the limits; a fresh store (`--root`) built by a first untimed run.
  - podman's `run --rm --network none` on the same busybox tar, with and without the limits
    (cgroupfs manager, cgroups under a parent of this benchmark's own; see scripts/bench_start.py).
  - minirun's cgroup work alone, in this process: cgroups.create (mkdir in every hierarchy, limits
    written), a forked child's cgroups.join, and cgroups.remove after it exits; plus the same with
    the child joining through cgroup.procs (the kernel's global lock and its RCU grace period) to
    show what writing `tasks` saves on v1.
Everything created is removed at the end (containers, cgroups, temp dirs); the leftovers line says so.
minirun runs with host-wide names of this run's own (scripts/benchenv.py), here and in this process
(the cgroup work goes under this run's cgroup parent), removed at the end; podman's import runs
with a blob-info cache of its own, never the host's (tests/peers.py).
Shares its helpers with scripts/bench_start.py. Run as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (the script's own directory, put on the path just above)
    CommandFailed,
    Podman,
    Tool,
    add_mount_flag,
    cgroup_dirs,
    cleanup_tools,
    defer_signals,
    minirun_env,
    podman_peer,
    prepare_rootfs,
    prepare_tools,
    remove_temp_dir,
    time_round_robin,
    unfix_hybrid_cgroups,
    version,
)
from benchenv import minirun_command, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LIMITS = ["--memory", "64m", "--pids-limit", "100", "--cpus", "1", "--cpu-shares", "512"]


class Minirun(Tool):
    def __init__(self, root: Path, limits: bool):
        args = ["run", "--rm", "--network", "none", *(LIMITS if limits else []), "busybox", "true"]
        super().__init__(
            "minirun run --rm" + (" + limits" if limits else ""),
            [*minirun_command(), "--root", str(root), *args],
            env=minirun_env(),
        )

    def prepare(self) -> None:
        for _ in range(2):  # the first run builds the busybox image; then a warm-up
            self.once(-1)


class PodmanLimits(Tool):
    """podman's command with the limits, on the storage the plain Podman tool prepared."""

    def __init__(self, plain: Podman):
        cmd = list(plain.cmd)
        cmd[-2:-2] = LIMITS
        super().__init__(plain.label + " + limits", cmd)

    def prepare(self) -> None:
        self.once(-1)


def cgroup_work(runs: int, through_procs: bool) -> list[float]:
    """cgroups.create + the join (timed inside a forked child: the fork is the start's anyway) +
    cgroups.remove, timed in this process, `runs` times."""
    from minirun.runtime import cgroups

    resources = {"Memory": 64 << 20, "MemorySwap": 128 << 20, "PidsLimit": 100, "NanoCpus": 10**9, "CpuShares": 512}
    times = []
    for _ in range(runs):
        cid = f"bench-{os.getpid()}-{os.urandom(8).hex()}"
        # untimed: starts come apart, so the kernel's lock is back to its fast mode, as for a real start
        time.sleep(0.1)
        start = time.perf_counter()
        paths = cgroups.create(cid, resources)
        made = time.perf_counter() - start
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                t = time.perf_counter()
                if through_procs:
                    for path in paths:
                        with open(f"{path}/cgroup.procs", "w") as f:
                            f.write("0")
                else:
                    cgroups.join(paths)
                os.write(write_fd, repr(time.perf_counter() - t).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        joined = float(os.read(read_fd, 64) or b"nan")
        os.close(read_fd)
        os.waitpid(pid, 0)
        start = time.perf_counter()
        left = cgroups.remove(paths)
        times.append(made + joined + time.perf_counter() - start)
        if left:
            raise CommandFailed(f"cgroups left: {left}")
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    add_mount_flag(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_limits: must run as root", file=sys.stderr)
        return 2
    stop = defer_signals()
    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-limits-"))
    names = private_names(tmp)  # before the first minirun, and before minirun is imported here
    from minirun.runtime import cgroups

    podman = shutil.which("podman")
    print(f"bench_limits: start with and without limits, median of {args.runs} runs, interleaved round-robin")
    print(f"  cgroups     : {cgroups.layout()} ({', '.join(h.mount for h in cgroups.hierarchies())})")
    print(f"  podman      : {version([podman, '--version']) if podman else 'not installed'}")
    print(f"  limits      : {' '.join(LIMITS)}")
    sys.stdout.flush()

    tools: list[Tool] = []
    hybrid_fix: list = []
    failed = False
    leftovers: list[str] = []
    others: list[str] = []  # new cgroups of another user of the host (a test session beside this one)
    cgroups_before = set()
    work: dict[str, list[float]] = {}
    try:
        if podman:
            hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
        cgroups_before = cgroup_dirs()
        tar, _ = prepare_rootfs(tmp)
        tools += [Minirun(tmp / "store", False), Minirun(tmp / "store", True)]
        if podman:
            plain = Podman(podman, tmp, tar, runtime)
            tools += [plain, PodmanLimits(plain)]
        failed = bool(prepare_tools(tools, stop))
        failed = time_round_robin(tools, args.runs, stop) or failed
        work["create + join (tasks) + remove"] = cgroup_work(args.runs, through_procs=False)
        work["create + join (cgroup.procs) + remove"] = cgroup_work(args.runs, through_procs=True)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        failed = True
    finally:
        cleanup_tools(tools)
        for t in tools:
            leftovers += getattr(t, "leftovers", lambda: [])()
        store_containers = tmp / "store" / "containers"
        if store_containers.is_dir():
            leftovers += [f"minirun container {c.name}" for c in store_containers.iterdir()]
        leftovers += names.cleanup()  # this run's cgroup parents too: none of the host's is used
        leftovers += remove_temp_dir(tmp)
        ours = (f"minirun-bench-{os.getpid()}",)
        for d in sorted(cgroup_dirs() - cgroups_before, key=len, reverse=True):
            if any(part.startswith(ours) for part in Path(d).parts):
                try:
                    os.rmdir(d)
                except OSError:
                    leftovers.append(f"cgroup {d} (busy)")
            else:
                others.append(d)
        unfix_hybrid_cgroups(hybrid_fix)

    print()
    print(f"  {'what':<52}{'median s':>9}{'min':>8}{'max':>8}{'ok':>8}")
    for t in tools:
        if t.skipped:
            print(f"  {t.label:<52}  skipped: {t.skipped}")
            continue
        if t.times:
            print(
                f"  {t.label:<52}{statistics.median(t.times):9.3f}{min(t.times):8.3f}{max(t.times):8.3f}"
                f"{len(t.times):>5}/{args.runs}"
            )
        for failure in t.failures[:3]:
            print(f"    failed: {failure}")
    for label, times in work.items():
        print(f"  {'minirun cgroups: ' + label:<52}{statistics.median(times):9.4f}{min(times):8.4f}{max(times):8.4f}")
    pairs = [(tools[i], tools[i + 1]) for i in range(0, len(tools) - 1, 2)]
    for plain, limited in pairs:
        if plain.times and limited.times:
            delta = statistics.median(limited.times) - statistics.median(plain.times)
            print(f"  limits add  : {plain.label.split(' run')[0]} {delta * 1000:+.1f} ms (median difference)")
    print(
        f"  leftovers   : {', '.join(leftovers) if leftovers else 'none (no containers, cgroups or temp dirs remain)'}"
    )
    if others:
        print(f"  not ours    : {len(others)} new cgroups of other users of the host, left alone (e.g. {others[0]})")
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
