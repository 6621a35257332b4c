#!/usr/bin/env python3
"""Benchmark `minirun load` of a 10-layer image archive beside `podman load` of the same archive and
GNU `tar -x` of the same layer tars, in one run, round by round.

    .venv/bin/python scripts/bench_load.py [--layers 10] [--files 20000] [--megabytes 300] [--runs 5]
                                           [--warmup 1] [--dir DIR] [--fs private|host] [--no-podman]

The archive is generated once (deterministic from --seed) and cached in the work dir (default
/var/tmp/minirun-bench): --layers layer tars made by bench_import.py's generator (many small files,
a few large ones; --files and --megabytes split evenly between the layers), packed as docker >= 25's
`docker save` archive (blobs/sha256/<diff_id>, uncompressed layers, manifest.json + index.json), the
form minirun save writes and both tools load. Every run starts from an empty store / directory:
  - minirun : `python -m minirun --root FRESH load -i ARCHIVE` (independent layers in parallel);
  - podman  : `podman --root FRESH ... load -i ARCHIVE` (its own storage, overlay driver);
  - tar     : `tar -x -f LAYER -C FRESH/<n>` for each layer, one after the other (the floor of doing
              the same file creations with one process);
  - tar -P2 : the same ten extractions, two at a time (what two cores allow any tool).
minirun is byte-compiled first, as an installed minirun is (these machines set
PYTHONDONTWRITEBYTECODE, which would recompile it on every run). A round runs each tool once, in
an order that rotates from round to round; a warm-up round (--warmup) goes first, shown but left
out of the figures (on a fresh filesystem every tool's first run was ~20% slower, whichever ran
first). `sync` runs before every timed run and is shown apart after it (+sync), with the CPU the tool's processes used (user,
sys) and a probe taken just before it: the time to create 1,000 empty files on the same filesystem
(scripts/benchfs.py). The per-round table at the end shows whether a tool's times stay flat.

Where the outputs go (--fs):
  - private (the default): a fresh ext4 with a journal, made for this run in a sparse image under
    the work dir and loop-mounted (scripts/benchfs.py); outputs are deleted after each run.
  - host: the work dir's own filesystem. On an ext4 without a journal this measures the
    filesystem's history more than the tools: every create steps over the inodes freed in the
    last 1-6 minutes (bench_import.ext4_without_journal), so a run after deleting a store is up to
    ~6x slower, and rounds drift with the clock. That is what made `load` look slower every round
    (1.9 s to 5.4 s over 5 rounds in issue 16): the probe column shows it, growing with the tools'
    sys time while their user time stays flat. There, outputs are kept until the end.
Targets (issue 16): minirun <= 1.0x tar, <= 0.5x podman, flat over rounds.

minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end.
podman's load runs in a mount namespace of its own so that its blob-info cache is not the host's
/var/lib/containers/cache (tests/peers.py): that adds an unshare and a mount, a few ms, to each
timed podman load.

This is a measurement, not a test: it exits 0 whatever the ratios, non-zero only if a command
failed. Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import import (  # noqa: E402
    DROP_CACHES,
    GENERATOR_VERSION,
    CommandFailed,
    compile_minirun,
    ext4_without_journal,
    generate_tar,
    minirun_env,
    read_through,
    run,
    sync,
)
from benchenv import own_blob_cache, private_names  # noqa: E402
from benchfs import PROBE_FILES, PrivateFs, create_probe  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARCHIVE_VERSION = 1  # bump when the archive layout changes
TARGET_TAR = 1.0
TARGET_PODMAN = 0.5
PODMAN_GLOBAL = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
IMAGE = "bench/load:1"


# -- the archive --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def make_layers(work: Path, layers: int, files: int, megabytes: int, seed: int) -> list[Path]:
    paths = []
    for i in range(layers):
        path = work / f"layer-v{GENERATOR_VERSION}-seed{seed + i}-{files // layers}files-{megabytes // layers}MB.tar"
        if not path.exists():
            generate_tar(path, files // layers, megabytes // layers, seed + i)
        paths.append(path)
    return paths


def make_archive(path: Path, layer_paths: list[Path]) -> str:
    """docker >= 25's save format around the layer tars; returns the image id (config digest)."""
    diff_ids = [sha256_file(p) for p in layer_paths]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-06-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-06-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(diff_ids))],
        },
        separators=(",", ":"),
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": p.stat().st_size}
                for d, p in zip(diff_ids, layer_paths)
            ],
        },
        separators=(",", ":"),
    ).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blob = lambda digest: "blobs/sha256/" + digest.split(":")[1]  # noqa: E731
    small = {
        blob(config_digest): config,
        blob(manifest_digest): manifest,
        "index.json": json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": "docker.io/" + IMAGE,
                            "org.opencontainers.image.ref.name": "1",
                        },
                    }
                ],
            }
        ).encode(),
        "manifest.json": json.dumps(
            [{"Config": blob(config_digest), "RepoTags": [IMAGE], "Layers": [blob(d) for d in diff_ids]}]
        ).encode(),
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "repositories": json.dumps({IMAGE.split(":")[0]: {"1": diff_ids[-1].split(":")[1]}}).encode(),
    }
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for digest, layer in zip(diff_ids, layer_paths):
                tar.add(layer, arcname=blob(digest))
            for name, data in small.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return config_digest


