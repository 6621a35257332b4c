#!/usr/bin/env python3
"""Benchmark container start: `minirun run --rm --network none busybox true` beside runc, crun and podman, in one run.

    .venv/bin/python scripts/bench_start.py [--runs 20]

Every tool starts the same busybox root filesystem (the tar from images/busybox/rootfs.py) and runs
`true` in it. Prepared once, untimed, in a temporary directory:
  - minirun: a fresh store (`--root`); the first `run` builds the busybox image, then one warm-up run.
    Timed twice: as is, and with `--security-opt seccomp=unconfined`; the median of the same-round
    differences is what the default seccomp filter costs (its program comes from the store's cache).
  - runc / crun: an OCI bundle from `runc spec` (or `crun spec`) with `"terminal": false` and args
    `["true"]`, rootfs = the busybox tar extracted into a lower dir. For every run a FRESH overlay
    (lower = that dir, new upper and work dirs, index=off) is mounted on bundle/rootfs and removed
    after. Two figures: "run" times the `runc run` command alone, "mount+run+umount" times
    mkdir upper/work + mount(2) + `runc run` + umount(2) + removal of upper/work, i.e. what
    minirun's own `run --rm` has to do. Their state lives under the temp dir (`--root`).
  - podman: its own storage under the temp dir (`--root`, `--runroot`, `--tmpdir`), the busybox tar
    imported with `podman import`; `podman run --rm --network none` with the flags these machines
    need (cgroupfs, file events, overlay driver, rlimits within root's hard limit), cgroups under a
    parent of this benchmark's own.
  - the interpreter's floor: `sys.executable -c pass` and `sys.executable -S -c pass`.
  - the floor of a start in Python (scripts/startfloor.py): `python -S -P`, minirun.linux, one fork
    into the five namespaces of runc's bundle, the overlay of the same lower dir (fresh upper and
    work each run), /proc and a /dev tmpfs, pivot_root, exec true; then the wait and the removal of
    upper and work. None of minirun's records, cgroups, security or logs: what remains of the
    runtime's start once only what any Python runtime must do is left.
minirun runs with host-wide names of this run's own (scripts/benchenv.py: its bridges, nft table,
run dir and cgroup parent), never the host's minirun0, `table ip minirun`, /run/minirun or
<cgroup>/minirun, and they are removed at the end. podman's `import` runs with a blob-info cache of
its own (tests/peers.py), never the host's /var/lib/containers/cache.
crun (podman's default runtime here) refuses hybrid cgroups while a controller lives only in cgroup
v2 (hugetlb on these VMs). There crun's rows come from a helper process (scripts/benchns.py) in a
private mount namespace where /sys/fs/cgroup/unified is unmounted, the host's mounts untouched:
crun's containers get the v1 cgroups runc's get but no cgroup2 cgroup. The helper times each
command as this process does; runc is timed in it too, as a control. podman runs runc there.
--mount-v2-controllers instead mounts that controller as a v1 hierarchy for the run (a change to
the host, undone at the end), so crun and podman's crun run as they are.

The timed runs are interleaved round-robin (the order rotates each round) so machine noise hits
every tool alike. Each time is the wall time of one command as seen from this Python process
(fork + exec + wait). A command that exits non-zero is reported and not counted. Everything created
is removed at the end (mounts, containers, cgroups, temp dirs), and the leftovers check says so.

This is a measurement, not a test: it exits 0 whatever the figures, 1 if a command failed or
something was left behind.
Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchenv import HostNames, minirun_command, own_blob_cache, private_names
from benchns import InHelper, NamespaceHelper, print_pairs, runtime_pairs

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 0.150
SECCOMP_TARGET_S = 0.003  # what the default seccomp filter may add to a start
PODMAN_IMAGE = "localhost/minirun-bench-busybox:latest"
PODMAN_GLOBAL = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
PODMAN_RUN = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
# State that the peers create outside the temp dir (podman's network config, the state dir of the
# crun that podman runs); removed at the end only if this run made them. Not /var/lib/containers:
# its blob-info cache is never written (own_blob_cache), and another user's must stay.
SIDE_PATHS = (
    "/run/containers",
    "/run/libpod",
    "/run/crun",
    "/run/runc",
    "/etc/containers/networks",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
FLOOR = "python -S -c pass"
START_FLOOR = "python floor of a start (startfloor.py)"
HELPER_NOTE = """\
  note        : crun refuses this hybrid host (a controller in cgroup2). Its rows come from a helper
                process that this benchmark forks into a private mount namespace where
                /sys/fs/cgroup/unified is unmounted (there only: the host's mounts are not changed).
                crun's containers there get the v1 cgroups runc's get, but no cgroup2 cgroup (the
                hugetlb controller's). The helper times each command itself (fork+exec+wait, as for
                every row); runc and the floor are timed in it too, as controls. podman runs runc."""
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


class CommandFailed(Exception):
    pass


# -- small helpers -----------------------------------------------------------------------------


def mount(source: str, target: str, fstype: str, data: str) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), 0, data.encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount({fstype}) on {target}: {os.strerror(e)}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount2({target}): {os.strerror(e)}")


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, str, str]]:
    """(source, mount point, fstype) of every mount this process sees."""
    with open("/proc/self/mounts") as f:
        rows = [line.split() for line in f]
    return [(_unescape(r[0]), _unescape(r[1]), r[2]) for r in rows if len(r) >= 3]


def mounts_under(path: Path) -> list[str]:
    p = str(path).rstrip("/") + "/"
    return [m for _, m, _ in mounts() if m.startswith(p) or m == str(path)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise CommandFailed(f"`{' '.join(cmd)}` exited {p.returncode}: {tail(p)}")
    return p


def tail(p: subprocess.CompletedProcess) -> str:
    text = ((p.stderr or "") + (p.stdout or "")).strip().splitlines()
    return " | ".join(text[-3:])[-400:] or "(no output)"


def version(cmd: list[str]) -> str:
    try:
        out = run(cmd).stdout.strip().splitlines()
        return out[0] if out else "?"
    except (CommandFailed, OSError):
        return "?"


def minirun_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("MINIRUN_ROOT", None)
    return env


# -- the tools ---------------------------------------------------------------------------------


class Tool:
    """One command to time. `prepare` is untimed; `once` returns (timed seconds, extra seconds or
    None); a failure raises CommandFailed."""

    def __init__(self, label: str, cmd: list[str], env: dict[str, str] | None = None):
        self.label = label
        self.cmd = cmd
        self.env = env
        self.times: list[float] = []
        self.extra: list[float] = []  # the "mount+run+umount" figure where there is one
        self.failures: list[str] = []
        self.skipped: str | None = None  # why the tool is not timed at all

    def prepare(self) -> None:
        pass

    def once(self, i: int) -> tuple[float, float | None]:
        t0 = time.perf_counter()
        p = subprocess.run(self.cmd, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, text=True)
        t = time.perf_counter() - t0
        if p.returncode != 0:
            raise CommandFailed(f"exit {p.returncode}: {tail(p)}")
        return t, None

    def record(self, i: int) -> None:
        """Time run `i` and keep its figures (what `time_round_robin` calls)."""
        main_t, extra_t = self.once(i)
        self.times.append(main_t)
        if extra_t is not None:
            self.extra.append(extra_t)

    def cleanup(self) -> None:
        pass


class Minirun(Tool):
    """`minirun run --rm [run_args] busybox true` on the store `root`."""

    def __init__(self, root: Path, label: str = "minirun run --rm busybox true", run_args: tuple[str, ...] = ()):
        super().__init__(
            label,
            [*minirun_command(), "--root", str(root), "run", "--rm", *run_args, "busybox", "true"],
            env=minirun_env(),
        )
        self.root = root

    def prepare(self) -> None:
        # the first run builds the busybox image into the store (and, with a bridge, maybe the
        # bridge); then one warm-up run
        for _ in range(2):
            self.once(-1)

    def leftovers(self) -> list[str]:
        cdir = self.root / "containers"
        if cdir.is_dir():
            return [f"minirun container dir {c}" for c in cdir.iterdir()]
        return []


class StartFloor(Tool):
    """scripts/startfloor.py on the runtimes' lower dir, into `base` (its overlay's mount point,
    base/root, made here; upper and work are made and removed by each run)."""

    def __init__(self, py: str, lower: Path, base: Path):
        super().__init__(START_FLOOR, [py, "-S", "-P", str(REPO / "scripts" / "startfloor.py"), str(lower), str(base)])
        (base / "root").mkdir(parents=True)


class OciRuntime(Tool):
    """runc or crun on a bundle whose rootfs is a fresh overlay per run."""

    def __init__(self, name: str, binary: str, tmp: Path, bundle: Path, lower: Path, in_helper: bool = False):
        # in_helper: run by benchns's helper, in a mount namespace without cgroup2 (its own dirs and names)
        key, where = (f"{name}-ns", ", in the helper") if in_helper else (name, "")
        self.name = name
        self.state = tmp / f"{key}-state"
        self.scratch = tmp / f"{key}-overlays"
        self.bundle = bundle
        self.lower = lower
        self.prefix = f"mrb{os.getpid()}-{key}"
        super().__init__(f"{name} run (on a fresh overlay{where})", [binary, "--root", str(self.state), "run"])
        self.extra_label = f"{name} mount+run+umount{where}"

    def prepare(self) -> None:
        self.state.mkdir()
        self.scratch.mkdir()
        self.once(-1)  # warm-up

    def once(self, i: int) -> tuple[float, float | None]:
        rootfs = str(self.bundle / "rootfs")
        d = self.scratch / str(i)
        t0 = time.perf_counter()
        d.mkdir()
        (d / "upper").mkdir()
        (d / "work").mkdir()
        mount(
            "overlay", rootfs, "overlay", f"lowerdir={self.lower},upperdir={d / 'upper'},workdir={d / 'work'},index=off"
        )
        try:
            t1 = time.perf_counter()
            p = subprocess.run(
                self.cmd + [f"{self.prefix}-{i + 1}"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=self.bundle,
            )
            t2 = time.perf_counter()
        finally:
            umount(rootfs)
            shutil.rmtree(d)
        t3 = time.perf_counter()
        if p.returncode != 0:
            raise CommandFailed(f"exit {p.returncode}: {tail(p)}")
        return t2 - t1, t3 - t0

    def cleanup(self) -> None:
        if not self.state.is_dir():
            return
        try:
            listed = (
                json.loads(run([self.cmd[0], "--root", str(self.state), "list", "--format", "json"]).stdout or "[]")
                or []
            )
        except (CommandFailed, ValueError, OSError):
            listed = []
        for c in listed:
            subprocess.run(
                [self.cmd[0], "--root", str(self.state), "delete", "--force", c["id"]],
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
        self.left = [f"{self.name} container {c['id']}" for c in listed]

    def leftovers(self) -> list[str]:
        return getattr(self, "left", [])


class Podman(Tool):
    def __init__(self, binary: str, tmp: Path, tar: Path, runtime: str | None = None):
        self.glob = podman_command(binary, tmp / "podman", runtime)
        self.tar = tar
        self.cgroup_parent = f"/minirun-bench-{os.getpid()}"
        super().__init__(
            "podman run --rm --network none",
            [
                *self.glob,
                "run",
                "--rm",
                "--network",
                "none",
                *PODMAN_RUN,
                "--cgroup-parent",
                self.cgroup_parent,
                PODMAN_IMAGE,
                "true",
            ],
        )
        self.left: list[str] = []

    def prepare(self) -> None:
        run(own_blob_cache([*self.glob, "import", "--quiet", str(self.tar), PODMAN_IMAGE]))
        self.once(-1)  # warm-up

    def cleanup(self) -> None:
        try:
            ps = run([*self.glob, "ps", "--all", "--quiet"]).stdout.split()
        except (CommandFailed, OSError):
            ps = []
        self.left = [f"podman container {c}" for c in ps]
        if ps:
            subprocess.run([*self.glob, "rm", "--force", *ps], stdin=subprocess.DEVNULL, capture_output=True)
        subprocess.run([*self.glob, "rmi", "--all", "--force"], stdin=subprocess.DEVNULL, capture_output=True)
        self.left += [f"cgroup {d} (busy)" for d in remove_cgroups(self.cgroup_parent.strip("/"))]

    def leftovers(self) -> list[str]:
        return self.left


# -- cgroups -----------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    return [Path(m) for _, m, t in mounts() if t in ("cgroup", "cgroup2") and m.startswith(str(CGROUP_ROOT))]


def remove_cgroups(name: str) -> list[str]:
    """rmdir <hierarchy>/<name> and everything below it, deepest first, after killing what still
    runs in it (only this benchmark's processes live there); returns what stayed."""
    stayed: list[str] = []
    for _attempt in range(20):
        stayed, pids = [], set()
        for h in cgroup_hierarchies():
            top = h / name
            if not top.is_dir():
                continue
            dirs = [Path(d) for d, _, _ in os.walk(top)]
            for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
                try:
                    pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
                except OSError:
                    pass
                try:
                    d.rmdir()
                except OSError:
                    stayed.append(str(d))
        if not stayed:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return stayed


def cgroup_dirs() -> set[str]:
    """Every cgroup directory in every hierarchy (a few hundred at most here)."""
    out = set()
    for h in cgroup_hierarchies():
        for d, _, _ in os.walk(h):
            out.add(d)
    return out


def crun_refuses_this_host() -> bool:
    """A hybrid layout whose cgroup2 mount carries a controller (hugetlb on these VMs): crun refuses it."""
    unified = CGROUP_ROOT / "unified" / "cgroup.controllers"
    return unified.is_file() and bool(unified.read_text().split())


def podman_peer(mount_v2_controllers: bool) -> tuple[list[tuple[str, bool]], str | None]:
    """How a benchmark runs podman beside minirun without changing the host unasked: (the
    controllers it mounted, to give to unfix_hybrid_cgroups; the OCI runtime podman is to use,
    None for its own). Where crun refuses this host, podman runs runc, unless the flag asks to
    mount the v2-only controller as a v1 hierarchy for the run."""
    if not crun_refuses_this_host():
        return [], None
    if mount_v2_controllers:
        return fix_hybrid_cgroups(), None
    return [], "runc" if shutil.which("runc") else None


def runtime_option(runtime: str | None, base: Path) -> list[str]:
    """podman's --runtime. runc gets its state under `base` (a two-line script adds --root): podman
    passes it no root, and the host's /run/runc is not the benchmark's to make."""
    if runtime != "runc":
        return ["--runtime", runtime] if runtime else []
    base.mkdir(parents=True, exist_ok=True)
    script = base / "runc"
    script.write_text(f'#!/bin/sh\nexec runc --root "{base}/runc-root" "$@"\n')
    script.chmod(0o755)
    return ["--runtime", str(script)]


def podman_command(binary: str, base: Path, runtime: str | None) -> list[str]:
    """podman with storage, run and temp dirs of its own under `base` (never the host's), the
    flags these machines need, and `runtime` (podman_peer)."""
    return [
        binary,
        "--root",
        str(base / "root"),
        "--runroot",
        str(base / "run"),
        "--tmpdir",
        str(base / "tmp"),
        *PODMAN_GLOBAL,
        *runtime_option(runtime, base),
    ]


def add_mount_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mount-v2-controllers",
        action="store_true",
        help="on a hybrid host whose cgroup2 mount carries a controller, mount it as a v1 hierarchy "
        "for the run (host-wide, undone at the end) so podman's crun (and crun) can run; without it podman "
        "runs runc",
    )


