"""apply_layer's ways in give one result: a regular file (mapped under a read lease, see
minirun.layer.leasedmap) and a stream (pipe, gzip: read once through HashingReader); each with the
creates made by a forked writer (minirun.layer.filewriter: whenever the process runs no other
thread) or by the applier itself. The regular file is also applied with no writer
("file-inline": read by pread, as beside another thread; "file-unforked": mapped under its lease
all the same, as load's busy workers ask with fork_writer=False), without a lease (read once into the writer's ring: "file-ring", as when the file
is open for writing elsewhere), through a writer with a tiny ring ("file-ring-8k": every window
wraps, marks and waits), and with the applier creating every other file itself beside its writer
("file-shared", "gzip-shared": as when the writer lags).

Every layer here is applied through every feed, and the trees must be identical to the last bit
(modes incl. setuid/setgid/sticky, owners, ns mtimes, xattrs, hardlinks, symlinks, devices,
whiteouts), as must the diff_id and size; each tree is also checked against the tar's own headers.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from minirun.errors import BadArchive
from minirun.layer import archive, filewriter
from minirun.layer.archive import apply_layer, normalize_member_path
from tests.helpers import NUL_NAMES, d, f, hard, make_tar, member, sym

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown, mknod and trusted.* xattrs need root")

FEEDS = ["file", "bytesio", "pipe", "gzip"]  # the pipe's feeding thread keeps its creates in this process
ALL_FEEDS = [*FEEDS, "file-inline", "file-unforked", "file-ring", "file-ring-8k", "file-shared", "gzip-shared"]


@contextlib.contextmanager
def fed(data: bytes, how: str, tmp_path: Path):
    """`data` as apply_layer gets it: an open regular file, a BytesIO, a real pipe, or gzipped."""
    how = how.partition("-")[0]  # the feed; what follows says how the creates happen (created_as)
    if how == "file":
        path = tmp_path / f"layer-{os.urandom(4).hex()}.tar"
        path.write_bytes(data)
        with open(path, "rb") as stream:
            yield stream
    elif how == "bytesio":
        yield io.BytesIO(data)
    elif how == "gzip":
        yield io.BytesIO(gzip.compress(data, compresslevel=1))
    elif how == "pipe":
        r, w = os.pipe()

        def feed() -> None:
            with os.fdopen(w, "wb") as sink:
                with contextlib.suppress(BrokenPipeError):
                    sink.write(data)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        with os.fdopen(r, "rb") as stream:
            yield stream
        writer.join()
    else:
        raise AssertionError(how)


@contextlib.contextmanager
def created_as(how: str):
    """Where the creates of `how` happen: "file-inline" with no writer, "file-ring" through the
    writer's ring (no lease to be had), "file-ring-8k" through a ring of 8 KiB, the others as
    apply_layer decides ("-unforked": told to fork no writer, see apply_fed)."""
    with pytest.MonkeyPatch.context() as patch:
        if how == "file-inline":
            patch.setattr(archive, "can_fork", lambda: False)
        elif how.startswith("file-ring"):
            patch.setattr(archive, "_leased_map", lambda stream, length: None)
            if how == "file-ring-8k":
                patch.setattr(filewriter, "RING_SIZE", 8192)
        elif how.endswith("-shared"):
            turns = itertools.count()
            patch.setattr(filewriter.FileWriter, "lagging", lambda self: next(turns) % 2 == 0)
        yield


def apply_fed(data: bytes, how: str, tmp_path: Path, dest: Path, split_path: str | None = None):
    with fed(data, how, tmp_path) as stream, created_as(how):
        return apply_layer(stream, dest, split_path=split_path, fork_writer=not how.endswith("-unforked"))


def apply(data: bytes, how: str, tmp_path: Path, name: str | None = None):
    dest = tmp_path / (name or f"dest-{how}")
    dest.mkdir()
    return dest, apply_fed(data, how, tmp_path, dest)


def timed_paths(members: list[tuple[tarfile.TarInfo, bytes]]) -> set[str]:
    """The entries whose mtime a header sets (not whiteouts, not implicit parent dirs)."""
    paths = {normalize_member_path(info.name) or "." for info, _ in members}
    return {p for p in paths if not p.rpartition("/")[2].startswith(".wh.")}


def snapshot(root: Path, timed: set[str]) -> dict[str, tuple]:
    """Everything about every entry, hardlinks as the first path of their inode; mtimes only of
    the `timed` entries (the others get the time of the unpacking)."""
    found: dict[str, tuple] = {}
    first_path: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            if name == "" and dirpath != str(root):
                continue
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                body: object = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            else:
                body = None
            xattrs = sorted(
                (n, os.getxattr(path, n, follow_symlinks=False)) for n in os.listxattr(path, follow_symlinks=False)
            )
            group = first_path.setdefault(st.st_ino, rel)
            mtime = st.st_mtime_ns if rel in timed else None
            found[rel] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                mtime,
                st.st_size,
                st.st_rdev,
                st.st_nlink,
                body,
                xattrs,
                group,
            )
    return found


def check_against_headers(root: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """Each member's type, mode (all 12 bits), owner, mtime and contents on disk, as its header says."""
    for info, data in members:
        path = normalize_member_path(info.name)
        base = path.rpartition("/")[2]
        if base.startswith(".wh."):
            continue
        where = root / path if path else root
        st = os.lstat(where)
        mtime_ns = int(info.mtime * 1_000_000_000)
        if "mtime" in info.pax_headers:
            seconds, _, fraction = info.pax_headers["mtime"].partition(".")
            mtime_ns = int(seconds) * 1_000_000_000 + int((fraction[:9] or "0").ljust(9, "0"))
        if info.islnk():
            target = os.lstat(root / normalize_member_path(info.linkname))
            assert (st.st_ino, st.st_nlink) == (target.st_ino, target.st_nlink) and st.st_nlink > 1, path
            continue
        assert (st.st_uid, st.st_gid) == (info.uid, info.gid), (path, st.st_uid, st.st_gid)
        assert st.st_mtime_ns == mtime_ns, path
        if info.issym():
            assert stat.S_ISLNK(st.st_mode) and os.readlink(where) == info.linkname, path
            continue
        assert stat.S_IMODE(st.st_mode) == info.mode & 0o7777, (path, oct(st.st_mode), oct(info.mode))
        if info.isdir():
            assert stat.S_ISDIR(st.st_mode), path
        elif info.isreg():
            assert stat.S_ISREG(st.st_mode) and where.read_bytes() == data, path
        elif info.ischr() or info.isblk():
            assert stat.S_ISCHR(st.st_mode) if info.ischr() else stat.S_ISBLK(st.st_mode), path
            assert st.st_rdev == os.makedev(info.devmajor, info.devminor), path
        elif info.isfifo():
            assert stat.S_ISFIFO(st.st_mode), path


