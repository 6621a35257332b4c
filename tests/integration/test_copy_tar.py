"""cp's tar streams (layer/treetar.py) on the real kernel, no container: a tree round trips with
its bytes, modes, owners, links and xattrs; a hostile tar extracted onto the host never writes
outside its destination; paths resolved as a container's stay inside its root."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from minirun.errors import BadArchive, MinirunError
from minirun.layer.treetar import IN_CONTAINER, ON_HOST, Extractor, Tree, Writer
from tests.helpers import NUL_NAMES, d, f, hard, make_tar, member, sym

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown, mknod and xattrs need root")


def archive(parent: Path, name: str, arcname: str) -> bytes:
    out = io.BytesIO()
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            Writer(tar).add(fd, name, arcname)
    finally:
        os.close(fd)
    return out.getvalue()


def extract(data: bytes, dest: Path, resolve: int = ON_HOST, path: str = "", **kw) -> list[str]:
    warnings: list[str] = []
    fd = os.open(dest, os.O_PATH | os.O_DIRECTORY)
    try:
        kw.setdefault("owner", None)
        kw.setdefault("implied_owner", (0, 0))
        kw.setdefault("host", resolve == ON_HOST)
        Extractor(Tree(fd, resolve), path, str(dest), warn=warnings.append, **kw).extract(io.BytesIO(data))
    finally:
        os.close(fd)
    return warnings


def test_a_tree_round_trips(tmp_path):
    src = tmp_path / "src" / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_bytes(b"\x00bytes\xff" * 1000)
    os.chown(src / "file", 1234, 5678)
    os.chmod(src / "file", 0o4751)
    os.setxattr(src / "file", "user.note", b"kept")
    os.link(src / "file", src / "sub" / "hardlink")
    os.symlink("../file", src / "sub" / "link")
    os.mkfifo(src / "fifo", 0o640)
    os.chmod(src / "sub", 0o2770)
    os.utime(src / "sub", ns=(1_600_000_000_000_000_000,) * 2)
    data = archive(src.parent, "tree", "copied")

    kept = tmp_path / "kept"
    kept.mkdir()
    assert extract(data, kept) == []
    out = kept / "copied"
    assert (out / "file").read_bytes() == (src / "file").read_bytes()
    st = os.stat(out / "file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4751)
    assert os.getxattr(out / "file", "user.note") == b"kept"
    assert os.stat(out / "sub" / "hardlink").st_ino == st.st_ino
    assert os.readlink(out / "sub" / "link") == "../file"
    assert stat.S_ISFIFO(os.stat(out / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(out / "sub").st_mode) == 0o2770
    assert os.stat(out / "sub").st_mtime_ns == 1_600_000_000_000_000_000

    # not kept (cp without -a onto the host): the user's own, and no set-id bit the source chose
    mine = tmp_path / "mine"
    mine.mkdir()
    extract(data, mine, owner=(4321, 8765))
    st = os.stat(mine / "copied" / "file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 8765, 0o751)
    assert os.lstat(mine / "copied" / "sub" / "link").st_uid == 4321


def test_a_hostile_tar_stays_in_its_destination_on_the_host(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    dest = tmp_path / "dest"
    dest.mkdir()
    # a file through a link the tar made: ELOOP, never outside/pwned
    with pytest.raises(OSError):
        extract(make_tar([sym("l", str(outside)), f("l/pwned", "x")]), dest)
    with pytest.raises(OSError):
        extract(make_tar([sym("r", "../outside"), f("r/pwned", "x")]), dest)
    for name in ("../outside/pwned", "a/../../outside/pwned"):
        with pytest.raises(BadArchive, match="is outside of"):
            extract(make_tar([f(name, "x")]), dest)
    with pytest.raises(BadArchive, match="is outside of"):
        extract(make_tar([hard("h", "../outside/victim")]), dest)
    with pytest.raises(OSError):  # a hardlink through a link: refused as well
        extract(make_tar([sym("v", str(outside)), hard("h", "v/victim")]), dest)
    # an existing hardlink to a host file is replaced, never written through
    os.link(outside / "victim", dest / "shared")
    warnings = extract(
        make_tar(
            [
                f("shared", "new"),
                f("/abs/name", "joined below dest"),
                member("disk", tarfile.BLKTYPE, mode=0o666, devmajor=8, devminor=0),
                f("caps", "x", pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}),
            ]
        ),
        dest,
        owner=(0, 0),
    )
    assert warnings == [f"skipped device node {dest}/disk: device nodes are not copied onto the host"]
    assert not (dest / "disk").exists()
    assert (dest / "shared").read_text() == "new"
    assert (dest / "abs" / "name").read_text() == "joined below dest"
    assert "security.capability" not in os.listxattr(dest / "caps")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "untouched"


@pytest.mark.parametrize(
    "evil",
    NUL_NAMES,
    ids=["path", "linkpath", "xattr"],
)
def test_a_nul_byte_in_a_name_is_refused_by_name(tmp_path, evil):
    """Only a PAX record carries a NUL into a name; Go's archive/tar (docker's) refuses it. It was
    a bare "embedded null byte" with nothing named."""
    with pytest.raises(BadArchive, match="a NUL byte in "):
        extract(make_tar([evil]), tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_directory_and_a_file_never_replace_each_other(tmp_path):
    dest = tmp_path / "dest"
    (dest / "dir").mkdir(parents=True)
    (dest / "file").write_text("x")
    with pytest.raises(MinirunError, match=f'cannot overwrite directory "{dest}/dir" with non-directory'):
        extract(make_tar([f("dir", "x")]), dest)
    with pytest.raises(MinirunError, match=f'cannot overwrite non-directory "{dest}/file" with directory'):
        extract(make_tar([d("file")]), dest)


def test_container_paths_resolve_inside_the_root(tmp_path):
    """A fake container root full of links out: every resolution, and every write of a tar that
    goes through a link it made, lands inside the root and never in the host's tmp_path."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("container's")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("host's")
    os.symlink("/", root / "out")
    os.symlink("../../../../../..", root / "up")
    os.symlink(str(tmp_path), root / "abs")  # the host path of the root's parent
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        tree = Tree(fd, IN_CONTAINER)
        for path in ("/out/etc/passwd", "up/etc/passwd", "/up/../etc/../../etc/passwd"):
            opened = tree.open(path, os.O_RDONLY)
            assert os.read(opened, 100) == b"container's"
            os.close(opened)
        with pytest.raises(FileNotFoundError):
            tree.open("/abs/etc/passwd", os.O_RDONLY)
    finally:
        os.close(fd)
    extract(make_tar([sym("l", "/"), f("l/etc/planted", "x"), f("up/etc/planted2", "y")]), root, IN_CONTAINER, "/out")
    assert (root / "etc" / "planted").read_text() == "x"
    assert (root / "etc" / "planted2").read_text() == "y"
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["passwd"]
