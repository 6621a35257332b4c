#!/usr/bin/env python3
"""Benchmark `minirun import` of a rootfs tar against GNU `tar -x` of the same tar, in one run.

    .venv/bin/python scripts/bench_import.py [--files 20000] [--megabytes 300] [--runs 3] [--dir DIR]

The tar is generated once (deterministic from --seed) and cached in the work dir (default
/var/tmp/minirun-bench). Each run unpacks into a fresh directory under a temporary dir in the work
dir, so both tools write to the same filesystem; the runs alternate between the two tools, the
outputs are deleted between runs (on an ext4 without a journal: only at the end, see
ext4_without_journal) and `sync` is called before every timed run. minirun runs as
`sys.executable -m minirun`, from this checkout. It also checks that a second import of the same tar
under another name grows the store by less than 1% of the tar (one shared layer).

minirun runs with host-wide names of this run's own (scripts/benchenv.py: run dir, bridge prefix,
nft table, cgroup parent), never the host's, and they are removed at the end.

This is a measurement, not a test: it exits 0 whatever the ratio, non-zero only if a command failed.
Standard library only.
"""

from __future__ import annotations

import argparse
import io
import os
import posixpath
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from benchenv import private_names  # noqa: E402
from benchfs import PROBE_FILES, PrivateFs, create_probe  # noqa: E402

GENERATOR_VERSION = 1  # bump when the generated tar changes, so a stale cache is not reused
TARGET_RATIO = 1.10
DEDUP_LIMIT_PCT = 1.0


class CommandFailed(Exception):
    pass


# -- the rootfs tar ---------------------------------------------------------------------------

_WORDS = (
    "core base util common net http json xml crypto ssl zlib image font locale doc man info "
    "python perl gtk glib dbus udev systemd kernel mod driver audio video input codec cache "
    "config schema plugin theme icon data test example tool helper client server proto api"
).split()
_EXTS = (
    ".py",
    ".pyc",
    ".h",
    ".c",
    ".so",
    ".txt",
    ".conf",
    ".json",
    ".xml",
    ".mo",
    ".png",
    ".gz",
    ".html",
    ".sh",
    ".pl",
    ".svg",
    ".desktop",
    ".md",
    "",
)
_BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin")
_SEED_DIRS = (
    "usr/lib",
    "usr/lib/x86_64-linux-gnu",
    "usr/lib/python3/dist-packages",
    "usr/share",
    "usr/share/doc",
    "usr/share/locale",
    "usr/include",
    "usr/local/lib",
    "lib",
    "etc",
    "opt",
    "var/lib",
    "var/cache",
    "var/log",
    "home/user",
)
_OWNERS = ((0, 0),) * 18 + ((1000, 1000), (33, 33), (0, 42), (100, 101))


def _name(rng: random.Random, ext: str = "") -> str:
    parts = [rng.choice(_WORDS)]
    if rng.random() < 0.5:
        parts.append(rng.choice(_WORDS))
    if rng.random() < 0.4:
        parts.append(str(rng.randrange(1, 100)))
    return "-".join(parts) + ext


def _file_mode(rng: random.Random, in_bin: bool) -> int:
    if in_bin:
        r = rng.random()
        return 0o4755 if r < 0.01 else 0o2755 if r < 0.02 else 0o755
    r = rng.random()
    if r < 0.70:
        return 0o644
    if r < 0.88:
        return 0o755
    if r < 0.93:
        return 0o600
    if r < 0.98:
        return 0o444
    return 0o640