def acl_xattr(user: int, group: int, other: int) -> bytes:
    """A minimal POSIX ACL as the kernel stores it (version 2; USER_OBJ, GROUP_OBJ, OTHER)."""
    entries = ((0x01, user), (0x04, group), (0x20, other))
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF) for tag, perm in entries)


def as_pax_value(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


RICH = [
    d(".", mode=0o755, mtime=1_650_000_000),
    d("bin", mode=0o755, mtime=1_600_000_000),
    f("bin/su", b"\x7fELF su", mode=0o4755),
    f("bin/sg", b"\x7fELF sg", mode=0o2711, uid=12, gid=34),
    f("bin/both", b"x", mode=0o6755, uid=0, gid=0),
    hard("bin/su-again", "bin/su"),
    d("tmp", mode=0o1777),
    f("tmp/sticky-file", b"s", mode=0o1644),
    # A setgid dir with a foreign group: the kernel gives new entries its group and new subdirs
    # its setgid bit; the headers say otherwise, and win.
    d("shared", mode=0o2775, uid=0, gid=42),
    f("shared/root-owned", b"r", mode=0o644),
    f("shared/group-owned", b"g", mode=0o2755, gid=42),
    d("shared/sub", mode=0o755),
    f("shared/sub/deeper", b"d", mode=0o640),
    f("shared/implicit/inside", b"i", mode=0o600),
    sym("shared/link", "root-owned"),
    member("shared/fifo", tarfile.FIFOTYPE, mode=0o644),
    f("shared/.wh.hidden"),
    d("foreign", mode=0o750, uid=1000, gid=1000),
    f("foreign/root-file", b"f", mode=0o644),
    d("foreign/root-dir", mode=0o755),
    f("foreign/root-dir/x", b"x", mode=0o444),
    d("locked", mode=0o500),
    f("locked/file", b"written anyway", mode=0o000),
    f("owned", b"data", uid=1234, gid=5678, mtime=1_500_000_123),
    f("fraction", b"", pax={"mtime": "1700000000.123456789"}),
    f("empty", b""),
    f("block-sized", bytes(range(256)) * 2),
    f("big", os.urandom(300_000), mode=0o755),
    f("long/" + "n" * 150 + "/file-with-a-long-path", b"long"),
    sym("abs", "/etc/passwd"),
    sym("rel", "../../outside/target", uid=5, gid=6, mtime=1_400_000_000),
    hard("link-to-symlink", "abs"),
    member("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
    member("dev/loop0", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0, gid=6),
    member("dev/setuid-node", tarfile.CHRTYPE, mode=0o4600, devmajor=1, devminor=5),
    member("fifo", tarfile.FIFOTYPE, mode=0o640, uid=7, gid=8),
    f(
        "xattrs",
        b"x",
        pax={
            "SCHILY.xattr.user.note": "hello",
            "SCHILY.xattr.trusted.bin": as_pax_value(b"\x00\xff\x80"),
            "SCHILY.xattr.trusted.overlay.redirect": "/etc",
            "SCHILY.xattr.user.empty": "",
        },
    ),
    d("xattr-dir", pax={"SCHILY.xattr.trusted.minirun": "dir"}),
    d("etc"),
    f("etc/.wh.motd", uid=3, gid=4),
    f(".wh.gone-at-root"),
    d("var/cache"),
    f("var/cache/.wh..wh..opq"),
    f("var/cache/new", b"fresh"),
    f("etc/.wh..wh.plnk"),
    f("after-the-dirs", b"end", mode=0o604),
]


def test_every_feed_gives_the_same_layer(tmp_path):
    data = make_tar(RICH) + b"\0" * 3000 + b"trailing bytes count in the digest"
    results = {}
    for how in ALL_FEEDS:
        dest, applied = apply(data, how, tmp_path)
        check_against_headers(dest, RICH)
        results[how] = (snapshot(dest, timed_paths(RICH)), applied)
    reference, ref_applied = results["file"]
    assert ref_applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    for how, (tree, applied) in results.items():
        assert applied == ref_applied, how
        assert tree == reference, how
    # the conversions themselves
    dest = tmp_path / "dest-file"
    for whiteout, owner in (("etc/motd", (3, 4)), ("gone-at-root", (0, 0)), ("shared/hidden", (0, 0))):
        st = os.lstat(dest / whiteout)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == owner
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(dest / "etc")) == ["motd"]
    assert os.getxattr(dest / "xattrs", "trusted.bin") == b"\x00\xff\x80"
    assert "trusted.overlay.redirect" not in os.listxattr(dest / "xattrs")
    inside = os.lstat(dest / "shared/implicit/inside")
    assert (inside.st_gid, stat.S_IMODE(inside.st_mode)) == (0, 0o600)


def test_a_layer_unforked_is_the_layer_its_writer_makes(tmp_path, monkeypatch):
    """fork_writer=False: no writer is forked, the tar is still read in place (mapped under its
    lease), and the tree, diff_id, size and split are those a forked writer gives; the split
    rebuilds the exact tar."""
    from minirun.layer.tarsplit import LayerTarReader

    members = [*RICH, f("several-windows", os.urandom(3 << 20) + b"tail", mode=0o640), hard("big-again", "big")]
    data = make_tar(members) + b"\0" * 1024
    made: list[str] = []
    real_writer, real_source = filewriter.FileWriter, archive._MappedSource

    def writer(*args, **kw):
        made.append("writer")
        return real_writer(*args, **kw)

    class Mapped(real_source):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kw) -> None:
            made.append("mapped")
            super().__init__(*args, **kw)

    monkeypatch.setattr(archive, "FileWriter", writer)
    monkeypatch.setattr(archive, "_MappedSource", Mapped)
    results = {}
    for how in ("file", "file-unforked"):
        dest = tmp_path / f"dest-{how}"
        dest.mkdir()
        split = str(tmp_path / f"split-{how}")
        made.clear()
        applied = apply_fed(data, how, tmp_path, dest, split_path=split)
        assert made == (["writer", "mapped"] if how == "file" else ["mapped"]), how  # read in place either way
        check_against_headers(dest, members)
        with io.BufferedReader(LayerTarReader(split, str(dest), applied.diff_id)) as rebuilt:
            assert rebuilt.read() == data, how
        results[how] = (snapshot(dest, timed_paths(members)), applied, Path(split).read_bytes())
    assert results["file-unforked"] == results["file"]
    assert results["file"][1].diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_sizes_and_offsets_at_block_boundaries(tmp_path):
    sizes = [0, 1, 511, 512, 513, 1023, 1024, 1025, 10240, 65536, 1 << 20, (1 << 20) + 1]
    members = [f(f"f{n}", os.urandom(n)) for n in sizes]
    data = make_tar(members)
    trees = []
    for how in ALL_FEEDS:
        dest, _ = apply(data, how, tmp_path)
        check_against_headers(dest, members)
        trees.append(snapshot(dest, timed_paths(members)))
    assert all(t == trees[0] for t in trees)


