"""The busybox root filesystem as a deterministic tar, from the host's busybox-static binary.

Run as a script it writes the tar to stdout (`python images/busybox/rootfs.py > busybox.tar`);
minirun calls `write_rootfs(out)` when an image names busybox and the store lacks it.
Same binary in, same bytes out: the layer's diff_id only changes when busybox does.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from typing import BinaryIO

CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
# (path, mode); the rest of the tree comes from the applets' own directories.
DIRS = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
]


class RecipeError(Exception):
    pass


def find_busybox() -> str:
    for path in (shutil.which("busybox"), *CANDIDATES):
        if path and os.path.isfile(path):
            if not is_static_elf(path):
                raise RecipeError(f"{path} is dynamically linked; the image needs busybox-static")
            return os.path.realpath(path)
    raise RecipeError("busybox not found; install the busybox-static package")


def is_static_elf(path: str) -> bool:
    """True when the ELF file has no program interpreter (PT_INTERP), i.e. runs without ld.so."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # ELFCLASS64 only
            return False
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))


def applet_paths(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()} - {"bin/busybox"})


def write_rootfs(out: BinaryIO) -> None:
    busybox = find_busybox()
    mtime = int(os.stat(busybox).st_mtime)
    applets = applet_paths(busybox)
    dirs = dict(DIRS)
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)

    def info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = kind, mode, mtime, 0, 0, "root", "root"
        return ti

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(info(name + "/", tarfile.DIRTYPE, dirs[name]))
        binary = info("bin/busybox", tarfile.REGTYPE, 0o755)
        binary.size = os.path.getsize(busybox)
        with open(busybox, "rb") as f:
            tar.addfile(binary, f)
        for applet in applets:
            link = info(applet, tarfile.LNKTYPE, 0o755)
            link.linkname = "bin/busybox"
            tar.addfile(link)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            data = text.encode()
            ti = info(name, tarfile.REGTYPE, 0o644)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))


if __name__ == "__main__":
    try:
        write_rootfs(sys.stdout.buffer)
    except RecipeError as exc:
        sys.exit(f"rootfs.py: {exc}")
