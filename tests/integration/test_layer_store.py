"""The layer store on a real filesystem: dedup, file fidelity, whiteouts, compression, crashes."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time

import pytest
import zstandard

from minirun.errors import BadArchive
from minirun.image.importer import import_tarball
from minirun.layer.archive import apply_layer
from minirun.store import Store
from minirun.store.reference import parse_reference
from tests.helpers import d, f, hard, make_tar, member, sym, wait_until


def du_bytes(path) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def rootfs_tar(files: int = 50, size: int = 20_000) -> bytes:
    members = [d("etc"), d("data")]
    members += [f(f"data/file{i}", os.urandom(size)) for i in range(files)]
    members.append(f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"))
    return make_tar(members)


def test_same_tar_twice_stores_one_layer(store, tmp_path):
    tar = rootfs_tar()
    first = import_tarball(store, io.BytesIO(tar), parse_reference("a"))
    before = du_bytes(store.root)
    second = import_tarball(store, io.BytesIO(tar), parse_reference("b"))
    after = du_bytes(store.root)
    assert first.diff_ids == second.diff_ids
    assert store.layers.all_ids() == first.diff_ids
    assert after - before < len(tar) / 100
    assert not [n for n in os.listdir(store.layers.dir) if n.startswith(".tmp-")]


def test_diff_id_is_sha256_of_the_uncompressed_stream(store, tmp_path):
    import hashlib

    tar = rootfs_tar(files=3)
    plain = import_tarball(store, io.BytesIO(tar), parse_reference("plain"))
    assert plain.diff_ids == ["sha256:" + hashlib.sha256(tar).hexdigest()]
    for name, packed in (
        ("gz", gzip.compress(tar)),
        ("zst", zstandard.ZstdCompressor().compress(tar)),
        ("xz", lzma.compress(tar)),
    ):
        image = import_tarball(store, io.BytesIO(packed), parse_reference(name))
        assert image.diff_ids == plain.diff_ids, name
    assert len(store.layers.all_ids()) == 1


def test_file_types_modes_owners_times_and_xattrs_survive(tmp_path):
    dest = tmp_path / "layer"
    dest.mkdir()
    tar = make_tar(
        [
            d("bin", mode=0o755, uid=0, gid=0, mtime=1_600_000_000),
            f("bin/su", b"\x7fELF", mode=0o4755, uid=0, gid=0),
            f("bin/sg", b"x", mode=0o2711, uid=12, gid=34),
            d("tmp", mode=0o1777),
            f("owned", b"data", uid=1234, gid=5678, mtime=1_500_000_123),
            sym("abs", "/etc/passwd"),
            sym("rel", "../../outside/target"),
            hard("bin/su-again", "bin/su"),
            member("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
            member("dev/loop", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0),
            member("fifo", tarfile.FIFOTYPE, mode=0o640),
            f(
                "caps",
                b"x",
                pax={
                    "SCHILY.xattr.user.note": "hello",
                    "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                    "SCHILY.xattr.user.overlay.origin": "x",
                },
            ),
        ]
    )
    applied = apply_layer(io.BytesIO(tar), dest)
    st = os.lstat(dest / "bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_nlink == 2
    assert os.lstat(dest / "bin/su-again").st_ino == st.st_ino
    sg = os.lstat(dest / "bin/sg")
    assert (stat.S_IMODE(sg.st_mode), sg.st_uid, sg.st_gid) == (0o2711, 12, 34)
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    owned = os.lstat(dest / "owned")
    assert (owned.st_uid, owned.st_gid, owned.st_mtime) == (1234, 5678, 1_500_000_123)
    assert os.lstat(dest / "bin").st_mtime == 1_600_000_000  # set after its children were created
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.readlink(dest / "rel") == "../../outside/target"
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(dest / "dev/loop").st_mode)
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert os.getxattr(dest / "caps", "user.note") == b"hello"
    names = os.listxattr(dest / "caps")
    assert not [n for n in names if "overlay" in n]
    # hardlinks count once; symlinks count their target's length, as docker sizes layers
    assert applied.size == 4 + 1 + 4 + 1 + len("/etc/passwd") + len("../../outside/target")


def test_oci_whiteouts_become_overlay_whiteouts(tmp_path):
    dest = tmp_path / "layer"
    dest.mkdir()
    tar = make_tar(
        [
            d("etc"),
            f("etc/.wh.motd", uid=0, gid=0),
            d("var/cache"),
            f("var/cache/.wh..wh..opq"),
            f("var/cache/new", "fresh"),
            f(".wh.removed-at-root", uid=7, gid=8),
            f("etc/.wh..wh.plnk"),  # aufs bookkeeping: ignored
        ]
    )
    apply_layer(io.BytesIO(tar), dest)
    motd = os.lstat(dest / "etc/motd")
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == os.makedev(0, 0)
    root_wh = os.lstat(dest / "removed-at-root")
    assert stat.S_ISCHR(root_wh.st_mode) and (root_wh.st_uid, root_wh.st_gid) == (7, 8)
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (dest / "var/cache/new").read_text() == "fresh"
    assert sorted(os.listdir(dest / "etc")) == ["motd"]
    assert not [n for n in os.listdir(dest / "var/cache") if n.startswith(".wh.")]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"this is not a tar archive at all" * 40, id="garbage"),
        pytest.param(None, id="truncated-tar"),
        pytest.param("gzip-truncated", id="truncated-gzip"),
        pytest.param("gzip-corrupt", id="corrupt-gzip"),
        pytest.param("zstd-corrupt", id="corrupt-zstd"),
    ],
)
def test_corrupt_streams_are_refused_and_leave_nothing(store, payload):
    tar = rootfs_tar(files=5)
    if payload is None:
        payload = tar[: len(tar) // 2]
    elif payload == "gzip-truncated":
        payload = gzip.compress(tar)[:2000]
    elif payload == "gzip-corrupt":
        packed = bytearray(gzip.compress(tar))
        packed[100:140] = b"\x00" * 40
        payload = bytes(packed)
    elif payload == "zstd-corrupt":  # zstandard's error class lives in zstandard.backend_c
        payload = zstandard.ZstdCompressor(write_checksum=True).compress(tar)[:-4] + b"\x00" * 4
    with pytest.raises(BadArchive):
        import_tarball(store, io.BytesIO(payload), parse_reference("broken"))
    assert store.images.all() == [] and store.images.tags() == {}
    assert store.layers.all_ids() == []
    assert os.listdir(store.layers.dir) == []


def _dead(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_kill_9_mid_import_leaves_a_consistent_store(store, tmp_path):
    """A crash mid-unpack leaves only a temp dir, which the next command sweeps."""
    tar_path = tmp_path / "big.tar"
    tar_path.write_bytes(rootfs_tar(files=40))
    env = dict(os.environ, MINIRUN_ROOT=store.root)
    # Feed the tar slowly through a pipe so the importer is surely mid-unpack when killed.
    proc = subprocess.Popen([sys.executable, "-m", "minirun", "import", "-", "crashed"], stdin=subprocess.PIPE, env=env)
    data = tar_path.read_bytes()
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.isdir(store.layers.dir) and [n for n in os.listdir(store.layers.dir) if n.startswith(".tmp-")]:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as listing:
        helpers = listing.read().split()  # its file writer (minirun.layer.filewriter)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    # The writer dies with it (PR_SET_PDEATHSIG) a moment later; the crash is over when both are.
    assert wait_until(lambda: all(_dead(pid) for pid in helpers))
    assert [n for n in os.listdir(store.layers.dir) if n.startswith(".tmp-")], "the importer never started unpacking"
    later = Store(store.root)
    assert later.images.all() == [] and later.layers.all_ids() == []
    image = import_tarball(later, open(tar_path, "rb"), parse_reference("crashed"))
    assert later.images.lookup("crashed").id == image.id
    assert os.listdir(later.layers.dir) == [image.diff_ids[0].split(":")[1]]


def test_a_long_unpack_does_not_block_other_commands(store, tmp_path):
    env = dict(os.environ, MINIRUN_ROOT=store.root)
    data = rootfs_tar(files=20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "minirun", "import", "-", "slow"], stdin=subprocess.PIPE, env=env, stdout=subprocess.PIPE
    )
    try:
        proc.stdin.write(data[:10_000])
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not (os.path.isdir(store.layers.dir) and os.listdir(store.layers.dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the importer is now mid-unpack and waiting on its stdin; a reader must not wait for it
        quick = subprocess.run(
            [sys.executable, "-m", "minirun", "images", "-q"], env=env, capture_output=True, timeout=20
        )
        assert quick.returncode == 0 and quick.stdout == b""
        proc.stdin.write(data[10_000:])
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert store.images.lookup("slow")


def test_a_regular_file_and_a_pipe_give_the_same_layer(store, tmp_path):
    """Files take the seekable path (hashed on a second thread), pipes the streaming one."""
    import hashlib

    tar = rootfs_tar(files=30) + b"\0" * 5000  # trailing bytes after the archive count in the digest
    path = tmp_path / "layer.tar"
    path.write_bytes(tar)
    with open(path, "rb") as f:
        from_file = import_tarball(store, f, parse_reference("file"))
    from_pipe = import_tarball(store, io.BytesIO(tar), parse_reference("pipe"))
    assert from_file.diff_ids == from_pipe.diff_ids == ["sha256:" + hashlib.sha256(tar).hexdigest()]
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(tar[: len(tar) // 3])
    with open(truncated, "rb") as f, pytest.raises(BadArchive):
        import_tarball(store, f, parse_reference("truncated"))
    assert len(store.layers.all_ids()) == 1