@pytest.mark.parametrize("how", FEEDS)
def test_modes_are_exact_under_a_default_acl_on_the_layer_dir(tmp_path, how):
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        os.setxattr(dest, "system.posix_acl_default", acl_xattr(7, 5, 0))  # would make 0644 files 0640
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs here: {exc}")
    members = [
        d("d", mode=0o755),
        f("d/f", b"x", mode=0o644),
        f("g", b"y", mode=0o666),
        member("fifo", tarfile.FIFOTYPE, mode=0o604),
        d("d/sub", mode=0o777),
        f("d/sub/h", b"z", mode=0o755),
    ]
    with fed(make_tar(members), how, tmp_path) as stream:
        apply_layer(stream, dest)
    check_against_headers(dest, members)


@pytest.mark.parametrize("how", FEEDS)
def test_modes_are_exact_under_a_default_acl_from_the_tar(tmp_path, how):
    members = [
        d("acl", mode=0o755, pax={"SCHILY.xattr.system.posix_acl_default": as_pax_value(acl_xattr(7, 0, 0))}),
        f("acl/f", b"x", mode=0o644),
        d("acl/sub", mode=0o755),
        f("acl/sub/g", b"y", mode=0o664),
        f("acl/implicit/h", b"z", mode=0o604),
        f("outside", b"o", mode=0o644),
    ]
    dest, _ = apply(make_tar(members), how, tmp_path)
    if "system.posix_acl_default" not in os.listxattr(dest / "acl"):
        pytest.skip("no POSIX ACLs here")
    check_against_headers(dest, members)


