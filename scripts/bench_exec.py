#!/usr/bin/env python3
"""Benchmark `exec C true` into a running busybox container: minirun beside runc, crun and podman, in one run.

    .venv/bin/python scripts/bench_exec.py [--runs 30]

Each tool first starts one long-running container (`sleep 100000`) from the same busybox root
filesystem (images/busybox/rootfs.py), untimed; then `exec <it> true` is timed, round-robin
interleaved (the order rotates every round) so machine noise hits every tool alike:
  - minirun: a fresh store (`--root`), minirun byte-compiled first (as scripts/setup.sh does: with
    PYTHONDONTWRITEBYTECODE set every start would recompile), a foreground
    `minirun run --name bench busybox sh -c "echo ready; sleep 100000"` kept in the background.
  - runc and crun: `run -d` on an OCI bundle of its own from `runc spec` whose rootfs is an overlay
    (lower = the extracted busybox tar), `exec <id> true` timed. Where crun refuses this hybrid host
    (a controller in cgroup2), it runs in a helper process in a private mount namespace without
    /sys/fs/cgroup/unified, the host's mounts untouched (scripts/benchns.py); runc and the python
    floor are timed there too, as controls. --mount-v2-controllers instead changes the host for the run.
  - podman: its own storage in the temp dir, the tar imported, `podman run -d --network none`
    with the flags these machines need (docs: /work/shared/PEERS.md), `podman exec <id> true` timed.
  - floors: `nsenter -t <minirun's PID 1> -a true` (joining the same namespaces, no checks, no
    capability drop) and the interpreter's `python -c pass`.
A peer that fails to prepare is reported and skipped; everything created is removed at the end
(containers, mounts, cgroups, temp dirs) and the leftovers line says so. minirun runs with
host-wide names of this run's own (scripts/benchenv.py), removed at the end; podman's import runs
with a blob-info cache of its own, never the host's (tests/peers.py).
Shares its helpers with scripts/bench_start.py. Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_start import (  # noqa: E402  (the script's own directory, put on the path just above)
    HELPER_NOTE,
    MNT_DETACH,
    PODMAN_RUN,
    CommandFailed,
    add_mount_flag,
    cgroup_dirs,
    cleanup_tools,
    crun_refuses_this_host,
    defer_signals,
    minirun_env,
    mount,
    podman_command,
    podman_peer,
    prepare_bundle,
    prepare_rootfs,
    prepare_tools,
    remove_cgroups,
    remove_side_paths,
    remove_temp_dir,
    run,
    side_paths_present,
    tail,
    time_round_robin,
    umount,
    unfix_hybrid_cgroups,
    version,
)
from benchenv import HostNames, minirun_command, own_blob_cache, private_names  # noqa: E402
from benchns import InHelper, NamespaceHelper, print_pairs, runtime_pairs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PODMAN_IMAGE = "localhost/minirun-bench-exec-busybox:latest"
SLEEP = ["sleep", "100000"]
FLOOR = "floor: python -c pass"
TARGETS = (("docker exec (PEERS.md)", 0.116), ("runc exec (PEERS.md)", 0.023))


class Tool:
    """One container to exec into: `prepare` starts it (untimed), `once` times one exec."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.cmd: list[str] = []
        self.env: dict[str, str] | None = None
        self.times: list[float] = []
        self.failures: list[str] = []
        self.skipped: str | None = None
        self.left: list[str] = []

    def prepare(self) -> None:
        pass

    def once(self) -> float:
        t0 = time.perf_counter()
        p = subprocess.run(self.cmd, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, text=True)
        t = time.perf_counter() - t0
        if p.returncode != 0:
            raise CommandFailed(f"exit {p.returncode}: {tail(p)}")
        return t

    def record(self, i: int) -> None:
        self.times.append(self.once())

    def cleanup(self) -> None:
        pass


