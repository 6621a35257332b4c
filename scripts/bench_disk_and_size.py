#!/usr/bin/env python3
"""Two claims of the `run` issue, measured in one run:

1. disk per extra container: `du` of the store before and after N stopped containers of busybox
   (each ran `true`), beside podman's storage for the same N containers when podman is installed;
2. start time does not depend on image size: `run --rm IMAGE true` for a 300 MB, 50-layer image
   beside busybox (interleaved, medians), since layers are stacked, never copied.

    .venv/bin/python scripts/bench_disk_and_size.py [--containers 20] [--runs 15] [--layers 50] [--megabytes 300]

minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end;
podman's import runs with a blob-info cache of its own, never the host's (tests/peers.py).

A measurement, not a test: exits 0 whatever the figures, non-zero only if a command failed.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (the script's own directory, put on the path just above)
    forget_podman,
    remove_side_paths,
    side_paths_present,
)
from benchenv import own_blob_cache, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PODMAN_FLAGS = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]


def du_kib(path: str) -> int:
    out = subprocess.run(["du", "-s", "-k", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def minirun(root: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "minirun", "--root", root, *args], check=True, stdout=subprocess.DEVNULL)


def disk_per_container(root: str, count: int) -> float:
    minirun(root, "run", "--rm", "busybox", "true")  # builds busybox and the init layer
    subprocess.run(["sync"])
    before = du_kib(root)
    for _ in range(count):
        minirun(root, "run", "busybox", "true")
    subprocess.run(["sync"])
    return (du_kib(root) - before) / count


def podman_disk_per_container(work: str, count: int) -> float | None:
    if not shutil.which("podman"):
        return None
    storage = os.path.join(work, "podman-storage")
    runroot = os.path.join(work, "podman-run")
    base = ["podman", "--root", storage, "--runroot", runroot, *PODMAN_FLAGS]
    tar = os.path.join(work, "busybox.tar")
    with open(tar, "wb") as out:
        subprocess.run([sys.executable, str(REPO / "images/busybox/rootfs.py")], stdout=out, check=True)
    try:
        subprocess.run(own_blob_cache([*base, "import", tar, "bench-busybox"]), check=True, capture_output=True)
        subprocess.run(["sync"])
        before = du_kib(storage)
        for _ in range(count):
            subprocess.run(
                [
                    *base,
                    "create",
                    "--network",
                    "none",
                    "--ulimit",
                    "nofile=20000:20000",
                    "--ulimit",
                    "nproc=4096:4096",
                    "bench-busybox",
                    "true",
                ],
                check=True,
                capture_output=True,
            )
        subprocess.run(["sync"])
        return (du_kib(storage) - before) / count
    finally:
        forget_podman(base, [storage, runroot])


def make_big_image(root: str, layers: int, megabytes: int) -> None:
    from minirun.humanize import rfc3339_now
    from minirun.image.embedded import find_image
    from minirun.store import Store
    from minirun.store.reference import parse_reference

    store = Store(root)
    base = find_image(store, "busybox")
    rng = random.Random(7)
    per_layer = megabytes * 1_000_000 // layers
    staged = []
    for i in range(layers):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for j in range(10):
                data = rng.randbytes(per_layer // 10)
                info = tarfile.TarInfo(f"data/layer{i:02d}/blob{j}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        staged.append(store.unpack_layer(buffer))
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": base.diff_ids + [s.applied.diff_id for s in staged]}
    config["history"] = base.history + [{"created": rfc3339_now(), "created_by": f"layer {i}"} for i in range(layers)]
    store.commit_image(staged, config, parse_reference("big"))


def time_start(root: str, image: str) -> float:
    start = time.perf_counter()
    minirun(root, "run", "--rm", image, "true")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=300)
    args = parser.parse_args()
    side_before = side_paths_present()  # podman's own state outside our dirs, if this run makes it
    work = tempfile.mkdtemp(prefix="minirun-bench-disk-", dir="/var/tmp")
    names = private_names(work)  # before the first minirun, here or in this process (make_big_image)
    try:
        root = os.path.join(work, "store")
        mine = disk_per_container(root, args.containers)
        podman = podman_disk_per_container(work, args.containers)
        print(f"disk per extra container ({args.containers} containers, du -sk after sync):")
        print(f"  minirun  {mine:7.1f} KiB   (target <= 50 KiB)")
        print(f"  podman   {podman:7.1f} KiB" if podman is not None else "  podman   not installed")

        size_root = os.path.join(work, "store2")
        make_big_image(size_root, args.layers, args.megabytes)
        time_start(size_root, "busybox"), time_start(size_root, "big")  # warm caches
        small, big = [], []
        for _ in range(args.runs):
            small.append(time_start(size_root, "busybox"))
            big.append(time_start(size_root, "big"))
        s, b = statistics.median(small), statistics.median(big)
        print(f"start, median of {args.runs} interleaved `run --rm IMAGE true`:")
        print(f"  busybox ({du_kib(size_root) // 1024} MiB store)   {s * 1000:6.1f} ms")
        print(
            f"  big ({args.layers + 1} layers, {args.megabytes} MB)      {b * 1000:6.1f} ms   ratio {b / s:.2f}x (target <= 1.1x)"
        )
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"command failed: {exc.cmd}: exit {exc.returncode}", file=sys.stderr)
        return 1
    finally:
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        remove_side_paths(side_before)


if __name__ == "__main__":
    sys.exit(main())