def test_umask_is_restored_after_success_and_failure(tmp_path):
    previous = os.umask(0o027)
    try:
        for how in ("file", "bytesio"):
            apply(make_tar([f("a", b"x", mode=0o666)]), how, tmp_path, name=f"ok-{how}")
            assert os.umask(0o027) == 0o027
            with pytest.raises(BadArchive):
                apply(make_tar([f("a"), f("../escape")]), how, tmp_path, name=f"bad-{how}")
            assert os.umask(0o027) == 0o027
    finally:
        os.umask(previous)


@pytest.mark.parametrize("how", [*FEEDS, "file-ring"])
def test_truncated_contents_are_refused(tmp_path, how):
    data = make_tar([f("a", b"x" * 100), f("b", os.urandom(50_000))])
    with pytest.raises(BadArchive, match="unexpected end of data"):
        apply(data[: 2048 + 20_000], how, tmp_path)


def _insert_global_header(before: list, after: list) -> bytes:
    """A PAX global header between two runs of members: only tarfile reads those."""
    head = make_tar(before)
    end = len(head)
    while head[end - 512 : end] == bytes(512):  # drop the end-of-archive blocks
        end -= 512
    return head[:end] + tarfile.TarInfo.create_pax_global_header({"comment": "from git archive"}) + make_tar(after)