# -- the tools ----------------------------------------------------------------------------------


def tar_layers(layer_paths: list[Path], out: Path, parallel: int) -> None:
    def one(i_path):
        i, path = i_path
        target = out / str(i)
        target.mkdir()
        run(["tar", "-x", "-f", str(path), "-C", str(target)])

    if parallel == 1:
        for item in enumerate(layer_paths):
            one(item)
    else:
        # largest first, as minirun schedules them
        items = sorted(enumerate(layer_paths), key=lambda ip: ip[1].stat().st_size, reverse=True)
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, items))


class PodmanStore:
    """One podman storage per run: graph root on the work filesystem, run root short (podman
    refuses a runroot over 50 characters)."""

    def __init__(self, out: Path) -> None:
        self.runroot = Path(tempfile.mkdtemp(prefix="mr-bench-podman-"))
        self.cmd = [
            "podman",
            "--root",
            str(out / "root"),
            "--runroot",
            str(self.runroot / "run"),
            "--tmpdir",
            str(self.runroot / "tmp"),
            *PODMAN_GLOBAL,
        ]

    def remove(self, out: Path) -> None:
        with open("/proc/mounts") as mounts:
            left = [line.split()[1] for line in mounts if str(out) in line or str(self.runroot) in line]
        for mount in reversed(left):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


# -- the figures --------------------------------------------------------------------------------


class Run:
    """One timed run: wall time, the sync after it, the CPU of its processes, the probe before it."""

    def __init__(self, elapsed: float, flushed: float, user: float, sys_: float, probe: float) -> None:
        self.elapsed, self.flushed, self.user, self.sys, self.probe = elapsed, flushed, user, sys_, probe

    def row(self) -> str:
        return (
            f"{self.elapsed:>7.2f} s{self.flushed:>7.2f} s{self.user:>7.2f}s{self.sys:>7.2f}s"
            f"{self.probe * 1000:>6.0f} ms"
        )


