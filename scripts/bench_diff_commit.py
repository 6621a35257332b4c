#!/usr/bin/env python3
"""Benchmark `minirun diff` beside `podman diff`, and `minirun commit` of 300 MB beside `tar -c`, in one run.

    .venv/bin/python scripts/bench_diff_commit.py [--runs 10] [--files 10000]
                                                 [--commit-runs 3] [--megabytes 300] [--profile auto]

1. diff. One container per tool runs the same shell script in the same busybox root filesystem
   (the tar from images/busybox/rootfs.py; minirun builds its busybox image from it, podman
   `import`s it): write --files small files into a new /data, append to /etc/passwd, touch
   /etc/group, delete /bin/vi. Both `diff` outputs are checked (at least --files lines, the same
   set of paths and kinds; any difference is printed), then --runs timed runs of each, interleaved
   round-robin with the order rotating each round:
     - `minirun diff C` and `podman diff C` (wall time of the command, seen from this process);
     - floors: an os.walk of minirun's upper dir inside this process (the issue's 0.031 s), a
       fresh interpreter doing that walk (`python -S -c ...`), and `python -c 'import minirun.cli.app_images'`
       (the typer path every non-lean verb starts with).
   Target: minirun ≤ 0.3 × podman.
2. commit. A container per tool writes --megabytes of /dev/urandom in files of 10 MB
   (`head -c`), then, timed: the FIRST `minirun commit C big:1` (a new layer), then --commit-runs
   rounds, interleaved, of
     - `minirun commit C big:1` again: the same upper makes the same diff_id, so this re-commit
       unpacks to a staging dir, finds the layer already stored and discards the staging copy;
     - `tar -c -f /dev/null -C UPPER .` (GNU tar does not read file data when the archive is
       /dev/null: a metadata-only floor) and `tar -c -f FILE -C UPPER .` to a new file on the same
       filesystem (what writing the layer once costs);
     - `podman commit` of its own container again (after its own first commit, also shown).
   `sync` runs before each timed command (untimed) so one command's writeback does not land in
   the next one's time. The issue sets no number for commit; it is reported against tar -c FILE.
3. --profile auto (the default): when diff misses its target or a minirun commit is slower than
   podman's (first against first, again against again), one `minirun diff` and one re-commit run under cProfile (every thread, merged: the commit
   writes its tar in a second thread) and the top 15 functions by tottime are printed.

Everything lives in a temp dir under --dir (default /var/tmp: the same filesystem as minirun's
usual store); nothing is deleted before the end, because on an ext4 without a journal mass
deletions make creates slow for minutes afterwards (see scripts/bench_import.py). At the end the
containers, images, cgroups and the temp dir are removed, and the leftovers check says so. Right
after this script another benchmark that creates many files on the same filesystem will be slow.
minirun runs with host-wide names of this run's own (scripts/benchenv.py), removed at the end.
podman's import and commits run in a mount namespace of their own so that their blob-info cache is
not the host's /var/lib/containers/cache (tests/peers.py): that adds an unshare and a mount, a few
ms, to each timed podman commit.

A measurement, not a test: exits 0 whatever the figures, 1 if a command failed or something was
left behind. Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import json
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
from bench_import import ext4_without_journal  # noqa: E402  (shared with the import benchmark)
from bench_start import defer_signals, minirun_env, podman_peer, runtime_option, version  # noqa: E402
from benchenv import own_blob_cache, private_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DIFF_TARGET_RATIO = 0.30
PODMAN_IMAGE = "localhost/minirun-bench-busybox:latest"
PODMAN_GLOBAL = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", "overlay"]
PODMAN_RUN = ["--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
# not /var/lib/containers: podman's blob-info cache goes elsewhere (own_blob_cache), another user's stays
SIDE_PATHS = ("/run/containers", "/run/libpod", "/run/crun", "/run/runc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
DIFF_NAME, BIG_NAME = "bench-diff", "bench-big"
FILE_BYTES = 10_000_000  # one "10 MB" file of the commit benchmark

PROFILE_WRAPPER = r"""
import cProfile, pstats, runpy, sys, threading
out = sys.argv[1]
sys.argv = ["minirun"] + sys.argv[2:]
profiles = []
_run = threading.Thread.run
def run(self):
    p = cProfile.Profile()
    profiles.append(p)
    p.enable()
    try:
        _run(self)
    finally:
        p.disable()