@pytest.mark.parametrize("how", [*FEEDS, "file-ring", "file-ring-8k", "file-shared"])
def test_a_global_header_hands_the_rest_to_tarfile(tmp_path, how):
    before = [d("a"), f("a/one", b"1", mode=0o4755), sym("a/s", "one")]
    after = [
        f("a/two", b"2" * 3000, uid=9, gid=9),
        hard("a/one-again", "a/one"),
        d("b", mode=0o700),
        f("b/x", b"", pax={"SCHILY.xattr.user.k": "v"}),
    ]
    data = _insert_global_header(before, after)
    dest, applied = apply(data, how, tmp_path)
    check_against_headers(dest, before + after)
    assert os.getxattr(dest / "b/x", "user.k") == b"v"
    assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    # the checks go on across the hand-over: the layer's own paths are still known
    for evil in ([f("a/one", b"again")], [hard("c", "../outside")], [sym("l", "/etc"), f("l/x")]):
        fresh = tmp_path / f"evil-{os.urandom(3).hex()}"
        fresh.mkdir()
        with pytest.raises(BadArchive):
            apply_fed(_insert_global_header(before, evil), how, tmp_path, fresh)


@pytest.mark.parametrize("by_tarfile", [False, True])
@pytest.mark.parametrize(
    "evil",
    NUL_NAMES,
    ids=["path", "linkpath", "xattr"],
)
def test_a_nul_byte_in_a_name_is_refused_by_name(tmp_path, evil, by_tarfile):
    """Only a PAX record can carry a NUL into a name. Go's archive/tar (docker's reader) refuses
    it; here it was a bare "embedded null byte" from deep inside (no member named), whichever
    reader had the member."""
    data = _insert_global_header([d("a")], [evil]) if by_tarfile else make_tar([d("a"), evil])
    with pytest.raises(BadArchive, match="a NUL byte in "):
        apply(data, "file", tmp_path)


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar makes the sparse archives")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files_are_left_to_tarfile(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    (src / "before").write_bytes(b"before")
    with open(src / "sparse", "wb") as out:
        out.write(b"head")
        out.seek(3 << 20)
        out.write(b"tail")
    os.link(src / "before", src / "before-link")
    (src / "after").write_bytes(b"after")
    tar_path = tmp_path / f"sparse-{fmt}.tar"
    subprocess.run(
        [
            "tar",
            "--sparse",
            f"--format={fmt}",
            "-cf",
            str(tar_path),
            "-C",
            str(src),
            "before",
            "sparse",
            "before-link",
            "after",
        ],
        check=True,
    )
    data = tar_path.read_bytes()
    with tarfile.open(tar_path) as tar:
        kinds = [(m.name, m.type, m.sparse is not None) for m in tar]
    assert ("sparse", b"S", False) in kinds or any(name.endswith("sparse") and sparse for name, _, sparse in kinds)
    trees = []
    for how in FEEDS:
        dest, applied = apply(data, how, tmp_path)
        assert (dest / "sparse").read_bytes() == b"head" + bytes((3 << 20) - 4) + b"tail"
        assert (dest / "after").read_bytes() == b"after"
        assert os.lstat(dest / "before-link").st_ino == os.lstat(dest / "before").st_ino
        assert applied.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        trees.append(snapshot(dest, {"before", "sparse", "before-link", "after"}))
    assert all(t == trees[0] for t in trees)


def test_contents_cross_filesystems(tmp_path):
    """copy_file_range refuses (EXDEV) between some filesystems: sendfile takes over."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the tests' tmp dir")
    members = [f(f"f{i}", os.urandom(i * 1000 + 1)) for i in range(20)]
    tar_path = shm / f"minirun-test-{os.getpid()}-{os.urandom(4).hex()}.tar"
    tar_path.write_bytes(make_tar(members))
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        with open(tar_path, "rb") as stream:
            apply_layer(stream, dest)
    finally:
        tar_path.unlink()
    check_against_headers(dest, members)
