"""A fresh filesystem of a benchmark's own for its outputs, and a probe of what creating files costs.

`PrivateFs(work, size)` makes an ext4 in a sparse image file under `work` and loop-mounts it;
`close()` unmounts it and deletes the image. The ext4 keeps its journal, as on any host that runs
containers.

The work dir's own filesystem carries a history that makes runs incomparable. On this project's
VMs it is an ext4 without a journal. Such an ext4 steps over every inode freed in the last 1 to 6
minutes, on every create (`recently_deleted()` in fs/ext4/ialloc.c; see
bench_import.ext4_without_journal). The deleted files may be the benchmark's own, a previous
run's, or another process's. A run then takes up to ~6x longer, and the drift follows the clock,
not the tool: each round of bench_load was slower than the last. A fresh journaled ext4 has no
such history, and outputs can be deleted between runs.

`create_probe(parent)` times the creation of 1,000 empty files in a fresh dir under `parent`.
A benchmark prints it beside each run: what the filesystem costs at that moment, apart from any
tool. Standard library only; root only (mount).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PROBE_FILES = 1000


class PrivateFs:
    """A fresh ext4 on a loop device, mounted at `self.mount` (under `work`), until close()."""

    def __init__(self, work: Path, size: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fs-", dir=work))
        self.image = self.root / "ext4.img"
        self.mount = self.root / "mnt"
        self.mount.mkdir()
        with open(self.image, "wb") as image:
            image.truncate(size)  # sparse: only what the runs write takes room
        try:
            # Inode tables and journal written now: no lazy init thread writing beside the runs.
            _run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)])
            _run(["mount", "-o", "loop", str(self.image), str(self.mount)])
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.device = _source_of(self.mount)

    def describe(self) -> str:
        gib = os.statvfs(self.mount).f_blocks * os.statvfs(self.mount).f_frsize / (1 << 30)
        return f"a fresh ext4 with a journal, {gib:.1f} GiB on {self.device} (an image in {self.root.parent})"

    def close(self) -> list[str]:
        """Unmount (lazily if something still holds it) and delete the image; returns notes."""
        notes = []
        if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode != 0:
            notes.append(f"{self.mount} was busy: unmounted lazily")
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        return notes


def create_probe(parent: Path) -> float:
    """Seconds to create PROBE_FILES empty files in a new dir under `parent` (kept: a deletion
    would be a cost of its own on some filesystems)."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=parent))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    start = time.perf_counter()
    for i in range(PROBE_FILES):
        os.close(os.open(probe / f"f{i}", flags, 0o644))
    return time.perf_counter() - start


def _source_of(mount: Path) -> str:
    return subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)], capture_output=True, text=True).stdout.strip()


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
