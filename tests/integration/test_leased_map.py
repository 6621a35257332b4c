"""A plain tar file is applied in place, from a mapping under a read lease (minirun.layer.leasedmap):
the hash and the writer read the same bytes only because nobody can change them meanwhile. These
tests open the tar for writing while it is applied, as a racing process would, and show that the
layer is refused rather than stored with files its diff_id does not describe."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from minirun.errors import BadArchive
from minirun.layer import archive, leasedmap
from minirun.layer.archive import apply_layer
from tests.fusefile import served_file
from tests.helpers import f, make_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="leases on files of others need CAP_LEASE")

_OVERWRITE = (
    "import sys\nwith open(sys.argv[1], 'r+b') as out:\n    out.seek(int(sys.argv[2]))\n    out.write(b'EVIL')\n"
)


def _tar(tmp_path: Path) -> tuple[Path, bytes, int]:
    """A tar of three files; the offset of the last one's contents. Skips where tmp_path's
    filesystem is one whose files are read once anyway (overlay, NFS...: leasedmap)."""
    data = make_tar([f("first", b"1" * 100), f("second", b"2" * 100), f("last", b"good")])
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    _needs_a_mappable(path)
    return path, data, data.index(b"good")


def _needs_a_mappable(path: Path) -> None:
    with open(path, "rb") as stream:
        if not leasedmap._lease_holds(stream.fileno()):
            pytest.skip(f"{path.parent} is on a filesystem whose files are never mapped")


def _join_the_hash() -> None:
    """Wait for a mapped apply's hash (archive._MappedHash's thread) to have read every byte."""
    for thread in threading.enumerate():
        if thread.name == "layer-hash":
            thread.join()


def _spy_maps(monkeypatch) -> list:
    taken: list = []
    real = archive._leased_map

    def spy(stream, length):
        taken.append(real(stream, length))
        return taken[-1]

    monkeypatch.setattr(archive, "_leased_map", spy)
    return taken


def test_a_plain_file_is_applied_in_place(tmp_path, monkeypatch):
    path, data, _ = _tar(tmp_path)
    taken = _spy_maps(monkeypatch)
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(path, "rb") as stream:
        applied = apply_layer(stream, dest)
    assert isinstance(taken[0], leasedmap.LeasedMap)
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "last").read_bytes() == b"good"
    with open(path, "rb") as stream:  # the lease went with the apply
        assert fcntl.fcntl(stream.fileno(), fcntl.F_GETLEASE) == fcntl.F_UNLCK


def test_a_file_open_for_writing_elsewhere_is_read_once_instead(tmp_path, monkeypatch):
    path, data, _ = _tar(tmp_path)
    taken = _spy_maps(monkeypatch)
    dest = tmp_path / "dest"
    dest.mkdir()
    holder = os.open(path, os.O_WRONLY)  # no lease is granted while this is open
    try:
        with open(path, "rb") as stream:
            applied = apply_layer(stream, dest)
    finally:
        os.close(holder)
    assert taken == [None]
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "last").read_bytes() == b"good"


def _race(tmp_path: Path, monkeypatch, leased: bool, by_descriptor: bool = False):
    """Apply the tar; while its second member is applied, another process opens the tar for
    writing and overwrites the last file's contents. Returns (apply's outcome, dest, process)."""
    path, data, offset = _tar(tmp_path)
    if not leased:  # the wall taken down: a map without a lease
        real_fcntl = fcntl.fcntl

        def no_lease(fd, cmd, arg=0):
            if cmd == fcntl.F_SETLEASE:
                return 0
            if cmd == fcntl.F_GETLEASE:
                return fcntl.F_RDLCK
            return real_fcntl(fd, cmd, arg)

        monkeypatch.setattr(leasedmap.fcntl, "fcntl", no_lease)
    real_apply = archive._Applier.apply
    seen: list = []
    taken = _spy_maps(monkeypatch)

    def racing_apply(self, member, source):
        seen.append(member.name)
        if len(seen) == 2:
            _join_the_hash()  # it has read the bytes before the race
            seen.append(subprocess.Popen([sys.executable, "-c", _OVERWRITE, str(path), str(offset)]))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until the other process is in (or past) its open
                if not leased and seen[-1].poll() is not None:
                    break
                if leased and not taken[0].intact():  # (the lease is on a descriptor of the map's own)
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the racing process never opened the tar")
        return real_apply(self, member, source)

    monkeypatch.setattr(archive._Applier, "apply", racing_apply)
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(os.open(path, os.O_RDONLY) if by_descriptor else path, "rb") as stream:
        try:
            outcome: object = apply_layer(stream, dest)
        except BadArchive as exc:
            outcome = exc
    process = seen[2]
    assert process.wait(timeout=60) == 0
    return outcome, dest, data


def test_without_the_lease_a_racing_writer_gets_other_bytes_into_the_layer(tmp_path, monkeypatch):
    outcome, dest, data = _race(tmp_path, monkeypatch, leased=False)
    assert outcome.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()  # the bytes before the race...
    assert (dest / "last").read_bytes() == b"EVIL"  # ...but a file of the race's


@pytest.mark.parametrize("by_descriptor", [False, True], ids=["path", "descriptor"])
def test_a_racing_writer_waits_and_the_layer_is_refused(tmp_path, monkeypatch, by_descriptor):
    """Refused with the tar's path, also when it was opened from a descriptor (its name an int)."""
    outcome, _, _ = _race(tmp_path, monkeypatch, leased=True, by_descriptor=by_descriptor)
    assert isinstance(outcome, BadArchive)
    assert f"{tmp_path}/layer.tar was opened for writing while it was read" in str(outcome)


