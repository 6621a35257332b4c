#!/usr/bin/env python3
"""Benchmark `build`: 20 trivial RUN steps, minirun beside `podman build --layers`, in one run.

    .venv/bin/python scripts/bench_build.py [--rounds 3] [--steps 20]

Two Containerfiles of N RUN steps on busybox (the same rootfs tar for both tools; the FROM line
names each tool's copy of it):
  - "changes": `RUN echo i > /stepi`, so every step commits a real (small) layer;
  - "empty":   `RUN true`, so every step runs a container whose upper stays empty (no layer).
Timed, each as the wall time of one CLI command seen from this process:
  - a build that runs every step (`--no-cache`; the first round's is a truly first build),
  - a rebuild of the unchanged file (every step answered by the layer cache).
minirun: a fresh store in a temp dir (busybox built into it untimed). podman: its own storage in
the temp dir (`--root`, `--runroot`, `--tmpdir`), busybox imported with `podman import`, the
flags these machines need (PEERS.md), `--network none` as minirun's RUN, `--pull=never`.
The rounds are interleaved so machine noise hits both tools alike, and every timed build starts
after a sync(2), so neither pays for flushing what the other wrote. If podman fails it is
reported and skipped; minirun's own figures still print.
minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end.
podman's import and builds run in a mount namespace of their own so that their blob-info cache is
not the host's /var/lib/containers/cache (tests/peers.py): that adds an unshare and a mount, a few
ms, to each timed podman build.

Also checked, not timed: the cached rebuild says `Using cache` for every step and leaves no
container, and nothing is left mounted. Exits 0 whatever the figures; 1 if a command failed or
something was left behind. Standard library only; run as root.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (shared helpers of the start benchmark)
    PODMAN_RUN,
    CommandFailed,
    add_mount_flag,
    defer_signals,
    minirun_env,
    podman_command,
    podman_peer,
    prepare_rootfs,
    prepare_tools,
    remove_side_paths,
    remove_temp_dir,
    run,
    side_paths_present,
    tail,
    unfix_hybrid_cgroups,
    version,
)
from benchenv import HostNames, own_blob_cache, private_names  # noqa: E402

TARGET_STEPS_PER_S = 5.0
PODMAN_IMAGE = "localhost/minirun-bench-build-busybox:latest"
# `build` registers on the typer app from minirun.cli.app_build; importing it here works whether or
# not cli.main already does, at the cost of nothing (the module is loaded either way).
MINIRUN_ENTRY = "import sys, minirun.cli.app_build; from minirun.cli.main import main; sys.argv[0] = 'minirun'; main()"


def containerfile(base: str, steps: int, empty: bool) -> str:
    body = "".join("RUN true\n" if empty else f"RUN echo {i} > /step{i}\n" for i in range(1, steps + 1))
    return f"FROM {base}\n{body}"


class Builder:
    """One tool's build commands for the two Containerfiles."""

    def __init__(
        self, label: str, base_cmd: list[str], env: dict[str, str] | None, tmp: Path, base_image: str, steps: int
    ) -> None:
        self.label = label
        self.base_cmd = base_cmd
        self.env = env
        self.contexts: dict[str, Path] = {}
        for variant in ("changes", "empty"):
            ctx = tmp / f"{label}-{variant}"
            ctx.mkdir()
            (ctx / "Containerfile").write_text(containerfile(base_image, steps, variant == "empty"))
            self.contexts[variant] = ctx
        self.times: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.skipped: str | None = None

    def command(self, variant: str, cached: bool) -> list[str]:
        raise NotImplementedError

    def once(self, variant: str, cached: bool) -> subprocess.CompletedProcess:
        cmd = self.command(variant, cached)
        # untimed: the other tool's dirty pages must not be flushed by this one's fsyncs
        os.sync()
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, text=True)
        elapsed = time.perf_counter() - t0
        if p.returncode != 0:
            raise CommandFailed(f"`{' '.join(cmd[-6:])}` exited {p.returncode}: {tail(p)}")
        self.times.setdefault(f"{variant}-{'cached' if cached else 'run'}", []).append(elapsed)
        return p


class Minirun(Builder):
    def __init__(self, tmp: Path, steps: int) -> None:
        self.root = tmp / "store"
        super().__init__(
            "minirun",
            [sys.executable, "-c", MINIRUN_ENTRY, "--root", str(self.root)],
            minirun_env(),
            tmp,
            "busybox",
            steps,
        )

    def prepare(self) -> None:
        run([*self.base_cmd, "history", "busybox"], env=self.env)  # builds the embedded image, untimed

    def command(self, variant: str, cached: bool) -> list[str]:
        extra = ["--progress=plain"] if cached else ["--no-cache", "-q"]
        return [*self.base_cmd, "build", *extra, "-t", f"bench-{variant}", str(self.contexts[variant])]

    def leftovers(self) -> list[str]:
        cdir = self.root / "containers"
        return [f"minirun container dir {c.name}" for c in cdir.iterdir()] if cdir.is_dir() else []