class Minirun(Tool):
    def __init__(self, root: Path) -> None:
        super().__init__("minirun exec bench true")
        self.root = root
        self.base = [*minirun_command(), "--root", str(root)]
        self.cmd = [*self.base, "exec", "bench", "true"]
        self.env = minirun_env()
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def prepare(self) -> None:
        run([sys.executable, "-m", "compileall", "-q", str(REPO / "minirun")])
        self.proc = subprocess.Popen(
            [*self.base, "run", "--name", "bench", "busybox", "sh", "-c", "echo ready; exec " + " ".join(SLEEP)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        # the first run also builds the busybox image: give it time
        if not select.select([self.proc.stdout], [], [], 120)[0] or self.proc.stdout.readline() != b"ready\n":
            raise CommandFailed(f"the container did not start: {self.proc.stderr.read1(4096)!r}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            [cid] = os.listdir(self.root / "containers")
            state = json.loads((self.root / "containers" / cid / "state.json").read_text())
            if state["Status"] == "running":
                self.pid = state["Pid"]
                break
            time.sleep(0.02)
        else:
            raise CommandFailed("the container never showed as running")
        self.once()  # warm-up

    def cleanup(self) -> None:
        if self.proc is None:
            return
        if self.pid and self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # PID 1 ignores the SIGTERM the CLI would forward
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.left.append("minirun run CLI (killed)")


class Nsenter(Tool):
    def __init__(self, target: Minirun) -> None:
        super().__init__("floor: nsenter -a into minirun's")
        self.target = target

    def prepare(self) -> None:
        if not self.target.pid or not shutil.which("nsenter"):
            raise CommandFailed("no minirun container (or no nsenter)")
        self.cmd = ["nsenter", "-t", str(self.target.pid), "-a", "true"]
        self.once()


class OciExec(Tool):
    """runc or crun: `run -d` of a sleeping container on an overlay, then `exec <it> true` timed.
    in_helper: run by benchns's helper, in a mount namespace without cgroup2 (dirs and id of its own)."""

    def __init__(self, name: str, binary: str, tmp: Path, bundle: Path, lower: Path, in_helper: bool = False) -> None:
        key = f"{name}-ns" if in_helper else name
        super().__init__(f"{name} exec true" + (" (in the helper)" if in_helper else ""))
        self.key, self.in_helper = key, in_helper
        self.name, self.binary, self.bundle, self.lower = name, binary, bundle, lower
        self.state = tmp / f"{key}-state"
        self.scratch = tmp / f"{key}-overlay"
        self.id = f"mrbx{os.getpid()}-{key}"
        self.cmd = [binary, "--root", str(self.state), "exec", self.id, "true"]
        self.mounted = False

    def prepare(self) -> None:
        self.state.mkdir()
        for d in ("upper", "work"):
            (self.scratch / d).mkdir(parents=True)
        config_path = self.bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["args"] = SLEEP
        config_path.write_text(json.dumps(config, indent=2))
        mount(
            "overlay",
            str(self.bundle / "rootfs"),
            "overlay",
            f"lowerdir={self.lower},upperdir={self.scratch / 'upper'},workdir={self.scratch / 'work'},index=off",
        )
        self.mounted = True
        # detached, so its stdio must be none of ours (a pipe would stay open): errors go to a file
        errors = self.scratch / "run-d.stderr"
        with open(errors, "w") as stderr:
            p = subprocess.run(
                [self.binary, "--root", str(self.state), "run", "-d", self.id],
                cwd=self.bundle,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        if p.returncode != 0:
            said = " | ".join(errors.read_text(errors="replace").strip().splitlines()[-3:])[-400:]
            raise CommandFailed(f"{self.name} run -d exited {p.returncode}: {said or '(no output)'}")
        self.once()

    def cleanup(self) -> None:
        if self.state.is_dir():
            subprocess.run(
                [self.binary, "--root", str(self.state), "delete", "--force", self.id],
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
            try:
                listed = (
                    json.loads(run([self.binary, "--root", str(self.state), "list", "--format", "json"]).stdout or "[]")
                    or []
                )
            except (CommandFailed, ValueError, OSError):
                listed = []
            self.left += [f"{self.name} container {c['id']}" for c in listed]
        if self.mounted:
            rootfs = str(self.bundle / "rootfs")
            try:
                umount(rootfs)
            except OSError:
                umount(rootfs, MNT_DETACH)


class Podman(Tool):
    def __init__(self, binary: str, tmp: Path, tar: Path, runtime: str | None = None) -> None:
        super().__init__("podman exec true")
        self.glob = podman_command(binary, tmp / "podman", runtime)
        self.tar = tar
        self.cgroup_parent = f"/minirun-bench-{os.getpid()}"
        self.name = f"mrbx{os.getpid()}"
        self.cmd = [*self.glob, "exec", self.name, "true"]

    def prepare(self) -> None:
        run(own_blob_cache([*self.glob, "import", "--quiet", str(self.tar), PODMAN_IMAGE]))
        run(
            [
                *self.glob,
                "run",
                "-d",
                "--name",
                self.name,
                "--network",
                "none",
                *PODMAN_RUN,
                "--cgroup-parent",
                self.cgroup_parent,
                PODMAN_IMAGE,
                *SLEEP,
            ]
        )
        self.once()

    def cleanup(self) -> None:
        subprocess.run(
            [*self.glob, "rm", "--force", "--time", "0", self.name], stdin=subprocess.DEVNULL, capture_output=True
        )
        try:
            ps = run([*self.glob, "ps", "--all", "--quiet"]).stdout.split()
        except (CommandFailed, OSError):
            ps = []
        self.left += [f"podman container {c}" for c in ps]
        if ps:
            subprocess.run([*self.glob, "rm", "--force", *ps], stdin=subprocess.DEVNULL, capture_output=True)
        subprocess.run([*self.glob, "rmi", "--all", "--force"], stdin=subprocess.DEVNULL, capture_output=True)
        self.left += [f"cgroup {d} (busy)" for d in remove_cgroups(self.cgroup_parent.strip("/"))]


def exec_pairs(tools: list) -> list[tuple[str, list[float], list[float]]]:
    """minirun against each OCI runtime's exec, and the controls (benchns.runtime_pairs)."""
    minirun = tools[0] if tools and isinstance(tools[0], Minirun) else None
    oci = {(t.name, t.in_helper): t for t in tools if hasattr(t, "in_helper")}
    floors = {isinstance(t, InHelper): t for t in tools if t.label.startswith(FLOOR)}
    return runtime_pairs(minirun, oci, lambda t: (t.label, t.times), floors)


def fmt(t: float | None) -> str:
    return "      –" if t is None else f"{t:7.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="timed execs per tool (default 30)")
    add_mount_flag(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_exec: must run as root", file=sys.stderr)
        return 2
    stop = defer_signals()

    side_before = side_paths_present()
    binaries = {n: shutil.which(n) for n in ("runc", "crun", "podman")}
    print(
        f"bench_exec: `exec C true` into a running busybox container, median of {args.runs} runs each, "
        "interleaved round-robin"
    )
    print(
        f"  machine     : {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({sys.executable})"
    )
    for n, b in binaries.items():
        print(f"  {n:<12}: " + (version([b, "--version"]) if b else "not installed"))
    sys.stdout.flush()

    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-exec-"))
    names: HostNames | None = None
    tools: list[Tool] = []
    hybrid_fix: list[tuple[str, bool]] = []
    cgroups_before: set[str] | None = None
    failed = False
    leftovers: list[str] = []
    helper: NamespaceHelper | None = None
    try:
        # --mount-v2-controllers: crun and podman's crun run on the host; else, where crun refuses
        # this host, podman runs runc and crun runs in the helper
        hybrid_fix, runtime = podman_peer(args.mount_v2_controllers)
        crun_in_helper = bool(binaries["crun"]) and crun_refuses_this_host()
        if crun_in_helper:
            print(HELPER_NOTE)
        cgroups_before = cgroup_dirs()
        names = private_names(tmp)  # before the first minirun
        tar, lower = prepare_rootfs(tmp)
        minirun = Minirun(tmp / "store")
        tools += [minirun, Nsenter(minirun)]
        spec_binary = binaries["runc"] or binaries["crun"]
        oci = [(name, crun_in_helper and name == "crun") for name in ("runc", "crun") if binaries[name]]
        if crun_in_helper and binaries["runc"]:
            oci.append(("runc", True))  # the control: runc in the helper too
        made = []
        for name, in_helper in oci:
            key = f"{name}-ns" if in_helper else name
            bundle = prepare_bundle(tmp, spec_binary, f"bundle-{key}")
            made.append(OciExec(name, binaries[name], tmp, bundle, lower, in_helper))
        tools += [t for t in made if not t.in_helper]
        if crun_in_helper:
            in_helper: dict[str, Tool] = {t.key: t for t in made if t.in_helper}
            # the floor there too: that the helper times a command as this process does
            in_helper["floor"] = Tool(f"{FLOOR} (in the helper)")
            in_helper["floor"].cmd = [sys.executable, "-c", "pass"]
            helper = NamespaceHelper(in_helper, tmp)
            if helper.failed:
                print(f"  note        : the helper could not start: {helper.failed}")
            tools += [helper.adopt(key) for key in in_helper if key != "floor"]
        if binaries["podman"]:
            tools.append(Podman(binaries["podman"], tmp, tar, runtime))
        python = Tool(FLOOR)
        python.cmd = [sys.executable, "-c", "pass"]
        tools.append(python)
        if helper:
            tools.append(helper.adopt("floor"))
        # a peer that cannot prepare is reported and skipped; minirun failing is the benchmark failing
        failed = minirun in prepare_tools(tools, stop, errors=(CommandFailed, OSError, ValueError))
        failed = time_round_robin(tools, args.runs, stop) or failed
    except KeyboardInterrupt:
        print("interrupted; cleaning up; the figures below are partial", file=sys.stderr)
        failed = True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cleanup_tools(tools)
        for t in tools:
            leftovers += t.left
        if helper:
            leftovers += helper.close()
        if names:
            leftovers += names.cleanup()
        leftovers += remove_temp_dir(tmp)
        new_cgroups = cgroup_dirs() - cgroups_before if cgroups_before is not None else set()
        ours = (f"mrbx{os.getpid()}", f"minirun-bench-{os.getpid()}")
        for d in sorted(new_cgroups, key=len, reverse=True):
            if any(part.startswith(ours) for part in Path(d).parts):
                try:
                    os.rmdir(d)
                except OSError:
                    leftovers.append(f"cgroup {d} (busy)")
        remove_side_paths(side_before)
        unfix_hybrid_cgroups(hybrid_fix)

    base = statistics.median(tools[0].times) if tools and tools[0].times else None
    w = max([len(t.label) for t in tools] + [20]) + 2
    print()
    print(f"  {'what':<{w}}{'median s':>9}{'min':>8}{'max':>8}{'×minirun':>10}{'ok':>7}")
    for t in tools:
        if t.skipped:
            print(f"  {t.label:<{w}}  NOT TIMED: {t.skipped}")
            continue
        med = statistics.median(t.times) if t.times else None
        ratio = f"{med / base:9.2f}×" if med is not None and base else "        –"
        print(
            f"  {t.label:<{w}}{fmt(med):>9}{fmt(min(t.times) if t.times else None):>8}"
            f"{fmt(max(t.times) if t.times else None):>8}{ratio:>10}{len(t.times):>4}/{args.runs}"
        )
    for t in tools:
        for f in t.failures[:3]:
            print(f"  FAILED {t.label}: {f}")
    print_pairs(exec_pairs(tools), args.runs)
    print()
    if base is not None:
        for label, target in TARGETS:
            print(
                f"  minirun exec {base * 1000:.0f} ms vs {label} {target * 1000:.0f} ms: "
                f"{'within' if base <= target else 'over'}"
            )
    print(
        "  leftovers   : "
        + (
            "none (no containers, mounts, cgroups or temp dirs remain)"
            if not leftovers
            else "; ".join(leftovers) + " (removed)"
        )
    )
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