# Shares the tar's open file description (its descriptor inherited): lets go of any lease there,
# writes the file where it can, and takes a lease there again.
_SHARER = (
    "import fcntl, os, sys\n"
    "path, fd, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "try:\n"
    "    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)\n"
    "except BlockingIOError:\n"
    "    pass  # none there\n"
    "try:\n"
    "    out = os.open(path, os.O_WRONLY | os.O_NONBLOCK)\n"
    "except BlockingIOError:\n"
    "    sys.exit(3)  # a lease it cannot lift (the break has begun: its holder sees it)\n"
    "os.pwrite(out, b'EVIL', offset)\n"
    "os.close(out)\n"
    "fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)\n"
)


def test_whoever_shares_the_descriptor_cannot_lift_the_lease_unseen(tmp_path):
    """A lease belongs to an open file description, and the tar's descriptor shares one with
    whoever handed it over (a shell, a `sudo` caller, a program that kept its copy). The lease
    was taken on it: such a process could let it go, write the file and take it again, and
    intact() said yes over bytes the hash never read. It is now taken on a description of the
    map's own, which the sharer cannot touch: its write has to break it."""
    path, data, offset = _tar(tmp_path)
    with open(path, "rb") as stream:
        mapped = leasedmap.LeasedMap.take(stream.fileno(), 0, len(data))
        assert mapped is not None
        try:
            sharer = [sys.executable, "-c", _SHARER, str(path), str(stream.fileno()), str(offset)]
            done = subprocess.run(sharer, pass_fds=(stream.fileno(),), timeout=60)
            changed = path.read_bytes() != data
            assert not (changed and mapped.intact()), "the tar was written under a lease that still says intact"
            assert (done.returncode, changed, mapped.intact()) == (3, False, False)
        finally:
            mapped.close()


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no FUSE in this kernel")
@pytest.mark.parametrize("walled", [True, False], ids=["walled", "unwalled"])
def test_a_file_its_filesystem_changes_unopened_is_read_once(tmp_path, monkeypatch, walled):
    """A lease tells of this host's opens alone: a FUSE server (any user who may mount one can hand
    root such a file) changes a file's bytes with nobody opening it. Mapped under a lease, the
    hash read the tar's bytes and the writer, after the server's change, others: a layer stored
    under a diff_id its files do not have, which the store, content-addressed, would give any
    image whose layer has that diff_id. Such a file is read once, as a pipe is: the bytes
    written are the bytes hashed. The control (unwalled): mapped all the same (the check taken
    down), the layer gets the server's new bytes under the old diff_id."""
    if not walled:
        monkeypatch.setattr(leasedmap, "_lease_holds", lambda fd: True)
    first = make_tar([f("first", b"1" * 100), f("second", b"2" * 100), f("last", b"good")])
    real_apply = archive._Applier.apply
    seen: list = []

    def change_after_the_hash(self, member, source):
        seen.append(member.name)
        if len(seen) == 2:
            _join_the_hash()  # (mapped) it has read the bytes before the change
            change()
        return real_apply(self, member, source)

    monkeypatch.setattr(archive._Applier, "apply", change_after_the_hash)
    dest = tmp_path / "dest"
    dest.mkdir()
    with served_file(tmp_path / "mnt", first, first.replace(b"good", b"EVIL")) as (path, change):
        with open(path, "rb") as stream:
            applied = apply_layer(stream, dest)
    stored = (dest / "last").read_bytes()
    written = make_tar([f("first", b"1" * 100), f("second", b"2" * 100), f("last", stored)])
    if walled:
        assert applied.diff_id == "sha256:" + hashlib.sha256(written).hexdigest(), stored
    else:
        assert stored == b"EVIL" and applied.diff_id == "sha256:" + hashlib.sha256(first).hexdigest()