class Podman(Builder):
    def __init__(self, binary: str, tmp: Path, steps: int, tar: Path, runtime: str | None = None) -> None:
        self.glob = podman_command(binary, tmp / "podman", runtime)
        self.tar = tar
        super().__init__("podman", self.glob, None, tmp, PODMAN_IMAGE, steps)

    def prepare(self) -> None:
        run(own_blob_cache([*self.glob, "import", "--quiet", str(self.tar), PODMAN_IMAGE]))

    def command(self, variant: str, cached: bool) -> list[str]:
        extra = [] if cached else ["--no-cache"]
        return own_blob_cache(
            [
                *self.glob,
                "build",
                "--layers",
                *extra,
                "--pull=never",
                "--network",
                "none",
                *PODMAN_RUN,
                "-t",
                f"localhost/bench-{variant}",
                str(self.contexts[variant]),
            ]
        )

    def cleanup(self) -> list[str]:
        try:
            ps = run([*self.glob, "ps", "--all", "--quiet", "--external"]).stdout.split()
        except (CommandFailed, OSError):
            ps = []
        if ps:
            subprocess.run([*self.glob, "rm", "--force", *ps], stdin=subprocess.DEVNULL, capture_output=True)
        subprocess.run([*self.glob, "rmi", "--all", "--force"], stdin=subprocess.DEVNULL, capture_output=True)
        return [f"podman container {c}" for c in ps]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of every build (default 3)")
    ap.add_argument("--steps", type=int, default=20, help="RUN steps in each Containerfile (default 20)")
    add_mount_flag(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_build: must run as root (containers, overlay mounts)", file=sys.stderr)
        return 2
    stop = defer_signals()

    side_before = side_paths_present()
    podman_bin = shutil.which("podman")
    print(f"bench_build: {args.steps} trivial RUN steps, median wall time of {args.rounds} rounds, interleaved")
    print(
        f"  machine     : {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({sys.executable})"
    )
    print("  podman      : " + (version([podman_bin, "--version"]) if podman_bin else "not installed"))
    sys.stdout.flush()

    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-build-"))
    names: HostNames | None = None
    tools: list[Builder] = []
    hybrid_fix: list[tuple[str, bool]] = []
    failed = False
    leftovers: list[str] = []
    checks: list[str] = []
    try:
        names = private_names(tmp)  # before the first minirun
        minirun = Minirun(tmp, args.steps)
        tools.append(minirun)
        if podman_bin:
            hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
            tar, _lower = prepare_rootfs(tmp)
            tools.append(Podman(podman_bin, tmp, args.steps, tar, runtime))
        failed = bool(prepare_tools(tools, stop))
        for i in range(args.rounds):
            live = [t for t in tools if not t.skipped]
            for t in live if i % 2 == 0 else live[::-1]:
                for variant in ("changes", "empty"):
                    for cached in (False, True):
                        if stop:
                            raise KeyboardInterrupt
                        try:
                            p = t.once(variant, cached)
                        except (CommandFailed, OSError) as e:
                            t.failures.append(f"round {i + 1} {variant}{' cached' if cached else ''}: {e}")
                            failed = True
                            continue
                        if t is minirun and cached:
                            hits = p.stdout.count("---> Using cache")
                            if hits != args.steps:
                                checks.append(
                                    f"minirun cached rebuild ({variant}) used the cache for {hits} "
                                    f"of {args.steps} steps"
                                )
                                failed = True
                            if minirun.leftovers():
                                checks.append("minirun left containers behind")
                                failed = True
    except KeyboardInterrupt:
        print("interrupted; cleaning up; the figures below are partial", file=sys.stderr)
        failed = True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for t in tools:
            if isinstance(t, Podman):
                leftovers += t.cleanup()
            elif isinstance(t, Minirun):
                leftovers += t.leftovers()
        if names:
            leftovers += names.cleanup()
        leftovers += remove_temp_dir(tmp)
        remove_side_paths(side_before)
        unfix_hybrid_cgroups(hybrid_fix)

    # -- the table
    rows = [
        ("changes-run", "build, every RUN a change (--no-cache)"),
        ("changes-cached", "rebuild, unchanged (cache)"),
        ("empty-run", "build, every RUN empty (RUN true)"),
        ("empty-cached", "rebuild, unchanged (cache)"),
    ]
    podman = next((t for t in tools if isinstance(t, Podman)), None)
    print()
    print(f"  {'what':<50}{'median s':>9}{'min':>8}{'steps/s':>9}{'×podman':>9}")
    for key, text in rows:
        for t in tools:
            label = f"{t.label} {text}"
            if t.skipped:
                print(f"  {label:<50}  NOT TIMED: {t.skipped}")
                continue
            times = t.times.get(key, [])
            if not times:
                print(f"  {label:<50}  no successful run")
                continue
            med = statistics.median(times)
            ratio = ""
            if t is not podman and podman is not None and podman.times.get(key):
                ratio = f"{med / statistics.median(podman.times[key]):8.2f}×"
            print(f"  {label:<50}{med:9.3f}{min(times):8.3f}{args.steps / med:9.1f}{ratio:>9}")
    for t in tools:
        for f in t.failures[:3]:
            print(f"  FAILED {t.label}: {f}")
    for c in checks:
        print(f"  CHECK FAILED: {c}")
    print()
    first = minirun.times.get("changes-run") if tools else None
    if first:
        rate = args.steps / statistics.median(first)
        verdict = "meets" if rate >= TARGET_STEPS_PER_S else "MISSES"
        cached = minirun.times.get("changes-cached")
        share = (
            f"; the cached rebuild takes {statistics.median(cached) / statistics.median(first):.0%} of it"
            if cached
            else ""
        )
        print(
            f"  minirun {rate:.1f} steps/s with a layer per step: {verdict} the {TARGET_STEPS_PER_S:.0f} steps/s target{share}"
        )
    print(
        "  leftovers   : "
        + ("none (no mounts, containers or temp dirs remain)" if not leftovers else "; ".join(leftovers) + " (removed)")
    )
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