def report(tools: list[str], runs: dict[str, list[Run]]) -> None:
    """Round by round (is any tool drifting?), then medians and minirun's ratios to its peers."""
    peers = [t for t in ("tar", "podman") if t in tools]
    print()
    print("  round by round (wall seconds; ratios within the round):")
    head = "".join(f"{t:>10}" for t in tools) + "".join(f"{'mr/' + t:>11}" for t in peers) + f"{'probe':>9}"
    print(f"  {'round':<6}{head}")
    for i in range(len(runs["minirun"])):
        cells = "".join(f"{runs[t][i].elapsed:>8.2f} s" for t in tools)
        ratios = "".join(f"{runs['minirun'][i].elapsed / runs[t][i].elapsed:>10.2f}x" for t in peers)
        probe = statistics.median(runs[t][i].probe for t in tools) * 1000
        print(f"  {i + 1:<6}{cells}{ratios}{probe:>6.0f} ms")
    print()
    print(
        f"  {'tool':<10}{'median':>9}{'+sync':>9}{'user':>8}{'sys':>8}{'last/first':>12}{'minirun / tool':>16}{'target':>9}"
    )
    for tool in tools:
        mid = statistics.median(r.elapsed for r in runs[tool])
        drift = runs[tool][-1].elapsed / runs[tool][0].elapsed
        shown = target = verdict = ""
        if tool != "minirun":
            # Pair by pair: the median of the rounds' ratios (a drift of the machine's speed cancels out).
            ratio = statistics.median(m.elapsed / t.elapsed for m, t in zip(runs["minirun"], runs[tool]))
            shown = f"{ratio:.2f}x"
            limit = {"tar": TARGET_TAR, "podman": TARGET_PODMAN}.get(tool)
            if limit is not None:
                target = f"<= {limit:.1f}x"
                verdict = " met" if ratio <= limit else " MISSED"
        print(
            f"  {tool:<10}{mid:>7.2f} s{statistics.median(r.flushed for r in runs[tool]):>7.2f} s"
            f"{statistics.median(r.user for r in runs[tool]):>7.2f}s{statistics.median(r.sys for r in runs[tool]):>7.2f}s"
            f"{drift:>11.2f}x{shown:>16}{target:>9}{verdict}"
        )
    print("  (minirun / tool: the median of the rounds' ratios; last/first: the last round's time over the first's)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=10, help="layers in the image (default 10)")
    ap.add_argument(
        "--files", type=int, default=20000, help="non-directory members, all layers together (default 20000)"
    )
    ap.add_argument("--megabytes", type=int, default=300, help="archive size in MB, all layers together (default 300)")
    ap.add_argument("--runs", type=int, default=5, help="rounds: timed runs of each tool (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="rounds run first and left out of the figures (default 1)")
    ap.add_argument(
        "--dir", type=Path, default=Path("/var/tmp/minirun-bench"), help="work dir (default /var/tmp/minirun-bench)"
    )
    ap.add_argument(
        "--fs",
        choices=("private", "host"),
        default="private",
        help="where outputs go: a fresh ext4 of this run's own (default), or the work dir's filesystem",
    )
    ap.add_argument("--seed", type=int, default=20240701, help="seed of the generated layers")
    ap.add_argument("--no-podman", action="store_true", help="leave podman out")
    args = ap.parse_args()
    if min(args.layers, args.files, args.megabytes, args.runs) < 1 or args.warmup < 0:
        ap.error("--layers, --files, --megabytes and --runs must be positive, --warmup not negative")
    if os.geteuid() != 0:
        print("bench_load: must run as root (layers keep owners)", file=sys.stderr)
        return 2

    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    use_podman = not args.no_podman and shutil.which("podman") is not None
    t0 = time.perf_counter()
    layer_paths = make_layers(work, args.layers, args.files, args.megabytes, args.seed)
    archive = work / (
        f"archive-v{ARCHIVE_VERSION}-g{GENERATOR_VERSION}-seed{args.seed}-{args.layers}layers-"
        f"{args.files}files-{args.megabytes}MB.tar"
    )
    cached = archive.exists()
    image_id = make_archive(archive, layer_paths) if not cached else None
    if image_id is None:
        with tarfile.open(archive) as tar:
            image_id = json.load(tar.extractfile("manifest.json"))[0]["Config"].replace("blobs/sha256/", "sha256:")
    prepared = time.perf_counter() - t0

    size = archive.stat().st_size
    tools = ["minirun", "tar", "tar -P2"] + (["podman"] if use_podman else [])
    private = PrivateFs(work, 3 * size * len(tools) + (2 << 30)) if args.fs == "private" else None
    nojournal = None if private else ext4_without_journal(work)
    keep_outputs = bool(nojournal)
    drop = keep_outputs and os.access(DROP_CACHES, os.W_OK)
    needed = size * 3 * args.runs * len(tools)
    if keep_outputs and shutil.disk_usage(work).free < needed:
        keep_outputs = False
    if private:
        where = f"{private.describe()}: outputs deleted after each run"
    elif nojournal:
        where = f"{work}, an ext4 without a journal: outputs kept until the end (see --fs)"
    else:
        where = f"{work}: outputs deleted after each run"
    print(f"bench_load: load of a {args.layers}-layer archive, {args.runs} rounds")
    print(f"  machine     : {os.cpu_count()} CPUs, kernel {os.uname().release}, {py}")
    print(f"  outputs     : {where}")
    print(
        f"  archive     : {archive} ({size / 1e6:.1f} MB, {args.layers} uncompressed layers, "
        f"~{args.files // args.layers:,} files each; {'cached' if cached else f'generated in {prepared:.0f} s'})"
    )
    print(f"  image id    : {image_id}")
    print(f"  tools       : {', '.join(tools)}" + ("" if use_podman else "  (podman: not run)"))
    print(f"  probe       : ms to create {PROBE_FILES:,} empty files on the outputs' filesystem, just before the run")
    print(flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="load-", dir=private.mount if private else work))
    names = private_names(scratch)  # before the first minirun
    env = minirun_env()
    compile_minirun(py)
    podmans: list[tuple[PodmanStore, Path]] = []
    runs: dict[str, list[Run]] = {t: [] for t in tools}
    try:
        if drop:
            sync()
            with open(DROP_CACHES, "w") as f:
                f.write("1\n")
        read_through(archive)
        for p in layer_paths:
            read_through(p)
        run(
            [
                py,
                "-c",
                "import minirun.cli.typerapp, minirun.distribution.imageload, minirun.layer.archive, minirun.cli.app_archive",
            ],
            env=env,
        )
        print(f"  {'round':<6}{'tool':<10}{'time':>9}{'+sync':>9}{'user':>8}{'sys':>8}{'probe':>9}", flush=True)
        for i in range(-args.warmup, args.runs):
            order = tools[i % len(tools) :] + tools[: i % len(tools)]
            for tool in order:
                out = scratch / f"{tool.replace(' ', '')}-{i}"
                out.mkdir()
                probe = create_probe(scratch)
                sync()
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                if tool == "minirun":
                    result = run([py, "-m", "minirun", "--root", str(out), "load", "-i", str(archive)], env=env)
                    if f"Loaded image: {IMAGE}" not in result.stdout:
                        raise CommandFailed(f"minirun load printed {result.stdout!r}")
                elif tool == "podman":
                    podman = PodmanStore(out)
                    podmans.append((podman, out))
                    run(own_blob_cache([*podman.cmd, "load", "-q", "-i", str(archive)]))
                else:
                    tar_layers(layer_paths, out, 2 if tool == "tar -P2" else 1)
                elapsed = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                done = Run(elapsed, sync(), after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, probe)
                if i >= 0:
                    runs[tool].append(done)
                print(f"  {i + 1 if i >= 0 else 'warm':<6}{tool:<10}{done.row()}", flush=True)
                if tool == "minirun":
                    loaded = run([py, "-m", "minirun", "--root", str(out), "images", "-q"], env=env).stdout.split()
                    if loaded != [image_id.split(":")[1][:12]]:
                        raise CommandFailed(f"minirun's store holds {loaded}, not {image_id}")
                if not keep_outputs:
                    if tool == "podman":
                        podmans[-1][0].remove(out)
                    shutil.rmtree(out)
        report(tools, runs)
    except CommandFailed as exc:
        print(f"\nbench_load: command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for podman, out in podmans:
            podman.remove(out)
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
        for note in private.close() if private else []:
            print(f"note: {note}", file=sys.stderr)
    gone = f"{scratch} removed" + (" with its filesystem" if private else "")
    print(f"\n  cleaned up  : {gone}; the archive and layers stay cached in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