def forget_podman(base: list[str], dirs: list[str]) -> None:
    """Remove a benchmark's podman containers and images by its own root, then that root: never
    `podman system reset`, which also clears host-wide state (/run/libpod) other podman users need."""
    subprocess.run([*base, "rm", "-a", "-f", "-t", "0"], capture_output=True)
    subprocess.run([*base, "rmi", "-a", "-f"], capture_output=True)
    for directory in dirs:
        for point in sorted(mounts_under(Path(directory)), key=len, reverse=True):
            try:
                umount(point, MNT_DETACH)
            except OSError:
                pass
        shutil.rmtree(directory, ignore_errors=True)
    # conmon's cgroup, <hierarchy>/libpod_parent/conmon, which podman leaves: when empty (another
    # podman's running conmon keeps it), as tests/peers.remove_conmon_cgroups does; `podman rm`
    # returns before its conmons are gone, hence the few seconds' grace
    deadline = time.monotonic() + 5
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for path in (hierarchy / "libpod_parent" / "conmon", hierarchy / "libpod_parent"):
            while True:
                try:
                    path.rmdir()
                except OSError as exc:
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                break


def fix_hybrid_cgroups() -> list[tuple[str, bool]]:
    """On a hybrid cgroup layout, mount each controller that lives only in v2 as a v1 hierarchy
    (crun refuses otherwise). Returns the mount points made, for `unfix_hybrid_cgroups`."""
    unified = CGROUP_ROOT / "unified" / "cgroup.controllers"
    if not unified.is_file():
        return []
    made = []
    for ctl in unified.read_text().split():
        target = CGROUP_ROOT / ctl
        if os.path.ismount(target):
            continue
        created = not target.exists()
        try:
            target.mkdir(exist_ok=True)
            mount("cgroup", str(target), "cgroup", ctl)
        except OSError as e:
            print(f"  note        : could not mount the {ctl} controller as cgroup v1 ({e}); crun may refuse")
            if created:
                target.rmdir()
            continue
        made.append((str(target), created))
    return made


