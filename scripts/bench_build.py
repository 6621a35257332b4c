#!/usr/bin/env python3
"""Benchmark `build`: 20 trivial RUN steps, and a 12-step file rebuilt from the cache, minirun beside
`podman build --layers`, in one run.

    .venv/bin/python scripts/bench_build.py [--rounds 3] [--steps 20] [--cached-runs 21] [--only-cached]

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

The "12 steps, all cached" row (issue 16's): a Containerfile of the usual kinds of step (FROM, ARG,
ENV, WORKDIR, two COPYs of a context with a .dockerignore, RUNs, LABEL, EXPOSE, CMD), built once
untimed, then rebuilt unchanged `--cached-runs` times by each tool in turn, A B B A ..., the ratio
taken pair by pair. docker's figure for the same row is PEERS.md's (its daemon is not run here).

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
DOCKER_CACHED_12_S = 0.076  # PEERS.md: docker 20.10's fully cached 12-step build on these machines
MIXED_STEPS = 12
PODMAN_IMAGE = "localhost/minirun-bench-build-busybox:latest"
# what the installed `minirun` script runs (the command table finds build's module)
MINIRUN_ENTRY = "import sys; from minirun.cli.main import main; sys.argv[0] = 'minirun'; main()"


def containerfile(base: str, steps: int, empty: bool) -> str:
    body = "".join("RUN true\n" if empty else f"RUN echo {i} > /step{i}\n" for i in range(1, steps + 1))
    return f"FROM {base}\n{body}"


def mixed_containerfile(base: str) -> str:
    """12 steps of the kinds a service's Containerfile has; two COPYs read the context."""
    return (
        f"FROM {base}\n"
        "ARG VERSION=1.0\n"
        "ENV APP_HOME=/app MODE=prod\n"
        "WORKDIR /app\n"
        "COPY app.conf /etc/app.conf\n"
        "COPY src/ /app/src/\n"
        "RUN echo $VERSION > /app/version\n"
        "RUN mkdir -p /app/bin && cp /app/src/main.sh /app/bin/main\n"
        "ENV PORT=8080\n"
        "LABEL org.example.name=bench org.example.version=$VERSION\n"
        "EXPOSE 8080\n"
        'CMD ["sh", "/app/bin/main"]\n'
    )


def mixed_context(ctx: Path) -> None:
    """A small service's context: a config, 20 source files, and logs .dockerignore keeps out."""
    (ctx / "app.conf").write_text("listen 8080\n")
    (ctx / "src").mkdir()
    (ctx / "src" / "main.sh").write_text("#!/bin/sh\necho hello\n")
    for i in range(19):
        (ctx / "src" / f"lib{i}.sh").write_text(f"f{i}() {{ echo {i}; }}\n" * 20)
    (ctx / "logs").mkdir()
    (ctx / "logs" / "today.log").write_text("noise\n" * 100)
    (ctx / ".dockerignore").write_text("logs\n*.tmp\n")


class Builder:
    """One tool's build commands for the two Containerfiles."""

    def __init__(
        self, label: str, base_cmd: list[str], env: dict[str, str] | None, tmp: Path, base_image: str, steps: int
    ) -> None:
        self.label = label
        self.base_cmd = base_cmd
        self.env = env
        self.contexts: dict[str, Path] = {}
        for variant in ("changes", "empty", "mixed"):
            ctx = tmp / f"{label}-{variant}"
            ctx.mkdir()
            if variant == "mixed":
                (ctx / "Containerfile").write_text(mixed_containerfile(base_image))
                mixed_context(ctx)
            else:
                (ctx / "Containerfile").write_text(containerfile(base_image, steps, variant == "empty"))
            self.contexts[variant] = ctx
        self.times: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.skipped: str | None = None
        self.pairs: list[float | None] = []  # the timed cached 12-step rebuilds, in pair order

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