def test_a_hash_cut_short_by_a_signal_ends_quietly(tmp_path, monkeypatch):
    """A load worker's SIGTERM ends its apply inside the hash's join, and the mapping is closed
    under the hash's thread: it printed a traceback ("Exception in thread layer-hash") into a
    load's output. The digest is nobody's then: the thread just ends."""
    path = tmp_path / "big.tar"
    with open(path, "wb") as out:
        out.truncate(1 << 30)  # sparse: a second or so to hash
    _needs_a_mappable(path)
    failures: list = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    with open(path, "rb") as stream:
        mapped = leasedmap.LeasedMap.take(stream.fileno(), 0, 1 << 30)
        assert mapped is not None
        hasher = archive._MappedHash(mapped, 1 << 30)
        mapped.close()  # what apply_layer's finally does once the signal's exit left finish()
        hasher._thread.join(timeout=60)
    assert not hasher._thread.is_alive() and failures == []


def _mkfs(kind: str) -> str | None:
    return shutil.which(f"mkfs.{kind}", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


@pytest.mark.parametrize("kind", ["ext4-unwalled", "ext4", "btrfs"])
def test_a_file_on_a_loop_device_is_read_once_whatever_its_filesystem(tmp_path, monkeypatch, kind):
    """A loop device's bytes are its image file's, which anyone who may write the image changes
    with nobody opening the layer tar: no lease tells. The loop device was recognised by the
    tar's st_dev alone; a btrfs file's st_dev is an anonymous device of btrfs's (0:N), never
    the loop device's, so a tar on a btrfs image was mapped. Once the hash has read a page the
    kernel may drop it (memory pressure, here MADV_PAGEOUT) and read it again, from the image,
    when the writer gets there: the image's writer then put bytes of its own under the tar's
    diff_id. ext4 on a loop device, read once: the same change comes too late. The control
    (ext4-unwalled): the same tar mapped there all the same (the check taken down) takes the
    image writer's bytes, so the probe reaches what a map reads."""
    unwalled = kind == "ext4-unwalled"
    kind = kind.removesuffix("-unwalled")
    if unwalled:
        monkeypatch.setattr(leasedmap, "_lease_holds", lambda fd: True)
    mkfs = _mkfs(kind)
    if mkfs is None:
        pytest.skip(f"no mkfs.{kind}")
    data = make_tar([f("first", b"1" * 8192), f("second", b"2" * 8192), f("last", b"good" * 2048)])
    image, mnt = tmp_path / "image", tmp_path / "mnt"
    with open(image, "wb") as out:
        out.truncate(256 << 20)
    subprocess.run([mkfs, "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir()
    loop = subprocess.run(["losetup", "--show", "-f", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    try:
        # nodatasum: btrfs would otherwise refuse (EIO) data its checksum does not match; the
        # image's maker chooses its options (or sets the tar's NODATACOW attribute) as it likes.
        options = ["-o", "nodatasum"] if kind == "btrfs" else []
        subprocess.run(["mount", *options, device, str(mnt)], check=True)
        try:
            path = mnt / "layer.tar"
            path.write_bytes(data)
            os.sync()
            # where the last file's bytes lie in the image (the tar is written in one extent)
            with open(image, "rb") as raw:
                whole = raw.read()
            at = whole.find(data)
            assert at >= 0
            offset = at + data.index(b"good" * 2048)
            del whole
            taken = _spy_maps(monkeypatch)
            real_apply = archive._Applier.apply
            seen: list = []

            def change_after_the_hash(self, member, source):
                seen.append(member.name)
                if len(seen) == 2:
                    _join_the_hash()
                    if taken and taken[0] is not None:  # the hashed pages dropped, as memory pressure does
                        taken[0]._map.madvise(21)  # MADV_PAGEOUT
                    with open(path, "rb") as reader:
                        os.posix_fadvise(reader.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    with open(image, "r+b") as raw:  # the image's writer: the tar is never opened
                        raw.seek(offset)
                        raw.write(b"EVIL" * 2048)
                        raw.flush()
                        os.fsync(raw.fileno())
                return real_apply(self, member, source)

            monkeypatch.setattr(archive._Applier, "apply", change_after_the_hash)
            dest = tmp_path / "dest"
            dest.mkdir()
            with open(path, "rb") as stream:
                applied = apply_layer(stream, dest)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=True)
    stored = (dest / "last").read_bytes()
    written = make_tar([f("first", b"1" * 8192), f("second", b"2" * 8192), f("last", stored)])
    if unwalled:
        assert stored.startswith(b"EVIL") and applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        return
    assert applied.diff_id == "sha256:" + hashlib.sha256(written).hexdigest(), stored[:8]
