#!/usr/bin/env python3
"""Benchmark `minirun pull` from a loopback registry beside `skopeo copy docker://... dir:...` of
the same image, and GNU tar's extraction of the same layers, in one run.

    .venv/bin/python scripts/bench_pull.py [--layers 10] [--megabytes 300] [--files 20000] [--runs 3]

Prepared once, untimed: the 10 layer tars of scripts/bench_load.py's image (together ~300 MB of
incompressible data in ~20,000 files, rootfs-like trees, cached in the work dir: the same image the
load benchmark loads), stacked into an image in a source store, and a `docker-registry` on 127.0.0.1 (a free port,
storage in the work dir) that the image is pushed to with `minirun push` (its time is shown once).
The image's blobs are the uncompressed layer tars (what minirun pushes), so no tool pays for
decompression.

Then, interleaved (the order rotates each round), each timed:
  - minirun : `minirun --root FRESH pull HOST/bench:1`: downloads the 10 blobs (3 at a time),
              verifies them, and unpacks them into the store: a usable image;
  - skopeo  : `skopeo copy --src-tls-verify=false docker://HOST/bench:1 dir:FRESH`: downloads and
              verifies the blobs into files, and unpacks nothing;
  - tar -x  : GNU tar extracting the 10 layer tars one after another, each into a fresh dir of its
              own (as overlay lower dirs are), from the page cache: the file-creation floor any
              unpacking pull pays (a reference row).
`sync` runs before every timed command; outputs are kept until the end (on an ext4 without a
journal, deleting 20,000 files slows the creates of the next minutes: see
bench_import.ext4_without_journal). The registry is stopped and every output removed at the end.

minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end.
skopeo runs in a mount namespace of its own so that its blob-info cache is not the host's
/var/lib/containers/cache (tests/peers.py): that adds an unshare and a mount, a few ms, to each
timed skopeo copy.

This is a measurement, not a test: it exits 0 whatever the figures, 1 if a command failed.
Standard library only (minirun's own modules build the source image). Run as root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from bench_import import CommandFailed, ext4_without_journal, minirun_env, read_through, run, sync, timed  # noqa: E402
from bench_load import make_layers  # noqa: E402  (the same layer tars as the load benchmark)
from benchenv import own_blob_cache, private_names  # noqa: E402

IMAGE = "bench:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(directory: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = directory / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench\n"
    )
    log = open(directory / "registry.log", "wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    log.close()
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandFailed(f"docker-registry exited: {(directory / 'registry.log').read_text()[-1000:]}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
            return process, host
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    process.kill()
    raise CommandFailed("docker-registry did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def build_source_image(root: Path, tars: list[Path], ref: str) -> str:
    """Stack the layer tars into an image in a store at `root` (minirun's library, untimed)."""
    from minirun.humanize import rfc3339_now
    from minirun.store import Store
    from minirun.store.reference import parse_reference

    store = Store(str(root))
    staged = []
    for path in tars:
        with open(path, "rb") as f:
            staged.append(store.unpack_layer(f))
    now = rfc3339_now()
    config = {
        "architecture": "amd64" if os.uname().machine == "x86_64" else os.uname().machine,
        "os": "linux",
        "created": now,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [s.applied.diff_id for s in staged]},
        "history": [{"created": now, "created_by": f"layer {i}"} for i in range(len(staged))],
    }
    return store.commit_image(staged, config, parse_reference(ref)).id


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--megabytes", type=int, default=300, help="total MB (10^6) over all layers (default 300)")
    ap.add_argument("--files", type=int, default=20000, help="total non-directory members (default 20000)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool; the median counts (default 3)")
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/minirun-bench"), help="work dir (caches the layer tars)")
    ap.add_argument("--seed", type=int, default=20240701, help="seed of the generated layers (bench_load's)")
    args = ap.parse_args()
    if min(args.layers, args.megabytes, args.files, args.runs) < 1:
        ap.error("--layers, --megabytes, --files and --runs must be positive")
    for tool in ("docker-registry", "skopeo", "tar"):
        if shutil.which(tool) is None:
            print(f"bench_pull: {tool} is not installed (scripts/setup.sh --test installs it)", file=sys.stderr)
            return 1

    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    per_files, per_mb = max(1, args.files // args.layers), max(1, args.megabytes // args.layers)
    fstype = run(["stat", "-f", "-c", "%T", str(work)]).stdout.strip()
    if ext4_without_journal(work):
        fstype = "ext4 without a journal"
    print("minirun pull vs skopeo copy (and tar -x of the same layers)")
    print(f"  interpreter : {py}")
    print(
        f"  peers       : {run(['skopeo', '--version']).stdout.strip()}; "
        f"{run(['docker-registry', '--version']).stdout.strip()}; {run(['tar', '--version']).stdout.splitlines()[0]}"
    )
    print(f"  work dir    : {work} ({fstype}), {os.cpu_count()} CPUs, kernel {os.uname().release}")

    t0 = time.perf_counter()
    tars = make_layers(work, args.layers, args.files, args.megabytes, args.seed)
    total = sum(p.stat().st_size for p in tars)
    print(
        f"  image       : {args.layers} layers of ~{per_files:,} files / {per_mb} MB each, "
        f"{total / 1e6:.1f} MB of layer tars (ready in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )

    scratch = Path(tempfile.mkdtemp(prefix="pull-", dir=work))
    names = private_names(scratch)  # before the first minirun, here or in this process
    env = minirun_env()
    registry = None
    try:
        (scratch / "registry").mkdir()
        registry, host = start_registry(scratch / "registry")
        ref = f"{host}/{IMAGE}"
        source = scratch / "source-store"
        t0 = time.perf_counter()
        build_source_image(source, tars, ref)
        built = time.perf_counter() - t0
        sync()
        pushed = timed([py, "-m", "minirun", "--root", str(source), "push", ref], env=env)
        print(f"  prepared    : source image built in {built:.1f} s; `minirun push` to {host} took {pushed:.1f} s")
        print(f"  commands    : {py} -m minirun --root FRESH pull {ref}")
        print(f"                skopeo copy --src-tls-verify=false docker://{ref} dir:FRESH")
        print(f"                tar -x -f LAYER -C FRESH/N, for each of the {args.layers} layers in order")
        print(flush=True)
        for path in tars:
            read_through(path)
        times: dict[str, list[float]] = {"minirun": [], "skopeo": [], "tar -x": []}
        order = list(times)
        print(f"  {'run':<4}{'tool':<10}{'time':>10}", flush=True)
        for i in range(args.runs):
            for tool in order[i % 3 :] + order[: i % 3]:
                out = scratch / f"{tool.replace(' ', '')}-{i}"
                sync()
                if tool == "minirun":
                    t = timed([py, "-m", "minirun", "--root", str(out), "pull", "-q", ref], env=env)
                elif tool == "skopeo":
                    t = timed(
                        own_blob_cache(
                            ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"dir:{out}"]
                        )
                    )
                else:
                    out.mkdir()
                    t0 = time.perf_counter()
                    for n, path in enumerate(tars):  # a dir per layer, as overlay lower dirs are
                        (out / str(n)).mkdir()
                        run(["tar", "-x", "-f", str(path), "-C", str(out / str(n))])
                    t = time.perf_counter() - t0
                times[tool].append(t)
                print(f"  {i + 1:<4}{tool:<10}{t:>8.2f} s", flush=True)
        med = {tool: statistics.median(v) for tool, v in times.items()}
        print()
        print(f"  {'tool':<10}{'median':>10}{'MB/s':>9}{'vs minirun':>12}")
        for tool in order:
            print(f"  {tool:<10}{med[tool]:>8.2f} s{total / 1e6 / med[tool]:>9.1f}{med[tool] / med['minirun']:>11.2f}x")
        print()
        print(
            f"  ratio       : minirun/skopeo = {med['minirun'] / med['skopeo']:.2f}x "
            f"(skopeo only downloads: no files are created)"
        )
        print(
            f"                minirun/tar -x = {med['minirun'] / med['tar -x']:.2f}x "
            f"(tar only creates files: no download, no verification)"
        )
    except CommandFailed as exc:
        print(f"\nbench_pull: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if registry is not None:
            stop(registry)
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"  cleaned up  : registry stopped, {scratch} removed; the layer tars stay cached in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
