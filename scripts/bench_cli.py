#!/usr/bin/env python3
"""What a verb costs before it does anything: the start of the CLI's two kinds of verb, beside
podman's same verbs on the same images, in one run.

- `images` (a lean verb since it became one; target <= 80 ms median), `images --help`, `ps -a`;
- `history bench-0` (a typer verb: typer's own import is its floor), `minirun --help`.

Each minirun command and its podman twin run in turn (A B A B ...) against a store and a podman
root of this run's own, each holding the embedded busybox and a few imported images; the ratio is
taken pair by pair and its median printed, so drift of the machine's speed cancels out. minirun
runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end; podman's
imports run with a blob-info cache of their own, never the host's (tests/peers.py).

    .venv/bin/python scripts/bench_cli.py [--runs 25]

A measurement, not a test: exits 0 whatever the figures, non-zero only if a command failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import forget_podman, podman_command  # noqa: E402  (the script's own directory, on the path above)
from benchenv import minirun_command, own_blob_cache, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IMAGES = 5  # imported beside busybox: a listing with a few rows, as a small host has


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def paired(
    a: list[str], b: list[str] | None, runs: int, env: dict[str, str]
) -> tuple[float, float | None, float | None]:
    """Medians in ms of A and B, and the median of the pair-by-pair ratios A/B (one warm-up each)."""
    timed(a, env)
    if b:
        timed(b, env)
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(timed(a, env))
        if b:
            times_b.append(timed(b, env))
    median_a = statistics.median(times_a) * 1000
    if not b:
        return median_a, None, None
    ratios = [x / y for x, y in zip(times_a, times_b)]
    return median_a, statistics.median(times_b) * 1000, statistics.median(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="minirun-bench-cli-", dir="/var/tmp")
    root = os.path.join(work, "store")
    names = private_names(work)  # no minirun0, /run/minirun, ... of the host's is touched
    env = dict(os.environ, MINIRUN_ROOT=root)
    minirun = minirun_command()
    binary = shutil.which("podman")
    podman_base = Path(work) / "podman"
    podman = podman_command(binary, podman_base, None) if binary else None
    try:
        tar = os.path.join(work, "busybox.tar")
        with open(tar, "wb") as out:
            subprocess.run([sys.executable, str(REPO / "images/busybox/rootfs.py")], stdout=out, check=True)
        for i in range(IMAGES):
            subprocess.run([*minirun, "import", tar, f"bench-{i}:latest"], check=True, capture_output=True, env=env)
            if podman:
                subprocess.run(
                    own_blob_cache([*podman, "import", tar, f"bench-{i}:latest"]), check=True, capture_output=True
                )
        subprocess.run([*minirun, "run", "--rm", "--network", "none", "busybox", "true"], check=True, env=env)
        rows = [
            ("images", ["images"], ["images"]),
            ("images --help", ["images", "--help"], ["images", "--help"]),
            ("ps -a", ["ps", "-a"], ["ps", "-a"]),
            ("history bench-0", ["history", "bench-0"], ["history", "bench-0"]),
            ("--help", ["--help"], ["--help"]),
        ]
        print(f"median wall ms of {args.runs} runs each, A B A B; ratio = median of the pairs' minirun/podman")
        print(f"  {'verb':<16}{'minirun':>9}{'podman':>9}{'ratio':>8}")
        for label, ours, theirs in rows:
            a, b, ratio = paired([*minirun, *ours], [*podman, *theirs] if podman else None, args.runs, env)
            peer = f"{b:9.1f}{ratio:8.2f}" if b is not None and ratio is not None else f"{'-':>9}{'-':>8}"
            target = "   (target <= 80 ms)" if label == "images" else ""
            print(f"  {label:<16}{a:9.1f}{peer}{target}")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"command failed: {exc.cmd}: {exc.stderr}", file=sys.stderr)
        return 1
    finally:
        if podman:
            forget_podman(podman, [str(podman_base)])
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