def check_minirun(minirun: Minirun, variant: str, output: str, expected: int) -> list[str]:
    """A cached rebuild used the cache for every step and left no container."""
    problems = []
    hits = output.count("---> Using cache")
    if hits != expected:
        problems.append(f"minirun cached rebuild ({variant}) used the cache for {hits} of {expected} steps")
    if minirun.leftovers():
        problems.append("minirun left containers behind")
    return problems


def time_cached_pairs(tools: list[Builder], minirun: Minirun, runs: int, stop: list[int], checks: list[str]) -> bool:
    """The 12-step file: one untimed build by each tool fills its cache, then `runs` timed cached
    rebuilds by each in turn, the order flipping every pair (A B B A ...). A failed run leaves a
    None in its place so the pairs stay aligned. True if any command failed."""
    failed = False
    live = [t for t in tools if not t.skipped]
    for t in live:
        try:
            t.once("mixed", True)
        except (CommandFailed, OSError) as e:
            t.failures.append(f"first build of the 12-step file: {e}")
            t.skipped = "its first build of the 12-step file failed"
            failed = True
        t.times.pop("mixed-cached", None)  # that one ran every step: not a cached rebuild
    live = [t for t in live if not t.skipped]
    for i in range(runs):
        for t in live if i % 2 == 0 else live[::-1]:
            if stop:
                raise KeyboardInterrupt
            try:
                p = t.once("mixed", True)
            except (CommandFailed, OSError) as e:
                t.failures.append(f"cached 12-step rebuild {i + 1}: {e}")
                t.pairs.append(None)
                failed = True
                continue
            t.pairs.append(t.times["mixed-cached"][-1])
            if t is minirun:
                checks += check_minirun(minirun, "12 steps", p.stdout, MIXED_STEPS - 1)
    return failed


def print_cached_pairs(tools: list[Builder], minirun: Minirun | None, podman: Podman | None, runs: int) -> None:
    """The 12-step cached rows: medians, and minirun/podman as the median of the pairs' ratios."""
    print()
    print(
        f"  {MIXED_STEPS} steps, all cached (FROM ARG ENV WORKDIR COPY COPY RUN RUN ENV LABEL EXPOSE CMD), {runs} pairs"
    )
    print(f"  {'what':<50}{'median ms':>10}{'min':>8}{'max':>8}")
    for t in tools:
        done = [x for x in t.pairs if x is not None]
        if t.skipped or not done:
            print(f"  {t.label + ' rebuild, all cached':<50}  NOT TIMED: {t.skipped or 'no successful run'}")
            continue
        ms = [x * 1000 for x in done]
        print(f"  {t.label + ' rebuild, all cached':<50}{statistics.median(ms):10.1f}{min(ms):8.1f}{max(ms):8.1f}")
    print(f"  {'docker 20.10 (PEERS.md; its daemon is not run here)':<50}{DOCKER_CACHED_12_S * 1000:10.1f}")
    if minirun is None:
        return
    ours = [x for x in minirun.pairs if x is not None]
    if podman is not None:
        ratios = [a / b for a, b in zip(minirun.pairs, podman.pairs) if a is not None and b is not None]
        if ratios:
            print(f"  minirun/podman, median of {len(ratios)} pairs: {statistics.median(ratios):.2f}×")
    if ours:
        print(
            f"  minirun/docker (PEERS.md figure): {statistics.median(ours) / DOCKER_CACHED_12_S:.2f}× (target <= 1.0×)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of every build (default 3)")
    ap.add_argument("--steps", type=int, default=20, help="RUN steps in each Containerfile (default 20)")
    ap.add_argument(
        "--cached-runs", type=int, default=21, help="timed cached rebuilds of the 12-step file, each tool (default 21)"
    )
    ap.add_argument("--only-cached", action="store_true", help="time only the 12-step cached rebuild row")
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
        for i in range(0 if args.only_cached else args.rounds):
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
                            checks += check_minirun(minirun, variant, p.stdout, args.steps)
        failed = time_cached_pairs(tools, minirun, args.cached_runs, stop, checks) or failed
        failed = failed or bool(checks)
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
    for key, text in [] if args.only_cached else rows:
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
    print_cached_pairs(tools, minirun if tools else None, podman, args.cached_runs)
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