threading.Thread.run = run
main = cProfile.Profile()
code = 0
main.enable()
try:
    runpy.run_module("minirun", run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    main.disable()
    stats = pstats.Stats(main)
    for p in profiles:
        stats.add(p)
    stats.dump_stats(out)
sys.stdout.flush()
sys.exit(code)
"""


class CommandFailed(Exception):
    pass


# -- helpers -----------------------------------------------------------------------------------


def tail(p: subprocess.CompletedProcess) -> str:
    text = ((p.stderr or "") + (p.stdout or "")).strip().splitlines()
    return " | ".join(text[-3:])[-400:] or "(no output)"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise CommandFailed(f"`{' '.join(cmd)}` exited {p.returncode}: {tail(p)}")
    return p


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = run(cmd, **kw)
    return time.perf_counter() - t0, p


def sync() -> None:
    os.sync()


def mount_points() -> list[str]:
    with open("/proc/self/mounts") as f:
        rows = [line.split() for line in f]
    return [r[1].replace("\\040", " ") for r in rows if len(r) >= 2]


def mounts_under(path: Path) -> list[str]:
    p = str(path).rstrip("/") + "/"
    return [m for m in mount_points() if m.startswith(p)]


def cgroup_dirs() -> set[str]:
    hierarchies = []
    with open("/proc/self/mounts") as f:
        for line in f:
            r = line.split()
            if len(r) >= 3 and r[2] in ("cgroup", "cgroup2") and r[1].startswith(str(CGROUP_ROOT)):
                hierarchies.append(r[1])
    return {d for h in hierarchies for d, _, _ in os.walk(h)}


def walk_count(top: str) -> int:
    n = 0
    for _, dirs, files in os.walk(top):
        n += len(dirs) + len(files)
    return n


def du_bytes(path: str) -> int:
    return int(run(["du", "-s", "--block-size=1", path]).stdout.split()[0])


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(t: float | None) -> str:
    return "      –" if t is None else f"{t:7.3f}"


def parse_diff(text: str) -> dict[str, str]:
    """path -> kind of docker's `A|C|D /path` lines."""
    out = {}
    for line in text.splitlines():
        kind, _, path = line.partition(" ")
        if path:
            out[path] = kind
    return out


# -- the work in the containers ----------------------------------------------------------------


def diff_script(files: int) -> str:
    return (
        "mkdir /data && cd /data && i=0; "
        f"while [ $i -lt {files} ]; do echo $i > f$i; i=$((i+1)); done; "
        "echo bench >> /etc/passwd && touch /etc/group && rm /bin/vi"
    )


def big_script(count: int) -> str:
    return (
        "mkdir /big && i=0; "
        f"while [ $i -lt {count} ]; do head -c {FILE_BYTES} /dev/urandom > /big/f$i || exit 1; i=$((i+1)); done"
    )


class Row:
    def __init__(self, label: str, fn):
        self.label, self.fn = label, fn
        self.times: list[float] = []
        self.failures: list[str] = []

    def once(self, i: int) -> None:
        try:
            self.times.append(self.fn(i))
        except (CommandFailed, OSError) as e:
            self.failures.append(f"run {i + 1}: {e}")


def interleave(rows: list[Row], runs: int, stop: list[int], before=None) -> None:
    for i in range(runs):
        k = i % len(rows)
        for r in rows[k:] + rows[:k]:
            if stop:
                raise KeyboardInterrupt
            if before:
                before()
            r.once(i)


def table(rows: list[Row], base: Row | None, runs: int, base_label: str = "×minirun") -> None:
    w = max(len(r.label) for r in rows) + 2
    b = median(base.times) if base else None
    print(f"  {'what':<{w}}{'median s':>9}{'min':>8}{'max':>8}{base_label:>11}{'ok':>7}")
    for r in rows:
        m = median(r.times)
        ratio = f"{m / b:9.2f}×" if m is not None and b else "        –"
        print(
            f"  {r.label:<{w}}{fmt(m):>9}{fmt(min(r.times) if r.times else None):>8}"
            f"{fmt(max(r.times) if r.times else None):>8}{ratio:>11}{len(r.times):>4}/{runs:<2}"
        )
    for r in rows:
        for f in r.failures[:3]:
            print(f"  FAILED {r.label}: {f}")


def profile(py: str, env: dict[str, str], out: Path, args: list[str], title: str) -> None:
    t0 = time.perf_counter()
    p = subprocess.run(
        [py, "-c", PROFILE_WRAPPER, str(out), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t0
    print(f"\n  profile of {title}: {wall:.3f} s wall under cProfile, exit {p.returncode}")
    if not out.exists():
        print(f"  (no profile written: {tail(p)})")
        return
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(out), stream=buf)
    stats.sort_stats("tottime").print_stats(15)
    lines = buf.getvalue().splitlines()
    start = next((i for i, text in enumerate(lines) if "function calls" in text), 0)
    for line in lines[start:]:
        if line.strip():
            print("    " + line.replace(str(REPO) + "/", "").rstrip())


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each diff (default 10)")
    ap.add_argument("--files", type=int, default=10000, help="files the diff container writes (default 10000)")
    ap.add_argument(
        "--commit-runs", type=int, default=3, help="timed re-commit rounds after the first commit (default 3)"
    )
    ap.add_argument(
        "--megabytes", type=int, default=300, help="MB the commit container writes, in 10 MB files (default 300)"
    )
    ap.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="cProfile one diff and one commit: when a target is missed (auto), always or never",
    )
    ap.add_argument("--dir", default="/var/tmp", help="where the temp dir goes (default /var/tmp)")
    args = ap.parse_args()
    if args.runs < 1 or args.files < 1 or args.commit_runs < 1 or args.megabytes < 10:
        ap.error("--runs, --files, --commit-runs must be positive and --megabytes at least 10")
    if os.geteuid() != 0:
        print("bench_diff_commit: must run as root (containers)", file=sys.stderr)
        return 2
    stop = defer_signals()

    side_before = {p for p in SIDE_PATHS if os.path.lexists(p)}
    py = sys.executable
    podman = shutil.which("podman")
    nojournal = ext4_without_journal(Path(args.dir))
    fstype = run(["stat", "-f", "-c", "%T", args.dir]).stdout.strip()
    print(f"bench_diff_commit: `diff` after {args.files} new files, `commit` of {args.megabytes} MB of changes")
    print(
        f"  machine     : {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({py})"
    )
    print(f"  podman      : {version([podman, '--version']) if podman else 'not installed'}")
    print(f"  tar         : {version(['tar', '--version'])}")
    print(
        f"  work dir    : under {args.dir} ("
        + (f"ext4 without a journal on {nojournal}" if nojournal else fstype)
        + "); nothing deleted before the end"
    )
    print("  timed       : each command's wall time from this process (fork+exec+wait); interleaved, order rotating")
    sys.stdout.flush()

    cgroups_before = cgroup_dirs()
    tmp = Path(tempfile.mkdtemp(prefix="minirun-bench-diff-commit-", dir=args.dir))
    names = private_names(tmp)  # before the first minirun
    env = minirun_env()
    store = tmp / "store"
    M = [py, "-m", "minirun", "--root", str(store)]
    # podman refuses a runroot longer than 50 characters: its own short one on /run (a tmpfs)
    runroot = Path(tempfile.mkdtemp(prefix="mrb-podman-", dir="/run")) if podman else None
    P = (
        [
            podman,
            "--root",
            str(tmp / "podman" / "root"),
            "--runroot",
            str(runroot),
            "--tmpdir",
            str(tmp / "podman" / "tmp"),
            *PODMAN_GLOBAL,
            # runc where crun refuses this host (a hybrid one): podman_peer changes nothing unasked
            *runtime_option(podman_peer(False)[1], tmp / "podman"),
        ]
        if podman
        else None
    )
    cgroup_parent = f"/minirun-bench-{os.getpid()}"
    failed = False
    leftovers: list[str] = []
    others: list[str] = []  # new cgroups of another user of the host (a test session beside this one)
    podman_note = ""
    diff_rows: list[Row] = []
    commit_rows: list[Row] = []
    firsts: dict[str, float] = {}
    notes: list[str] = []
    diff_missed = commit_missed = False
    try:
        # -- the busybox rootfs for both
        tar = tmp / "busybox.tar"
        with open(tar, "wb") as f:
            subprocess.run([py, str(REPO / "images" / "busybox" / "rootfs.py")], stdout=f, check=True, env=env)
        if P:
            try:
                run(own_blob_cache([*P, "import", "--quiet", str(tar), PODMAN_IMAGE]))
            except CommandFailed as e:
                podman_note = f"podman import failed: {e}"
                P = None
                failed = True

        # == 1. diff ==================================================================
        print(
            f"\n1. diff: a container wrote {args.files} files in /data, appended to /etc/passwd, "
            "touched /etc/group, deleted /bin/vi"
        )
        t, _ = timed([*M, "run", "--name", DIFF_NAME, "busybox", "sh", "-c", diff_script(args.files)], env=env)
        print(f"  minirun run (builds busybox, writes the files): {t:.2f} s")
        info = json.loads(run([*M, "inspect", DIFF_NAME], env=env).stdout)
        upper = info[0]["GraphDriver"]["Data"]["UpperDir"]
        mine = run([*M, "diff", DIFF_NAME], env=env).stdout  # warm-up, and the output to check
        theirs = None
        if P:
            try:
                t, _ = timed(
                    [
                        *P,
                        "run",
                        "--name",
                        DIFF_NAME,
                        *PODMAN_RUN,
                        "--cgroup-parent",
                        cgroup_parent,
                        PODMAN_IMAGE,
                        "sh",
                        "-c",
                        diff_script(args.files),
                    ]
                )
                print(f"  podman run (same work): {t:.2f} s")
                theirs = run([*P, "diff", DIFF_NAME]).stdout
            except CommandFailed as e:
                podman_note = f"podman run/diff failed: {e}"
                failed = True
        print(f"  minirun upper: {upper} ({walk_count(upper)} entries by os.walk)")

        # check the outputs
        a = parse_diff(mine)
        print(
            f"  minirun diff : {len(mine.splitlines())} lines"
            + ("" if len(mine.splitlines()) >= args.files else f"  FEWER THAN {args.files}")
        )
        if len(mine.splitlines()) < args.files:
            failed = True
        if theirs is not None:
            b = parse_diff(theirs)
            print(
                f"  podman diff  : {len(theirs.splitlines())} lines"
                + ("" if len(theirs.splitlines()) >= args.files else f"  FEWER THAN {args.files}")
            )
            only_a = sorted(a.keys() - b.keys())
            only_b = sorted(b.keys() - a.keys())
            kinds = sorted(p for p in a.keys() & b.keys() if a[p] != b[p])
            if not (only_a or only_b or kinds):
                print(f"  agreement    : the same {len(a)} paths with the same kinds")
            else:
                print(f"  agreement    : {len(a.keys() & b.keys())} paths in both; DIFFERENCES:")
                for p in only_a[:10]:
                    print(f"    only minirun : {a[p]} {p}")
                for p in only_b[:10]:
                    print(f"    only podman  : {b[p]} {p}")
                for p in kinds[:10]:
                    print(f"    kind differs : minirun {a[p]}, podman {b[p]}  {p}")
                more = len(only_a) + len(only_b) + len(kinds) - len(only_a[:10]) - len(only_b[:10]) - len(kinds[:10])
                if more > 0:
                    print(f"    … and {more} more")
        sys.stdout.flush()

        def cmd_row(label, cmd, **kw):
            return Row(label, lambda i: timed(cmd, **kw)[0])

        def walk_here(i):
            t0 = time.perf_counter()
            walk_count(upper)
            return time.perf_counter() - t0

        diff_rows = [cmd_row("minirun diff", [*M, "diff", DIFF_NAME], env=env)]
        if theirs is not None:
            diff_rows.append(cmd_row("podman diff", [*P, "diff", DIFF_NAME]))
        diff_rows += [
            Row("floor: os.walk of the upper (in process)", walk_here),
            cmd_row(
                "floor: python -S -c 'os.walk(upper)'",
                [py, "-S", "-c", f"import os\nfor _ in os.walk({upper!r}): pass"],
            ),
            cmd_row(
                "python -c 'import minirun.cli.app_images' (typer path)",
                [py, "-c", "import minirun.cli.app_images"],
                env=env,
            ),
        ]
        interleave(diff_rows, args.runs, stop)

        # == 2. commit ================================================================
        count = args.megabytes // 10
        print(f"\n2. commit: a container wrote {count} files of {FILE_BYTES // 1_000_000} MB from /dev/urandom in /big")
        t, _ = timed([*M, "run", "--name", BIG_NAME, "busybox", "sh", "-c", big_script(count)], env=env)
        print(f"  minirun run (writes the files): {t:.2f} s")
        info = json.loads(run([*M, "inspect", BIG_NAME], env=env).stdout)
        big_upper = info[0]["GraphDriver"]["Data"]["UpperDir"]
        print(f"  minirun upper: {big_upper} ({du_bytes(big_upper) / 1e6:.0f} MB by du)")
        podman_big = False
        if P:
            try:
                t, _ = timed(
                    [
                        *P,
                        "run",
                        "--name",
                        BIG_NAME,
                        *PODMAN_RUN,
                        "--cgroup-parent",
                        cgroup_parent,
                        PODMAN_IMAGE,
                        "sh",
                        "-c",
                        big_script(count),
                    ]
                )
                print(f"  podman run (same work): {t:.2f} s")
                podman_big = True
            except CommandFailed as e:
                podman_note = f"podman run of the commit work failed: {e}"
                failed = True
        tars = tmp / "tars"
        tars.mkdir()
        sync()
        t, p = timed([*M, "commit", BIG_NAME, "big:1"], env=env)
        firsts["minirun commit (FIRST: new layer)"] = t
        image_id = p.stdout.strip()
        if podman_big:
            sync()
            t, _ = timed(own_blob_cache([*P, "commit", "--quiet", BIG_NAME, "localhost/big:1"]))
            firsts["podman commit (first)"] = t
        img = json.loads(run([*M, "inspect", "big:1"], env=env).stdout)[0]
        base = json.loads(run([*M, "inspect", "busybox"], env=env).stdout)[0]
        layers = len(img["RootFS"]["Layers"])
        print(
            f"  minirun image: {image_id[:19]}…, {layers} layers (busybox has {len(base['RootFS']['Layers'])}), "
            f"Size {img['Size'] / 1e6:.0f} MB"
        )
        if layers != len(base["RootFS"]["Layers"]) + 1:
            notes.append("the committed image does not have exactly one more layer than busybox")
            failed = True

        def tar_file(i):
            return timed(["tar", "-c", "-f", str(tars / f"upper-{i + 1}.tar"), "-C", big_upper, "."])[0]

        commit_rows = [
            cmd_row("minirun commit (re-commit: layer exists)", [*M, "commit", BIG_NAME, "big:1"], env=env),
            cmd_row(
                "tar -c -f /dev/null -C UPPER . (no data read)", ["tar", "-c", "-f", "/dev/null", "-C", big_upper, "."]
            ),
            Row("tar -c -f FILE -C UPPER . (same fs)", tar_file),
        ]
        if podman_big:
            commit_rows.append(
                cmd_row(
                    "podman commit (again, same upper)",
                    own_blob_cache([*P, "commit", "--quiet", BIG_NAME, "localhost/big:1"]),
                )
            )
        interleave(commit_rows, args.commit_runs, stop, before=sync)
        tar_sizes = {f.stat().st_size for f in tars.iterdir()}
        if tar_sizes:
            print(f"  tar FILE size: {max(tar_sizes) / 1e6:.0f} MB")
        after = json.loads(run([*M, "inspect", "big:1"], env=env).stdout)[0]
        if after["RootFS"]["Layers"] != img["RootFS"]["Layers"]:
            notes.append("a re-commit of the same upper made a different layer")

        # -- verdicts, then profiles
        m = median(diff_rows[0].times)
        pm = median(diff_rows[1].times) if theirs is not None else None
        diff_missed = m is None or (pm is not None and m > DIFF_TARGET_RATIO * pm)
        mc = median(commit_rows[0].times)
        pc = median(commit_rows[-1].times) if podman_big else None
        pf = firsts.get("podman commit (first)")
        commit_missed = (
            mc is None
            or (pc is not None and mc > pc)
            or (pf is not None and firsts["minirun commit (FIRST: new layer)"] > pf)
        )
    except KeyboardInterrupt:
        print("interrupted; cleaning up; the figures below are partial", file=sys.stderr)
        failed = True
    except (CommandFailed, OSError, subprocess.CalledProcessError, ValueError, KeyError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        notes.append(f"stopped early: {e}")
        failed = True

    # -- the tables (before cleanup: profiles need the containers)
    if diff_rows:
        print(f"\n  diff, {args.runs} runs each:")
        table(diff_rows, diff_rows[0], args.runs)
        m = median(diff_rows[0].times)
        pm = median(diff_rows[1].times) if len(diff_rows) > 1 and diff_rows[1].label == "podman diff" else None
        if m is not None and pm:
            verdict = "within" if m <= DIFF_TARGET_RATIO * pm else "OVER"
            print(
                f"  minirun diff {m:.3f} s = {m / pm:.2f}× podman's {pm:.3f} s: {verdict} the "
                f"{DIFF_TARGET_RATIO}× target ({DIFF_TARGET_RATIO * pm:.3f} s)"
            )
    if commit_rows:
        print(
            f"\n  commit of {args.megabytes} MB, first commit once, then {args.commit_runs} interleaved rounds "
            "(sync before each command, untimed):"
        )
        for label, t in firsts.items():
            print(f"  {label:<46}{fmt(t):>9}")
        tar_row = commit_rows[2]
        table(commit_rows, tar_row, args.commit_runs, base_label="×tar FILE")
        tf = median(tar_row.times)
        first = firsts.get("minirun commit (FIRST: new layer)")
        if tf and first is not None:
            print(
                f"  minirun first commit = {first / tf:.2f}× tar -c FILE; re-commit = "
                + (f"{median(commit_rows[0].times) / tf:.2f}×" if commit_rows[0].times else "–")
            )
        pf = firsts.get("podman commit (first)")
        if pf and first is not None:
            print(f"  minirun first commit = {first / pf:.2f}× podman's first commit ({pf:.3f} s)")
        if len(commit_rows) > 3 and commit_rows[3].times and commit_rows[0].times:
            pc = median(commit_rows[3].times)
            print(f"  minirun re-commit = {median(commit_rows[0].times) / pc:.2f}× podman's commit again ({pc:.3f} s)")
    if podman_note:
        print(f"  NOTE: {podman_note}")
    for n in notes:
        print(f"  NOTE: {n}")
    sys.stdout.flush()

    if not stop and (args.profile == "always" or (args.profile == "auto" and (diff_missed or commit_missed))):
        why = (
            "always"
            if args.profile == "always"
            else (
                "diff "
                + ("missed" if diff_missed else "met")
                + " its target, commit "
                + ("slower than podman's" if commit_missed else "not slower than podman's")
            )
        )
        print(f"\n3. profiles (cProfile, top 15 by tottime; {why}):")
        try:
            if diff_rows:
                profile(
                    py,
                    env,
                    tmp / "diff.prof",
                    ["--root", str(store), "diff", DIFF_NAME],
                    "one `minirun diff` (output discarded)",
                )
            if commit_rows:
                profile(
                    py,
                    env,
                    tmp / "commit.prof",
                    ["--root", str(store), "commit", BIG_NAME, "big:1"],
                    "one `minirun commit` (a re-commit; every thread's time merged, tottime sums threads)",
                )
        except OSError as e:
            print(f"  profiling failed: {e}")

    # -- cleanup: everything at the end
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    for name in (DIFF_NAME, BIG_NAME):
        subprocess.run([*M, "rm", "-f", name], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    if store.is_dir() and (store / "containers").is_dir():
        leftovers += [f"minirun container {c}" for c in os.listdir(store / "containers")]
    if P:
        try:
            ps = run([*P, "ps", "--all", "--quiet"]).stdout.split()
        except (CommandFailed, OSError):
            ps = []
        if ps:
            subprocess.run([*P, "rm", "--force", *ps], stdin=subprocess.DEVNULL, capture_output=True)
        subprocess.run([*P, "rmi", "--all", "--force"], stdin=subprocess.DEVNULL, capture_output=True)
        try:
            left = run([*P, "ps", "--all", "--quiet"]).stdout.split()
        except (CommandFailed, OSError):
            left = []
        leftovers += [f"podman container {c}" for c in left]
    for top in (tmp, runroot):
        for m in sorted(mounts_under(top) if top else [], key=len, reverse=True):
            leftovers.append(f"mount {m}")
            subprocess.run(["umount", "-l", m], capture_output=True)
    if runroot and not mounts_under(runroot):
        shutil.rmtree(runroot, ignore_errors=True)
        if runroot.exists():
            leftovers.append(f"podman runroot {runroot}")
    leftovers += names.cleanup()
    new_cgroups = cgroup_dirs() - cgroups_before
    ours = (cgroup_parent.strip("/"), "libpod_parent")
    for d in sorted(new_cgroups, key=len, reverse=True):
        if any(part in ours for part in Path(d).parts):
            try:
                os.rmdir(d)
            except OSError:
                leftovers.append(f"cgroup {d} (busy)")
        else:
            others.append(d)
    if mounts_under(tmp):
        leftovers.append(f"temp dir {tmp} (mounts remain)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp.exists():
            leftovers.append(f"temp dir {tmp}")
    for p in SIDE_PATHS:
        if p not in side_before and os.path.lexists(p):
            shutil.rmtree(p, ignore_errors=True)
    print(
        "\n  leftovers   : "
        + (
            "none (no containers, images, mounts, cgroups or temp dirs remain)"
            if not leftovers
            else "; ".join(leftovers)
        )
    )
    if others:
        print(f"  not ours    : {len(others)} new cgroups of other users of the host, left alone (e.g. {others[0]})")
    return 1 if failed or leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
