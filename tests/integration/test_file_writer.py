"""The forked file writer (minirun.layer.filewriter) changes where creates happen, never what the
applier reports: the same errors with and without it, the first one first; no writer outlives a
failed apply; and none is forked beside another thread."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest

from minirun.errors import BadArchive
from minirun.layer import archive, filewriter
from minirun.layer.archive import apply_layer
from tests.helpers import f, make_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* xattrs and mounts need root")

WAYS = ["writer", "inline", "unforked"]  # unforked: may fork, told not to (mapped, created here)


def apply_as(way: str, data: bytes, tmp_path: Path, dest: Path | None = None):
    """Apply `data` from a regular file, its creates made by the writer or by the applier itself
    (read by pread, or, "unforked", from the file mapped as for a writer)."""
    if dest is None:
        dest = tmp_path / f"dest-{way}-{os.urandom(3).hex()}"
        dest.mkdir()
    layer = tmp_path / f"layer-{os.urandom(3).hex()}.tar"
    layer.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch, open(layer, "rb") as stream:
        patch.setattr(archive, "can_fork", lambda: way != "inline")
        return apply_layer(stream, dest, fork_writer=way == "writer")


def children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            found.update(int(pid) for pid in listing.read().split())
    return found


# A value over the kernel's 64 KiB limit: E2BIG, which is no namespace lacking (not skipped).
TOO_BIG = {"SCHILY.xattr.user.huge": "x" * (70 << 10)}


@pytest.mark.parametrize("way", WAYS)
def test_a_refused_xattr_is_one_error_either_way(tmp_path, way):
    data = make_tar([f("fine", b"1"), f("huge", b"2", pax=TOO_BIG), f("after", b"3")])
    with pytest.raises(BadArchive, match=r"cannot set xattr user\.huge on 'huge': Argument list too long"):
        apply_as(way, data, tmp_path)


@pytest.mark.parametrize("way", WAYS)
def test_the_first_failure_is_reported_even_when_the_writer_has_it(tmp_path, way):
    """The writer fails on a member the applier passed long before it refuses a later one."""
    data = make_tar([f("huge", b"", pax=TOO_BIG), *[f(f"f{i}", b"x") for i in range(50)], f("../escape")])
    with pytest.raises(BadArchive, match=r"cannot set xattr user\.huge"):
        apply_as(way, data, tmp_path)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("way", WAYS)
def test_a_full_disk_is_the_same_oserror_either_way(tmp_path, way):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        (disk / "dest").mkdir()
        data = make_tar([f(f"f{i}", os.urandom(40_000)) for i in range(20)])
        with pytest.raises(OSError) as caught:
            apply_as(way, data, tmp_path, disk / "dest")
        assert caught.value.errno == errno.ENOSPC
        assert str(caught.value) == "[Errno 28] No space left on device"  # a write's: no file name
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_no_writer_outlives_a_failed_apply(tmp_path):
    before = children()
    for data in (
        make_tar([*[f(f"f{i}", os.urandom(3000)) for i in range(200)], f("a/../../escape")]),  # the applier's refusal
        make_tar([f("huge", b"", pax=TOO_BIG), *[f(f"g{i}", b"x") for i in range(200)]]),  # the writer's
    ):
        with pytest.raises(BadArchive):
            apply_as("writer", data, tmp_path)
        assert children() == before


def test_no_writer_is_forked_beside_another_thread():
    assert filewriter.can_fork()  # the tests run single-threaded on two CPUs or more
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not filewriter.can_fork()
    finally:
        stop.set()
        other.join()
    assert filewriter.can_fork()