def unfix_hybrid_cgroups(made: list[tuple[str, bool]]) -> None:
    """Undo `fix_hybrid_cgroups`; a failure is printed, not raised (it runs during cleanup)."""
    try:
        for target, created in made:
            try:
                umount(target)
            except OSError:
                umount(target, MNT_DETACH)
            if created:
                os.rmdir(target)
    except OSError as e:
        print(f"could not undo the cgroup fix: {e}", file=sys.stderr)


# -- the run of a benchmark: prepare, time, clean up -------------------------------------------
# Duck-typed over the tools: each has label, prepare(), record(i), cleanup(), skipped, failures.


def prepare_tools(tools: list, stop: list[int], errors: tuple = (CommandFailed, OSError)) -> list:
    """Prepare every tool, untimed; one whose preparation fails is marked skipped and not timed.
    Returns the tools that failed."""
    failed = []
    for t in tools:
        if stop:
            raise KeyboardInterrupt
        try:
            t.prepare()
        except errors as e:
            t.skipped = f"preparation failed: {e}"
            failed.append(t)
    return failed


def time_round_robin(tools: list, runs: int, stop: list[int]) -> bool:
    """`runs` rounds of one timed run of every tool not skipped, the order rotating each round so
    machine noise hits every tool alike; a failed run is noted on its tool. True if any failed."""
    failed = False
    live = [t for t in tools if not t.skipped]
    for i in range(runs):
        k = i % len(live) if live else 0
        for t in live[k:] + live[:k]:
            if stop:
                raise KeyboardInterrupt
            try:
                t.record(i)
            except (CommandFailed, OSError) as e:
                t.failures.append(f"run {i + 1}: {e}")
                failed = True
    return failed