def _plan(files: int, megabytes: int, seed: int):
    """Decide every member: returns (dirs {path: mode}, [(path, kind)] for non-directories, sizes)."""
    rng = random.Random(seed)
    dirs: dict[str, int] = {}

    def add_dir(path: str, mode: int = 0o755) -> None:
        parent = posixpath.dirname(path)
        if parent and parent not in dirs:
            add_dir(parent)
        dirs.setdefault(path, mode)

    for d in ("dev", "proc", "sys", "run", "srv", "mnt", "media", "boot", "home"):
        add_dir(d)
    add_dir("tmp", 0o1777)
    add_dir("var/tmp", 0o1777)
    add_dir("root", 0o700)
    for d in _BIN_DIRS + _SEED_DIRS:
        add_dir(d)
    # A tree a few levels deep: new dirs hang off random existing ones, at most 7 components.
    growable = [d for d in _SEED_DIRS]
    target_dirs = max(len(dirs) + 10, files // 18)
    while len(dirs) < target_dirs:
        parent = rng.choice(growable)
        path = f"{parent}/{_name(rng)}"
        if path in dirs:
            continue
        r = rng.random()
        add_dir(path, 0o700 if r < 0.02 else 0o775 if r < 0.05 else 0o2775 if r < 0.06 else 0o755)
        if path.count("/") < 6:
            growable.append(path)

    dir_list = sorted(dirs)
    file_dirs = [d for d in dir_list if d not in ("dev", "proc", "sys", "tmp", "var/tmp")]
    taken = set(dirs)
    entries: list[tuple[str, str]] = []
    n_large = max(1, min(8, files // 2, megabytes // 100))  # counted in --files
    while len(entries) < files - n_large:
        if rng.random() < 0.12:
            d = rng.choice(_BIN_DIRS)
            path = f"{d}/{_name(rng)}"
        else:
            d = rng.choice(file_dirs)
            path = f"{d}/{_name(rng, rng.choice(_EXTS))}"
        if path in taken:
            continue
        taken.add(path)
        r = rng.random()
        kind = "symlink" if r < 0.05 else "hardlink" if r < 0.065 else "file"
        entries.append((path, kind))

    # Sizes: mostly small (log-uniform 200 B .. 64 KiB, a few empty), then a few large files to
    # reach the requested total (tar headers and padding counted).
    regular = [p for p, k in entries if k == "file"]
    sizes = {p: (0 if rng.random() < 0.02 else int(200 * (65536 / 200) ** rng.random())) for p in regular}
    budget = megabytes * 1_000_000 - (len(entries) + len(dirs)) * 768 - 10240
    small_total = sum(sizes.values())
    if small_total > 0.7 * budget:  # a small --megabytes: shrink the small files, keep the shape
        scale = max(0.0, 0.7 * budget) / max(1, small_total)
        sizes = {p: int(s * scale) for p, s in sizes.items()}
        small_total = sum(sizes.values())
    remaining = max(0, budget - small_total)
    weights = [rng.uniform(0.5, 1.5) for _ in range(n_large)]
    large_names = (
        "usr/lib/x86_64-linux-gnu/libbig{}.so.1",
        "var/lib/db/data{}.bin",
        "opt/app/model{}.bin",
        "usr/share/fonts/huge{}.ttc",
    )
    for i, w in enumerate(weights):
        path = large_names[i % len(large_names)].format(i)
        add_dir(posixpath.dirname(path))
        entries.append((path, "file"))
        sizes[path] = int(remaining * w / sum(weights))
    return dirs, entries, sizes


def generate_tar(path: Path, files: int, megabytes: int, seed: int) -> dict[str, int]:
    dirs, entries, sizes = _plan(files, megabytes, seed)
    rng = random.Random(seed + 1)  # metadata and link targets
    data_rng = random.Random(seed + 2)  # file contents (incompressible)
    base_mtime = 1_700_000_000

    # Depth-first order, directories before their contents, as `docker export` writes it.
    children: dict[str, list[tuple[str, str]]] = {}
    for d in dirs:
        children.setdefault(posixpath.dirname(d), []).append((d, "dir"))
    for p, kind in entries:
        children.setdefault(posixpath.dirname(p), []).append((p, kind))
    order: list[tuple[str, str]] = []
    stack = [""]
    while stack:
        parent = stack.pop()
        kids = sorted(children.get(parent, ()))
        for p, kind in kids:
            order.append((p, kind))
        stack.extend(p for p, kind in reversed(kids) if kind == "dir")
    # `order` lists a dir's children together, then descends: a dir always precedes its contents.

    all_paths = [p for p, _ in entries]
    counts = {"dirs": 0, "regular": 0, "symlinks": 0, "hardlinks": 0, "large": 0}
    written_regular: list[str] = []
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for p, kind in order:
                ti = tarfile.TarInfo(p)
                ti.mtime = base_mtime - rng.randrange(0, 3 * 365 * 86400)
                ti.uid, ti.gid = rng.choice(_OWNERS)
                data = None
                if kind == "hardlink" and not written_regular:
                    kind = "symlink"
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    ti.mode = dirs[p]
                    if p == "home/user" or p.startswith("home/user/"):
                        ti.uid, ti.gid = 1000, 1000
                    elif dirs[p] & 0o1000 or p.count("/") < 2:  # system dirs stay root's
                        ti.uid, ti.gid = 0, 0
                    counts["dirs"] += 1
                elif kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.mode = 0o777
                    r = rng.random()
                    target = rng.choice(all_paths)
                    if r < 0.4:  # absolute: resolves inside the container
                        ti.linkname = "/" + target
                    elif r < 0.9:  # relative
                        ti.linkname = posixpath.relpath(target, posixpath.dirname(p))
                    else:  # dangling
                        ti.linkname = f"../{_name(rng)}/missing"
                    counts["symlinks"] += 1
                elif kind == "hardlink":
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = rng.choice(written_regular)
                    ti.mode = 0o644
                    counts["hardlinks"] += 1
                else:
                    ti.type = tarfile.REGTYPE
                    ti.mode = _file_mode(rng, posixpath.dirname(p) in _BIN_DIRS)
                    ti.size = sizes[p]
                    data = _random_stream(data_rng, ti.size)
                    written_regular.append(p)
                    counts["regular"] += 1
                    if ti.size >= 1_000_000:
                        counts["large"] += 1
                tar.addfile(ti, data)
            raw.flush()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return counts


class _random_stream(io.RawIOBase):
    """`size` seeded random bytes, produced as read (large files are not held in memory)."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng, self.left = rng, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left, 1 << 20)
        if n <= 0:
            return 0
        b[:n] = self.rng.randbytes(n)
        self.left -= n
        return n


def tar_stats(path: Path) -> dict[str, int]:
    counts = {"dirs": 0, "regular": 0, "symlinks": 0, "hardlinks": 0, "large": 0}
    with tarfile.open(path) as tar:
        for m in tar:
            if m.isdir():
                counts["dirs"] += 1
            elif m.issym():
                counts["symlinks"] += 1
            elif m.islnk():
                counts["hardlinks"] += 1
            elif m.isreg():
                counts["regular"] += 1
                counts["large"] += m.size >= 1_000_000
    return counts


# -- running and timing -----------------------------------------------------------------------


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise CommandFailed(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p


def timed(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - t0


def sync() -> float:
    t0 = time.perf_counter()
    run(["sync"])
    return time.perf_counter() - t0


def du_bytes(path: Path) -> int:
    return int(run(["du", "-s", "--block-size=1", str(path)]).stdout.split()[0])


def ext4_without_journal(path: Path) -> str | None:
    """The device name if `path` lies on an ext4 mounted without a journal, else None.

    Without a journal, ext4 will not reuse an inode number freed in the last 60 s, or 360 s while
    the inode table block holding it is dirty (and the run itself dirties it by creating inodes
    beside it), and `find_inode_bit` steps over every such inode on every create, reading its
    dtime from the buffer cache (`recently_deleted()` in fs/ext4/ialloc.c). After 20,000 files
    were deleted this costs ~0.7 ms of CPU per create: a run that follows a deletion takes up to
    ~6x longer than one that does not. Dropping the caches helps only in part: a run reads the
    inode table blocks back as it allocates beside the deleted inodes. So on such a filesystem the
    outputs are kept until the end instead of being deleted between runs, and the caches are
    dropped once before the first run against deletions made before the script started.
    """
    st_dev = os.stat(path).st_dev
    want = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[2] != want or "-" not in fields:
            continue
        rest = fields[fields.index("-") + 1 :]
        if len(rest) >= 2 and rest[0] == "ext4":
            dev = os.path.basename(rest[1])
            jbd2 = Path("/proc/fs/jbd2")
            has_journal = jbd2.is_dir() and any(n.startswith(dev + "-") for n in os.listdir(jbd2))
            return None if has_journal else dev
        return None
    return None


DROP_CACHES = "/proc/sys/vm/drop_caches"


def read_through(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def drop_caches_and_rewarm(tar_path: Path, py: str, env: dict[str, str]) -> None:
    """Evict the cached inode table blocks of deleted inodes (see ext4_without_journal), then bring
    back what both commands read, so neither pays for a cold start."""
    with open(DROP_CACHES, "w") as f:
        f.write("1\n")
    read_through(tar_path)
    run(["tar", "--version"])
    run(
        [py, "-c", "import minirun.cli.app_images, minirun.image.importer, minirun.store, minirun.layer.archive"],
        env=env,
    )


def compile_minirun(py: str) -> None:
    """Byte-compile minirun as scripts/setup.sh does (as any install does): with
    PYTHONDONTWRITEBYTECODE set, as on these machines, every run would otherwise compile its
    modules again, tens of ms that no installed minirun pays."""
    run([py, "-m", "compileall", "-q", str(REPO / "minirun")])


def minirun_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("MINIRUN_ROOT", None)
    return env


def fmt_s(t: float) -> str:
    return f"{t:7.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000, help="non-directory members (default 20000)")
    ap.add_argument("--megabytes", type=int, default=300, help="tar size in MB of 10^6 bytes (default 300)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool; the median counts (default 3)")
    ap.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp/minirun-bench"),
        help="work dir: holds the cached tar and, while running, the outputs (default /var/tmp/minirun-bench)",
    )
    ap.add_argument("--seed", type=int, default=20240601, help="seed of the generated tar")
    ap.add_argument(
        "--drop-caches",
        action="store_true",
        help="on an ext4 without a journal, drop the page cache once before the first run (see "
        "ext4_without_journal): host-wide, every process's cache, so only when asked",
    )
    ap.add_argument(
        "--fs",
        choices=("private", "host"),
        default="private" if os.geteuid() == 0 else "host",
        help="where outputs go: a fresh ext4 of this run's own (default as root; scripts/benchfs.py), "
        "or the work dir's filesystem",
    )
    args = ap.parse_args()
    if args.runs < 1 or args.files < 1 or args.megabytes < 1:
        ap.error("--files, --megabytes and --runs must be positive")
    if args.fs == "private" and os.geteuid() != 0:
        ap.error("--fs private mounts a filesystem: run as root, or give --fs host")

    work = args.dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tar_path = work / f"rootfs-v{GENERATOR_VERSION}-seed{args.seed}-{args.files}files-{args.megabytes}MB.tar"
    py = sys.executable

    tar_version = run(["tar", "--version"]).stdout.splitlines()[0]
    fstype = run(["stat", "-f", "-c", "%T", str(work)]).stdout.strip()
    nojournal_dev = None if args.fs == "private" else ext4_without_journal(work)
    drop = bool(nojournal_dev) and args.drop_caches and os.access(DROP_CACHES, os.W_OK)
    keep_outputs = bool(nojournal_dev)
    if nojournal_dev:
        fstype = f"ext4 without a journal on {nojournal_dev}"
    print("minirun import vs GNU tar -x")
    print(f"  interpreter : {py}")
    print(f"  tar         : {tar_version}{'' if os.geteuid() == 0 else '  (NOT root: tar will not keep owners)'}")
    print(f"  work dir    : {work} ({fstype}), {os.cpu_count()} CPUs, kernel {os.uname().release}")

    if tar_path.exists():
        counts = tar_stats(tar_path)
        how = "cached"
    else:
        t0 = time.perf_counter()
        counts = generate_tar(tar_path, args.files, args.megabytes, args.seed)
        how = f"generated in {time.perf_counter() - t0:.1f} s"
    tar_size = tar_path.stat().st_size
    private = PrivateFs(work, 4 * tar_size + (1 << 30)) if args.fs == "private" else None
    if private:
        print(f"  outputs     : {private.describe()}")
    if keep_outputs and shutil.disk_usage(work).free < 2 * args.runs * tar_size * 1.5:
        keep_outputs = False  # not enough room: delete between runs, and say the times suffer
    nondir = counts["regular"] + counts["symlinks"] + counts["hardlinks"]
    print(f"  rootfs tar  : {tar_path} ({how})")
    print(
        f"                {tar_size / 1e6:.1f} MB, {nondir:,} files + {counts['dirs']:,} dirs "
        f"({counts['regular']:,} regular of which {counts['large']} ≥ 1 MB, "
        f"{counts['symlinks']:,} symlinks, {counts['hardlinks']:,} hardlinks)"
    )
    print("  method      : each run unpacks into a fresh dir on the same filesystem; runs alternate;")
    print("                `sync` runs before every timed run, so writeback from the previous run is")
    print("                not billed to the next; a run's own writeback is not in its time (the `sync`")
    print("                right after it is shown apart as +sync); the tar is read once first, so")
    print("                every run reads it from the page cache; minirun is byte-compiled first, as")
    print("                an installed minirun is (PYTHONDONTWRITEBYTECODE would recompile it each run).")
    if private:
        print("                Outputs are deleted between runs: a journaled ext4 of this run's own")
        print("                has no history to slow a create (see --fs).")
    elif not nojournal_dev:
        print("                Outputs are deleted between runs.")
    else:
        print("                ext4 without a journal steps over the inodes freed in the last 1-6 minutes")
        print("                on every create: a run right after deleting 20,000 files is up to ~6x")
        print("                slower (see ext4_without_journal() in this script). So:")
        if keep_outputs:
            print("                - outputs are NOT deleted between runs, only all together at the end;")
        else:
            print("                - WARNING: too little free space to keep the outputs: they are deleted")
            print("                  between runs, and runs after a deletion pay that delay;")
        if drop:
            print("                - once before the first run, after `sync`, `echo 1 > /proc/sys/vm/drop_caches`")
            print("                  (against deletions made before this script; it helps only in part, so")
            print("                  do not run this within ~6 minutes of deleting many files here), then")
            print("                  the tar, tar and minirun's modules are read again.")
        else:
            print("                - caches not dropped (no --drop-caches, or not root): deletions made here")
            print("                  in the last ~6 minutes slow down the first runs.")
    print("  commands    : tar -x -f TAR -C FRESH_DIR")
    print(f"                {py} -m minirun --root FRESH_ROOT import TAR bench")
    print(f"  columns     : probe: ms to create {PROBE_FILES:,} empty files there, just before the run;")
    print("                user and sys: the CPU seconds of the run's processes.")
    print(flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=private.mount if private else work))
    names = private_names(scratch)  # before the first minirun
    env = minirun_env()
    compile_minirun(py)
    try:
        if drop:
            sync()
            drop_caches_and_rewarm(tar_path, py, env)
        else:
            read_through(tar_path)  # warm the page cache
        times: dict[str, list[float]] = {"tar": [], "minirun": []}
        after: dict[str, list[float]] = {"tar": [], "minirun": []}
        keep_root: Path | None = None
        print(f"  {'run':<4}{'tool':<10}{'time':>10}{'+sync':>10}{'user':>8}{'sys':>8}{'probe':>9}", flush=True)
        for i in range(args.runs):
            tools = ("tar", "minirun") if i % 2 == 0 else ("minirun", "tar")
            for tool in tools:
                out = scratch / f"{tool}-{i}"
                out.mkdir()
                probe = create_probe(scratch)
                sync()
                cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
                if tool == "tar":
                    t = timed(["tar", "-x", "-f", str(tar_path), "-C", str(out)])
                else:
                    t = timed([py, "-m", "minirun", "--root", str(out), "import", str(tar_path), "bench"], env=env)
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
                s = sync()
                times[tool].append(t)
                after[tool].append(s)
                user, system = cpu_after.ru_utime - cpu.ru_utime, cpu_after.ru_stime - cpu.ru_stime
                print(
                    f"  {i + 1:<4}{tool:<10}{fmt_s(t):>10}{fmt_s(s):>10}{user:>7.2f}s{system:>7.2f}s"
                    f"{probe * 1000:>6.0f} ms",
                    flush=True,
                )
                if tool == "minirun" and i == args.runs - 1:
                    keep_root = out  # reused by the dedup check below
                elif not keep_outputs:
                    shutil.rmtree(out)
        med = {k: statistics.median(v) for k, v in times.items()}
        pairs = [m / t for m, t in zip(times["minirun"], times["tar"])]
        ratio = statistics.median(pairs)  # pair by pair: a drift of the machine's speed cancels out
        print()
        print(f"  pairs       : minirun/tar per run {' '.join(f'{r:.2f}x' for r in pairs)}")
        print(
            f"  median      : tar -x {med['tar']:.2f} s, minirun import {med['minirun']:.2f} s "
            f"(+sync medians: {statistics.median(after['tar']):.2f} s / {statistics.median(after['minirun']):.2f} s)"
        )
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"  ratio       : minirun/tar = {ratio:.2f}x, the median pair  (target <= {TARGET_RATIO:.1f}x: {verdict})"
        )

        # Dedup: the root of the last minirun run already holds one import of the tar.
        assert keep_root is not None
        before = du_bytes(keep_root)
        sync()
        t2 = timed([py, "-m", "minirun", "--root", str(keep_root), "import", str(tar_path), "bench2"], env=env)
        grown = du_bytes(keep_root)
        layers_dir = keep_root / "layers"
        n_layers = len([n for n in os.listdir(layers_dir) if not n.startswith(".")]) if layers_dir.is_dir() else -1
        pct = (grown - before) / tar_size * 100
        ok = "ok" if pct < DEDUP_LIMIT_PCT else "FAILED"
        print(f"  dedup       : du -s of the root {before:,} B after the 1st import, {grown:,} B after a 2nd")
        print(
            f"                import under another name (took {t2:.2f} s): grew {grown - before:,} B = "
            f"{pct:.3f}% of the tar (must be < {DEDUP_LIMIT_PCT:.0f}%: {ok}); layer dirs: {n_layers}"
        )
        again = t2 / med["minirun"]  # the file is unchanged: the store's import memo knows its layer
        print(
            f"  2nd import  : {again:.2f}x the first's median (target <= 0.2x: {'met' if again <= 0.2 else 'MISSED'})"
        )
    except CommandFailed as e:
        print(f"\nbench_import: command failed: {e}", file=sys.stderr)
        return 1
    finally:
        for note in names.cleanup():
            print(f"left behind: {note}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
        for note in private.close() if private else []:
            print(f"note: {note}", file=sys.stderr)
    print(f"  cleaned up  : {scratch} removed; the tar stays cached at {tar_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