def cleanup_tools(tools: list) -> None:
    for t in tools:
        try:
            t.cleanup()
        except Exception as e:  # keep cleaning the rest
            print(f"cleanup of {t.label}: {e}", file=sys.stderr)


def remove_temp_dir(tmp: Path) -> list[str]:
    """Unmount what is still mounted under `tmp`, then remove it (kept if a mount stays).
    Returns the mounts found, as leftovers."""
    found = []
    for m in sorted(mounts_under(tmp), key=len, reverse=True):
        found.append(f"mount {m}")
        try:
            umount(m)
        except OSError:
            umount(m, MNT_DETACH)
    if mounts_under(tmp):
        print(f"mounts remain under {tmp}; not removing it", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return found


def side_paths_present() -> set[str]:
    return {p for p in SIDE_PATHS if os.path.lexists(p)}


def remove_side_paths(before: set[str]) -> None:
    """Remove the peers' state outside the temp dir (SIDE_PATHS) that this run made."""
    for p in SIDE_PATHS:
        if p not in before and os.path.lexists(p):
            shutil.rmtree(p, ignore_errors=True)


# -- main --------------------------------------------------------------------------------------


def fmt(t: float | None) -> str:
    return "      –" if t is None else f"{t:7.3f}"


def prepare_rootfs(tmp: Path) -> tuple[Path, Path]:
    tar = tmp / "busybox.tar"
    with open(tar, "wb") as f:
        subprocess.run([sys.executable, str(REPO / "images" / "busybox" / "rootfs.py")], stdout=f, check=True)
    lower = tmp / "lower"
    lower.mkdir()
    with tarfile.open(tar) as tf:
        if hasattr(tarfile, "fully_trusted_filter"):
            tf.extractall(lower, numeric_owner=True, filter="fully_trusted")
        else:
            tf.extractall(lower, numeric_owner=True)
    return tar, lower


def prepare_bundle(tmp: Path, spec_binary: str, name: str = "bundle") -> Path:
    bundle = tmp / name
    bundle.mkdir()
    run([spec_binary, "spec"], cwd=bundle)
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    cfg["root"]["path"] = "rootfs"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (bundle / "rootfs").mkdir()
    return bundle


def oci_pairs(tools: list) -> list[tuple[str, list[float], list[float]]]:
    """minirun against each OCI runtime's mount+run+umount (what minirun's `run --rm` does too), and
    the controls (benchns.runtime_pairs), those of the runtimes timing `run` alone."""
    minirun = tools[0] if tools and isinstance(tools[0], Minirun) else None
    oci = {(t.name, isinstance(t, InHelper)): t for t in tools if hasattr(t, "extra_label")}
    floors = {isinstance(t, InHelper): t for t in tools if t.label.startswith(FLOOR)}
    pairs = runtime_pairs(minirun, oci, lambda t: (t.extra_label, t.extra), floors, " (run)")
    # how far the floor itself is from runc, and how much of minirun's start is above it
    floor = next((t for t in tools if isinstance(t, StartFloor)), None)
    runc = oci.get(("runc", False))
    if floor is not None:
        if minirun is not None:
            pairs.insert(0, (f"minirun ÷ {START_FLOOR}", minirun.times, floor.times))
        if runc is not None:
            pairs.append((f"{START_FLOOR} ÷ {runc.extra_label}", floor.times, runc.extra))
    return pairs


def defer_signals() -> list[int]:
    """SIGINT/SIGTERM/SIGHUP are recorded in the returned list, so the benchmark stops after the
    command in flight and cleans up; a second signal interrupts at once."""
    stop: list[int] = []

    def on_signal(signum, _frame):
        stop.append(signum)
        if len(stop) > 1:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return stop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    ap.add_argument(
        "--mount-v2-controllers",
        action="store_true",
        help="on a hybrid host whose cgroup2 mount carries a controller, mount it as a v1 hierarchy "
        "for the run (host-wide, undone at the end) so crun and podman's crun run on the host; "
        "without it crun runs in a helper's mount namespace without cgroup2 and podman runs runc",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_start: must run as root (containers, overlay mounts)", file=sys.stderr)
        return 2
    # A signal stops the benchmark after the command in flight (killing podman mid-run would strand
    # its conmon and container); a second one interrupts at once. Cleanup runs either way.
    stop = defer_signals()

    side_before = side_paths_present()  # before `crun --version` makes /run/crun
    py = sys.executable
    binaries = {n: shutil.which(n) for n in ("runc", "crun", "podman")}
    print(f"bench_start: container start, median wall time of {args.runs} runs each, interleaved round-robin")
    print(
        f"  machine     : {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({py})"
    )
    for n, b in binaries.items():
        print(f"  {n:<12}: " + (version([b, "--version"]) if b else "not installed"))
    print(
        "  timed       : each command's wall time from this process (fork+exec+wait); runc/crun "
        "'run' = the `run` command alone,"
    )
    print(
        "                'mount+run+umount' = mkdir upper/work + mount(2) + run + umount(2) + rm -r upper/work; "
        "minirun does all of that itself"
    )
    sys.stdout.flush()

    cgroups_before: set[str] | None = None
    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-start-"))
    names: HostNames | None = None
    tools: list[Tool] = []
    hybrid_fix: list[tuple[str, bool]] = []
    failed = False
    leftovers: list[str] = []
    others: list[str] = []  # new cgroups of another user of the host (a test session beside this one)
    podman_runtime = None
    crun_in_helper = False
    helper: NamespaceHelper | None = None
    try:
        if crun_refuses_this_host():
            if args.mount_v2_controllers:
                hybrid_fix = fix_hybrid_cgroups()
                for target, _ in hybrid_fix:
                    print(
                        f"  note        : mounted {target} as cgroup v1 for crun (hybrid cgroups); unmounted at the end"
                    )
            else:
                # never change the host unasked: crun runs in the helper, podman (whose crun cannot) runs runc
                crun_in_helper = bool(binaries["crun"])
                podman_runtime = "runc" if binaries["runc"] else None
                print(HELPER_NOTE if crun_in_helper else "  note        : podman runs runc (crun refuses this host)")
        cgroups_before = cgroup_dirs()
        names = private_names(tmp)  # before the first minirun
        tar, lower = prepare_rootfs(tmp)

        # --network none: runc's bundle has a network namespace of its own with nothing in it too
        # (the default bridge's cost is bench_network.py's)
        tools.append(Minirun(tmp / "store", "minirun run --rm --network none busybox true", ("--network", "none")))
        # the same start without the seccomp filter (or the devices policy's BPF program and
        # writes, which stay): what the filter costs, pair by pair in the same rounds
        tools.append(
            Minirun(
                tmp / "store",
                "minirun, --security-opt seccomp=unconfined",
                ("--network", "none", "--security-opt", "seccomp=unconfined"),
            )
        )
        spec_binary = binaries["runc"] or binaries["crun"]
        bundle = prepare_bundle(tmp, spec_binary) if spec_binary else None
        for name in ("runc", "crun"):
            if binaries[name] and not (name == "crun" and crun_in_helper):
                tools.append(OciRuntime(name, binaries[name], tmp, bundle, lower))
        if crun_in_helper:
            in_helper = {
                name: OciRuntime(name, binaries[name], tmp, bundle, lower, in_helper=True)
                for name in ("crun", "runc")
                if binaries[name]
            }
            # the floor there too: that the helper times a command as this process does
            in_helper["floor"] = Tool(f"{FLOOR}, in the helper", [py, "-S", "-c", "pass"])
            helper = NamespaceHelper(in_helper, tmp)
            if helper.failed:
                print(f"  note        : the helper could not start: {helper.failed}")
            tools += [helper.adopt(name) for name in in_helper if name != "floor"]
        if binaries["podman"]:
            tools.append(Podman(binaries["podman"], tmp, tar, podman_runtime))
        tools.append(StartFloor(py, lower, tmp / "floor"))
        tools.append(Tool("python -c pass", [py, "-c", "pass"]))
        tools.append(Tool(FLOOR, [py, "-S", "-c", "pass"]))
        if helper:
            tools.append(helper.adopt("floor"))

        failed = bool(prepare_tools(tools, stop))
        failed = time_round_robin(tools, args.runs, stop) or failed
    except KeyboardInterrupt:
        print("interrupted; cleaning up; the figures below are partial", file=sys.stderr)
        failed = True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        cleanup_tools(tools)
        for t in tools:  # before the temp dir goes: minirun's store is in it
            leftovers += getattr(t, "leftovers", lambda: [])()
        if helper:
            leftovers += helper.close()
        if names:
            leftovers += names.cleanup()
        leftovers += remove_temp_dir(tmp)
        # cgroups named after this benchmark are ours to remove (minirun's, under this run's own
        # parent, went with names.cleanup()); any other new one is another user's: noted only
        ours = (f"mrb{os.getpid()}-", f"minirun-bench-{os.getpid()}")
        new_cgroups = cgroup_dirs() - cgroups_before if cgroups_before is not None else set()
        for d in sorted(new_cgroups, key=len, reverse=True):
            if any(part.startswith(ours) for part in Path(d).parts):
                try:
                    os.rmdir(d)
                except OSError:
                    leftovers.append(f"cgroup {d} (busy)")
            else:
                others.append(d)
        remove_side_paths(side_before)
        unfix_hybrid_cgroups(hybrid_fix)

    # -- the table
    minirun = tools[0] if tools else None
    base = statistics.median(minirun.times) if minirun and minirun.times else None
    rows = []
    for t in tools:
        med = statistics.median(t.times) if t.times else None
        rows.append((t.label, t, t.times, med))
        if hasattr(t, "extra_label"):  # an OciRuntime, here or in the helper
            rows.append((t.extra_label, t, t.extra, statistics.median(t.extra) if t.extra else None))
        if t is minirun:
            rows += [(name, None, [], None) for name, b in binaries.items() if not b]
    w = max(len(r[0]) for r in rows) + 2
    print()
    print(f"  {'what':<{w}}{'median s':>9}{'min':>8}{'max':>8}{'×minirun':>10}{'ok':>7}")
    for label, t, times, med in rows:
        if t is None:
            print(f"  {label:<{w}}  not installed")
            continue
        if t.skipped:
            print(f"  {label:<{w}}  NOT TIMED: {t.skipped}")
            continue
        ratio = f"{med / base:9.2f}×" if med is not None and base else "        –"
        ok = f"{len(times)}/{args.runs}"
        print(
            f"  {label:<{w}}{fmt(med):>9}{fmt(min(times) if times else None):>8}"
            f"{fmt(max(times) if times else None):>8}{ratio:>10}{ok:>7}"
        )
    for t in tools:
        for f in t.failures[:3]:
            print(f"  FAILED {t.label}: {f}")
        if len(t.failures) > 3:
            print(f"  FAILED {t.label}: … and {len(t.failures) - 3} more")
    print_pairs(oci_pairs(tools), args.runs)
    print()
    unconfined = tools[1] if len(tools) > 1 and isinstance(tools[1], Minirun) else None
    if minirun and unconfined and minirun.times and len(minirun.times) == len(unconfined.times):
        added = statistics.median(a - b for a, b in zip(minirun.times, unconfined.times))
        verdict = "within" if added <= SECCOMP_TARGET_S else "OVER"
        print(
            f"  seccomp     : the default filter adds {added * 1000:+.1f} ms per start (median of "
            f"{len(minirun.times)} same-round differences): {verdict} the {SECCOMP_TARGET_S * 1000:.0f} ms target"
        )
    if base is not None:
        verdict = "within" if base <= TARGET_S else "OVER"
        print(f"  minirun start {base * 1000:.0f} ms: {verdict} the {TARGET_S * 1000:.0f} ms target")
    print(
        "  leftovers   : "
        + (
            "none (no mounts, containers, cgroups or temp dirs remain)"
            if not leftovers
            else "; ".join(leftovers) + " (removed where possible)"
        )
    )
    if others:
        print(f"  not ours    : {len(others)} new cgroups of other users of the host, left alone (e.g. {others[0]})")
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
