"""Crafted layers that try to write outside their layer dir, applied for real as root.

The cases are those of containerd's `pkg/archive/tar_test.go` (TestBreakouts, TestRelativeSymlinks),
plus the refusals issue 2 asks for. containerd resolves every path *inside* its root, so many of
its layers unpack there; our rule is stricter and simpler: a member may only pass through
directories this layer created, and a hardlink may only name something this layer created. So:

- a symlink with an absolute or upward target is fine to *create* (it resolves inside the
  container); going *through* it is refused;
- `..` components and absolute member names are refused outright;
- where containerd's case needs a lower layer already on disk, we play it twice: everything in
  one tar (then it is a duplicate path or a path through a symlink: refused) and the upper layer
  alone into an empty dir (then it must unpack, staying inside).

Every escape target points at a real "host" next to the layer dir: `world/etc/passwd` (by absolute
path, and by a relative path that reaches it from the symlink's place), so a wrong implementation
would visibly touch it. After each case the whole world outside the layer dir must be byte-, mode-,
owner-, xattr-, link-count- and time-identical, with no new entry.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from minirun.errors import BadArchive
from minirun.layer.archive import apply_layer
from tests.helpers import d, f, hard, make_tar, member, sym

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown, mknod and trusted.* xattrs need root")

OLD_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: any touch of the host moves a time off it
SECRET = b"root:x:0:0:host secret:/root:/bin/sh\n"


# -- the host around the layer dir --------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """`world/` is the host; `world/dest` the empty layer dir; everything else must stay as is."""

    world: Path

    @property
    def dest(self) -> Path:
        return self.world / "dest"

    @property
    def etc(self) -> str:
        return str(self.world / "etc")

    @property
    def passwd(self) -> str:
        return str(self.world / "etc" / "passwd")

    @property
    def perm400(self) -> str:
        return str(self.world / "perm400")

    @property
    def also_exists(self) -> str:
        return str(self.world / "also-exists-outside-root")


def _entry_state(path: str) -> tuple:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        body: object = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            body = fh.read()
    else:
        body = None
    xattrs = sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in os.listxattr(path, follow_symlinks=False))
    # atime is left out: reading the snapshot itself moves it.
    return (
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_nlink,
        st.st_ino,
        st.st_mtime_ns,
        st.st_ctime_ns,
        body,
        xattrs,
    )


def _snapshot(world: Path, skip: Path) -> dict[str, tuple]:
    """Every entry below `world` except the layer dir's subtree, never following a symlink."""
    found = {}
    pending = [str(world)]
    while pending:
        path = pending.pop()
        found[path] = _entry_state(path)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            pending.extend(e.path for e in os.scandir(path) if e.path != str(skip))
    return found


def _inodes(world: Path, skip: Path) -> set[tuple[int, int]]:
    out = set()
    for path in _snapshot(world, skip):
        st = os.lstat(path)
        out.add((st.st_dev, st.st_ino))
    return out


def _real_host_watch(members: list[tuple[tarfile.TarInfo, bytes]]) -> dict[str, object]:
    """The real / and /etc, for the literal `/etc` targets of containerd's cases: /etc/passwd's
    inode facts, and whether any name the layer uses exists there."""
    names = set()
    for info, _ in members:
        for name in (info.name, info.linkname):
            base = os.path.basename(name.rstrip("/"))
            if base not in ("", ".", ".."):
                names.add(base)
    st = os.lstat("/etc/passwd")
    watch: dict[str, object] = {"/etc/passwd": (st.st_ino, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_mode)}
    for top in ("/", "/etc"):
        for name in sorted(names):
            watch[os.path.join(top, name)] = os.path.lexists(os.path.join(top, name))
    return watch


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path / "world")
    h.world.mkdir()
    h.dest.mkdir()
    os.mkdir(h.etc, 0o755)
    for path, data, mode in (
        (h.passwd, SECRET, 0o644),
        (os.path.join(h.etc, "emptied"), b"notempty", 0o644),
        (os.path.join(h.etc, "whitedout"), b"ahhhh whiteout", 0o644),
        (h.perm400, b"...", 0o400),
        (h.also_exists, b"...", 0o640),
    ):
        with open(path, "wb") as fh:
            fh.write(data)
        os.chmod(path, mode)
        os.utime(path, ns=(OLD_NS, OLD_NS))
    os.utime(h.etc, ns=(OLD_NS, OLD_NS))
    return h


class Untouched:
    """Snapshot the host before applying; `check()` after proves nothing outside the layer moved."""

    def __init__(self, h: Host, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        self.h, self.members = h, members
        self.before = _snapshot(h.world, h.dest)
        self.real_before = _real_host_watch(members)

    def check(self) -> None:
        after = _snapshot(self.h.world, self.h.dest)
        assert sorted(after) == sorted(self.before), "entries appeared or vanished outside the layer dir"
        for path, state in self.before.items():
            assert after[path] == state, f"{path} changed outside the layer dir"
        assert (Path(self.h.passwd).read_bytes(), os.lstat(self.h.passwd).st_mtime_ns) == (SECRET, OLD_NS)
        assert _real_host_watch(self.members) == self.real_before, "the real / or /etc changed"
        self._check_dest_is_self_contained()

    def _check_dest_is_self_contained(self) -> None:
        # Whatever is left in the layer dir shares no inode with the host (no hardlink out).
        outside = _inodes(self.h.world, self.h.dest)
        if not self.h.dest.exists():
            return
        for dirpath, dirnames, filenames in os.walk(self.h.dest):  # never follows symlinks
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                assert (st.st_dev, st.st_ino) not in outside, f"{dirpath}/{name} is a hardlink to the host"


Build = Callable[[Host], list]


def case(case_id: str, build: Build, *marks):
    return pytest.param(build, id=case_id, marks=marks)


# -- layers that must be refused ----------------------------------------------------------

REFUSED = [
    # containerd SymlinkAbsolute: localetc -> /etc, then a file through localetc.
    case(
        "SymlinkAbsolute-literal-etc", lambda h: [d("etc"), sym("localetc", "/etc"), f("localetc/unbroken", "unbroken")]
    ),
    case("SymlinkAbsolute-host-abs", lambda h: [d("etc"), sym("localetc", h.etc), f("localetc/unbroken", "unbroken")]),
    case(
        "SymlinkAbsolute-host-rel", lambda h: [d("etc"), sym("localetc", "../etc"), f("localetc/unbroken", "unbroken")]
    ),
    case("SymlinkAbsolute-overwrite-sentinel", lambda h: [sym("localetc", h.etc), f("localetc/passwd", "pwned")]),
    case(
        "SymlinkAbsolute-absolute-member-name",
        lambda h: [d("etc"), sym("localetc", "/etc"), f("/localetc/unbroken", "unbroken")],
    ),
    # containerd SymlinkUpAndOut
    case(
        "SymlinkUpAndOut-literal",
        lambda h: [d("etc"), d("dummy"), sym("localetc", "/dummy/../etc"), f("localetc/unbroken", "unbroken")],
    ),
    case(
        "SymlinkUpAndOut-host-rel",
        lambda h: [d("etc"), d("dummy"), sym("localetc", "dummy/../../etc"), f("localetc/unbroken", "unbroken")],
    ),
    # containerd SymlinkMultipleAbsolute: a chain of two absolute links.
    case(
        "SymlinkMultipleAbsolute-through-first",
        lambda h: [
            d("etc"),
            d("dummy"),
            sym("dummy/etc", h.etc),
            sym("localetc", "/dummy/etc"),
            f("dummy/etc/unbroken", "unbroken"),
        ],
    ),
    case(
        "SymlinkMultipleAbsolute-through-chain",
        lambda h: [
            d("etc"),
            d("dummy"),
            sym("dummy/etc", h.etc),
            sym("localetc", "/dummy/etc"),
            f("localetc/unbroken", "unbroken"),
        ],
    ),
    # containerd SymlinkMultipleRelative
    case(
        "SymlinkMultipleRelative-through-first",
        lambda h: [
            d("etc"),
            d("dummy"),
            sym("dummy/etc", "../../etc"),
            sym("localetc", "./dummy/etc"),
            f("dummy/etc/unbroken", "unbroken"),
        ],
    ),
    case(
        "SymlinkMultipleRelative-through-chain",
        lambda h: [
            d("etc"),
            d("dummy"),
            sym("dummy/etc", "../../etc"),
            sym("localetc", "./dummy/etc"),
            f("localetc/unbroken", "unbroken"),
        ],
    ),
    # containerd SymlinkEmptyFile: an empty file through the link would truncate the host's file.
    case(
        "SymlinkEmptyFile-host-abs",
        lambda h: [d("etc"), f("etc/emptied", "notempty"), sym("localetc", h.etc), f("localetc/emptied", b"")],
    ),
    case(
        "SymlinkEmptyFile-host-rel",
        lambda h: [d("etc"), f("etc/emptied", "notempty"), sym("localetc", "../etc"), f("localetc/emptied", b"")],
    ),
    # containerd HardlinkRelative: a hardlink whose target goes through a symlink up and out.
    case(
        "HardlinkRelative",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            d("breakouts"),
            sym("breakouts/d1", "../../etc"),
            hard("breakouts/mypasswd", "breakouts/d1/passwd"),
        ],
    ),
    # containerd HardlinkDownAndOut
    case(
        "HardlinkDownAndOut",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            d("breakouts"),
            d("downandout"),
            sym("breakouts/d1", "../downandout/../../etc"),
            hard("breakouts/mypasswd", "breakouts/d1/passwd"),
        ],
    ),
    # containerd HardlinkAbsolute
    case(
        "HardlinkAbsolute-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", "/etc"),
            hard("localpasswd", "/localetc/passwd"),
        ],
    ),
    case(
        "HardlinkAbsolute-host-abs",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", h.etc),
            hard("localpasswd", "localetc/passwd"),
        ],
    ),
    # containerd HardlinkRelativeLong
    case(
        "HardlinkRelativeLong-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", "../../../../../../../etc"),
            hard("localpasswd", "/localetc/passwd"),
        ],
    ),
    case(
        "HardlinkRelativeLong-relative-linkname",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", "../../../../../../../etc"),
            hard("localpasswd", "localetc/passwd"),
        ],
    ),
    # containerd HardlinkRelativeUpAndOut (with `upandout` present, the link really reaches world/etc)
    case(
        "HardlinkRelativeUpAndOut-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", "upandout/../../../etc"),
            hard("localpasswd", "/localetc/passwd"),
        ],
    ),
    case(
        "HardlinkRelativeUpAndOut-host-rel",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            d("upandout"),
            sym("localetc", "upandout/../../etc"),
            hard("localpasswd", "localetc/passwd"),
        ],
    ),
    # containerd HardlinkDirectRelative: `..` in the link name itself.
    case(
        "HardlinkDirectRelative-literal",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), hard("localpasswd", "../../../../../etc/passwd")],
    ),
    case(
        "HardlinkDirectRelative-host-rel",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), hard("localpasswd", "../etc/passwd")],
    ),
    # containerd HardlinkDirectAbsolute: containerd (and docker) read "/etc/passwd" as the layer's
    # own etc/passwd; we refuse absolute link names like absolute member names.
    case(
        "HardlinkDirectAbsolute-literal",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), hard("localpasswd", "/etc/passwd")],
    ),
    case(
        "HardlinkDirectAbsolute-host-abs",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), hard("localpasswd", h.passwd)],
    ),
    # containerd SymlinkParentDirectory / SymlinkEmptyFilename: a symlink named like the root.
    case(
        "SymlinkParentDirectory",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), sym("..", "/etc/"), hard("localpasswd", "etc/passwd")],
    ),
    case(
        "SymlinkEmptyFilename",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), sym("", "/etc/"), hard("localpasswd", "etc/passwd")],
    ),
    case(
        "SymlinkDotFilename",
        lambda h: [d("etc", 0o770), f("etc/passwd", "inside"), sym(".", h.etc), f("passwd", "pwned")],
    ),
    case("SymlinkDotSlashFilename", lambda h: [sym("./", h.etc), f("passwd", "pwned")]),
    # containerd SymlinkParentRelative: the symlink's own name has `..`; then the same without it.
    case(
        "SymlinkParentRelative-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc/sub/..", "/etc/"),
            hard("localetc/localpasswd", "/etc/passwd"),
        ],
    ),
    case(
        "SymlinkParentRelative-cleaned",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("localetc", "../etc"),
            hard("localetc/localpasswd", "etc/passwd"),
        ],
    ),
    # containerd SymlinkSlashEnded, verbatim (absolute link name); the relative form is allowed below.
    case(
        "SymlinkSlashEnded-absolute-linkname",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            d("localetc/", 0o770),
            hard("localetc/localpasswd", "/etc/passwd"),
        ],
    ),
    # containerd SymlinkOverrideDirectory(+Relative): lower has dir localetc, upper makes it a link.
    case(
        "SymlinkOverrideDirectory-one-tar",
        lambda h: [
            d("etc"),
            f("etc/passwd", "inside"),
            d("localetc/"),
            sym("localetc", h.etc),
            hard("localetc/localpasswd", "etc/passwd"),
        ],
    ),
    case(
        "SymlinkOverrideDirectory-upper-alone",
        lambda h: [sym("localetc", h.etc), hard("localetc/localpasswd", "etc/passwd")],
    ),
    case(
        "SymlinkOverrideDirectoryRelative-one-tar",
        lambda h: [
            d("etc"),
            f("etc/passwd", "inside"),
            d("localetc/"),
            sym("localetc", "../etc"),
            hard("localetc/localpasswd", "etc/passwd"),
        ],
    ),
    case(
        "SymlinkOverrideDirectoryRelative-upper-alone",
        lambda h: [sym("localetc", "../../etc"), hard("localetc/localpasswd", "etc/passwd")],
    ),
    # containerd DirectoryOverrideSymlink: lower has localetc -> /etc, upper makes it a dir.
    case(
        "DirectoryOverrideSymlink-one-tar",
        lambda h: [
            d("etc"),
            f("etc/passwd", "inside"),
            sym("localetc", h.etc),
            d("localetc/"),
            hard("localetc/localpasswd", "etc/passwd"),
        ],
    ),
    case(
        "DirectoryOverrideSymlink-upper-alone", lambda h: [d("localetc/"), hard("localetc/localpasswd", "etc/passwd")]
    ),
    # containerd DirectoryOverrideSymlinkAndHardlink: the lower layer alone already goes through a link.
    case(
        "DirectoryOverrideSymlinkAndHardlink-one-tar",
        lambda h: [
            d("etc"),
            f("etc/passwd", "inside"),
            sym("localetc", "etc"),
            hard("localetc/localpasswd", "etc/passwd"),
            d("localetc/"),
            f("localetc/localpasswd", "different"),
        ],
    ),
    # containerd WhiteoutRootParent / WhiteoutParent / WhiteoutRoot / WhiteoutCurrentDirectory
    case("WhiteoutRootParent", lambda h: [f(".wh...")]),
    case("WhiteoutParent", lambda h: [d("etc"), f("etc/.wh...")]),
    case("WhiteoutRoot", lambda h: [f(".wh..")]),
    case("WhiteoutCurrentDirectory", lambda h: [d("etc"), f("etc/.wh..")]),
    case("WhiteoutEmptyName", lambda h: [f(".wh.")]),
    case("WhiteoutEmptyName-in-dir", lambda h: [d("etc"), f("etc/.wh.")]),
    # containerd WhiteoutSymlink, one tar: the whiteout collides with the layer's own link.
    case(
        "WhiteoutSymlink-one-tar",
        lambda h: [d("etc"), f("etc/passwd", "all users"), sym("localetc", h.etc), f(".wh.localetc")],
    ),
    # containerd WhiteoutSymlinkPath, one tar: a whiteout through a link must not hide the host's file.
    case("WhiteoutSymlinkPath-literal", lambda h: [sym("localetc", "/etc"), f("localetc/.wh.whitedout")]),
    case("WhiteoutSymlinkPath-host-abs", lambda h: [sym("localetc", h.etc), f("localetc/.wh.whitedout")]),
    case("WhiteoutSymlinkPath-host-rel", lambda h: [sym("localetc", "../etc"), f("localetc/.wh.passwd")]),
    # containerd WhiteoutDeadSymlinkParent, one tar: a dangling link must not be made real.
    case(
        "WhiteoutDeadSymlinkParent-literal",
        lambda h: [d("etc"), f("etc/passwd", "all users"), sym("localetc", "/dne"), f("localetc/.wh.etc")],
    ),
    case(
        "WhiteoutDeadSymlinkParent-host-abs", lambda h: [sym("localetc", str(h.world / "dne")), f("localetc/.wh.etc")]
    ),
    # containerd WhiteoutRelativePath
    case("WhiteoutRelativePath", lambda h: [f("dne/../.wh.etc")]),
    case("WhiteoutUpAndOut", lambda h: [f("../etc/.wh.passwd")]),
    # containerd HardlinkSymlinkChmod, verbatim: the symlink's own name is an absolute host path.
    case(
        "HardlinkSymlinkChmod-absolute-names",
        lambda h: [sym(h.also_exists, h.perm400), hard("sketchylink", h.also_exists, mode=0o777)],
    ),
    # -- issue 2's own list ---------------------------------------------------------------
    case("absolute-member-name-at-sentinel", lambda h: [f(h.passwd, "pwned")]),
    case("absolute-dir-name", lambda h: [d(h.etc + "/newdir")]),
    case("dotdot-member-name", lambda h: [f("../etc/passwd", "pwned")]),
    case("dotdot-inside-member-name", lambda h: [d("a"), f("a/../../etc/passwd", "pwned")]),
    case("dotdot-dir-name", lambda h: [d("../etc/newdir")]),
    case("dotdot-symlink-name", lambda h: [sym("../etc/newlink", "/")]),
    case("pax-path-escape", lambda h: [member("innocent", data=b"pwned", pax={"path": "../etc/passwd"})]),
    case("pax-path-absolute", lambda h: [member("innocent", data=b"pwned", pax={"path": h.passwd})]),
    case("pax-linkpath-escape", lambda h: [f("ok"), hard("x", "ok", pax={"linkpath": "../etc/passwd"})]),
    case("file-through-symlink-to-file", lambda h: [sym("l", h.passwd), f("l/x")]),
    case("dir-through-symlink", lambda h: [sym("l", h.etc), d("l/newdir")]),
    case("symlink-through-symlink", lambda h: [sym("l", h.etc), sym("l/newlink", "/")]),
    case("fifo-through-symlink", lambda h: [sym("l", h.etc), member("l/fifo", tarfile.FIFOTYPE)]),
    case(
        "device-through-symlink", lambda h: [sym("l", h.etc), member("l/null", tarfile.CHRTYPE, devmajor=1, devminor=3)]
    ),
    case("symlink-to-inside-still-not-traversed", lambda h: [d("etc"), sym("l", "etc"), f("l/x")]),
    case("symlink-to-self-dot", lambda h: [sym("l", "."), f("l/x")]),
    case("file-through-file", lambda h: [f("a"), f("a/b")]),
    case("file-through-fifo", lambda h: [member("a", tarfile.FIFOTYPE), f("a/b")]),
    case("file-through-whiteout", lambda h: [f(".wh.a"), f("a/b")]),
    case("hardlink-name-through-symlink", lambda h: [sym("l", h.etc), f("x", "x"), hard("l/x", "x")]),
    case(
        "hardlink-target-through-inside-symlink",
        lambda h: [d("etc"), f("etc/passwd", "inside"), sym("l", "etc"), hard("b", "l/passwd")],
    ),
    case("hardlink-forward-reference", lambda h: [hard("b", "a"), f("a", "later")]),
    case("hardlink-to-missing", lambda h: [hard("b", "etc/passwd")]),
    case("hardlink-to-self", lambda h: [hard("a", "a")]),
    case("hardlink-to-dir", lambda h: [d("a"), hard("b", "a")]),
    case("hardlink-to-implicit-dir", lambda h: [f("a/x"), hard("b", "a")]),
    case("hardlink-to-root", lambda h: [f("x"), hard("b", "./")]),
    case("hardlink-to-whiteout", lambda h: [f(".wh.a"), hard("b", "a")]),
    case("duplicate-file", lambda h: [f("a", "one"), f("a", "two")]),
    case("duplicate-dir", lambda h: [d("a"), d("a/")]),
    case("symlink-then-file", lambda h: [sym("a", h.passwd), f("a", "pwned")]),
    case("symlink-then-dir", lambda h: [sym("a", h.etc), d("a"), f("a/x")]),
    case("file-then-symlink", lambda h: [f("a"), sym("a", h.passwd)]),
    case("duplicate-whiteout", lambda h: [f(".wh.a"), f(".wh.a")]),
    case("duplicate-opaque", lambda h: [d("a"), f("a/.wh..wh..opq"), f("a/.wh..wh..opq")]),
    case("opaque-under-symlink", lambda h: [sym("l", h.etc), f("l/.wh..wh..opq")]),
    case("opaque-under-file", lambda h: [f("a"), f("a/.wh..wh..opq")]),
]


@pytest.fixture(params=["stream", "file"])
def feed(request, tmp_path: Path) -> Callable[[bytes], BinaryIO]:
    """A layer as apply_layer gets it: a stream (read in order) or a regular file (read at random,
    contents copied in the kernel). Both must refuse and allow the same layers."""
    opened: list[BinaryIO] = []

    def open_layer(data: bytes) -> BinaryIO:
        if request.param == "stream":
            return io.BytesIO(data)
        path = tmp_path / f"layer-{len(opened)}.tar"  # beside the world, never inside it
        path.write_bytes(data)
        opened.append(open(path, "rb"))
        return opened[-1]

    yield open_layer
    for stream in opened:
        stream.close()


def _refuse(
    h: Host,
    members: list,
    compress: Callable[[bytes], bytes] = lambda b: b,
    feed: Callable[[bytes], BinaryIO] = io.BytesIO,
) -> BadArchive:
    guard = Untouched(h, members)
    with pytest.raises(BadArchive) as caught:
        apply_layer(feed(compress(make_tar(members))), h.dest)
    guard.check()
    message = str(caught.value)
    assert message and "\n" not in message
    return caught.value


@pytest.mark.parametrize("build", REFUSED)
def test_breakout_layer_is_refused(host: Host, build: Build, feed) -> None:
    _refuse(host, build(host), feed=feed)


@pytest.mark.parametrize(
    "build",
    [
        case("gzip-symlink-through", lambda h: [sym("localetc", h.etc), f("localetc/unbroken", "unbroken")]),
        case("gzip-hardlink-up", lambda h: [hard("localpasswd", "../etc/passwd")]),
    ],
)
def test_breakout_layer_is_refused_when_compressed(host: Host, build: Build) -> None:
    _refuse(host, build(host), compress=lambda b: gzip.compress(b))


def test_refusal_names_the_member(host: Host) -> None:
    error = _refuse(host, [sym("localetc", host.etc), f("localetc/unbroken", "unbroken")])
    assert "localetc/unbroken" in str(error)
    assert error.exit_code == 125


# -- layers containerd accepts that must unpack, staying inside ------------------------------


def _is_symlink_to(path: Path, target: str) -> None:
    st = os.lstat(path)
    assert stat.S_ISLNK(st.st_mode), f"{path} is not a symlink"
    assert os.readlink(path) == target


def _same_inode(a: Path, b: Path) -> None:
    sa, sb = os.lstat(a), os.lstat(b)
    assert (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino), f"{a} and {b} are not the same file"


def _is_whiteout(path: Path) -> None:
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), f"{path} is not a 0/0 whiteout"


def _is_dir(path: Path) -> None:
    assert stat.S_ISDIR(os.lstat(path).st_mode), f"{path} is not a directory"


def _absent(path: Path) -> None:
    assert not os.path.lexists(path), f"{path} exists"


def _has_xattr(path: Path, name: str, value: bytes) -> None:
    assert os.getxattr(path, name, follow_symlinks=False) == value


def _is_file(path: Path, data: bytes, nlink: int = 1) -> None:
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == nlink
    assert path.read_bytes() == data


def _symlinks_verbatim(pairs: list[tuple[str, str]]) -> tuple[Build, Callable[[Path, Host], None]]:
    """containerd's TestRelativeSymlinks: links pointing up and out are created exactly as stored."""

    def build(h: Host) -> list:
        return [d("etc"), d("home"), d("home/derek", 0o700)] + [sym(name, target) for name, target in pairs]

    def check(dest: Path, h: Host) -> None:
        for name, target in pairs:
            _is_symlink_to(dest / name, target)

    return build, check


def _allowed(case_id: str, build: Build, check: Callable[[Path, Host], None]):
    return pytest.param(build, check, id=case_id)


def _check_hardlinked_symlink(link: str, dup: str, target: Callable[[Host], str]):
    def check(dest: Path, h: Host) -> None:
        _is_symlink_to(dest / link, target(h))
        _is_symlink_to(dest / dup, target(h))
        _same_inode(dest / link, dest / dup)  # the link itself was hardlinked, never its target

    return check


def _check_overlay_xattrs_dropped(dest: Path, h: Host) -> None:
    for path in (dest / "dir", dest / "dir/f"):
        names = os.listxattr(path, follow_symlinks=False)
        assert not [n for n in names if "overlay." in n], names
    _has_xattr(dest / "dir/f", "trusted.minirun-test", b"kept")


def _check_symlink_meta_not_followed(dest: Path, h: Host) -> None:
    _is_symlink_to(dest / "s", h.passwd)
    st = os.lstat(dest / "s")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1234, 4321, 1_700_000_000 * 1_000_000_000)
    _has_xattr(dest / "s", "trusted.minirun-test", b"on-the-link")


ALLOWED = [
    _allowed(
        "RelativeSymlinks-derek",
        *_symlinks_verbatim(
            [("home/derek/other", "../other"), ("home/derek/etc", "../../etc"), ("home/derek/updown", "up/../../other")]
        ),
    ),
    _allowed("RelativeSymlinks-breakout", *_symlinks_verbatim([("home/derek/breakout", "../../../breakout")])),
    _allowed("RelativeSymlinks-root-breakout", *_symlinks_verbatim([("breakout", "../../breakout")])),
    _allowed("RelativeSymlinks-upandout", *_symlinks_verbatim([("breakout", "etc/../../upandout")])),
    _allowed("RelativeSymlinks-downandout", *_symlinks_verbatim([("home/breakout", "derek/../../../downandout")])),
    _allowed("RelativeSymlinks-absolute", *_symlinks_verbatim([("localetc", "/etc")])),
    _allowed(
        "symlink-to-host-dir-by-absolute-path",
        lambda h: [sym("localetc", h.etc)],
        lambda dest, h: _is_symlink_to(dest / "localetc", h.etc),
    ),
    _allowed(
        "symlink-to-host-dir-by-relative-path",
        lambda h: [d("a"), sym("a/localetc", "../../etc")],
        lambda dest, h: _is_symlink_to(dest / "a/localetc", "../../etc"),
    ),
    _allowed(
        "symlink-to-host-file-metadata-stays-on-link",
        lambda h: [sym("s", h.passwd, uid=1234, gid=4321, pax={"SCHILY.xattr.trusted.minirun-test": "on-the-link"})],
        _check_symlink_meta_not_followed,
    ),
    # containerd SymlinkSlashEnded with a relative link name: a plain hardlink inside the layer.
    _allowed(
        "SymlinkSlashEnded",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            d("localetc/", 0o770),
            hard("localetc/localpasswd", "etc/passwd"),
        ],
        lambda dest, h: (
            _same_inode(dest / "localetc/localpasswd", dest / "etc/passwd"),
            _is_file(dest / "etc/passwd", b"inside", nlink=2),
        ),
    ),
    # containerd DirectoryOverrideSymlinkAndHardlink, the upper layer alone: a dir and a new file.
    _allowed(
        "DirectoryOverrideSymlinkAndHardlink-upper-alone",
        lambda h: [d("localetc/"), f("localetc/localpasswd", "different")],
        lambda dest, h: (_is_dir(dest / "localetc"), _is_file(dest / "localetc/localpasswd", b"different")),
    ),
    # containerd WhiteoutSymlink, the upper layer alone: the whiteout hides the link, not its target.
    _allowed(
        "WhiteoutSymlink-upper-alone", lambda h: [f(".wh.localetc")], lambda dest, h: _is_whiteout(dest / "localetc")
    ),
    # containerd WhiteoutSymlinkPath / WhiteoutDeadSymlinkParent, the upper layer alone: a real dir here.
    _allowed(
        "WhiteoutSymlinkPath-upper-alone",
        lambda h: [f("localetc/.wh.whitedout")],
        lambda dest, h: (_is_dir(dest / "localetc"), _is_whiteout(dest / "localetc/whitedout")),
    ),
    _allowed(
        "WhiteoutDeadSymlinkParent-upper-alone",
        lambda h: [f("localetc/.wh.etc")],
        lambda dest, h: _is_whiteout(dest / "localetc/etc"),
    ),
    # containerd WhiteoutDirectoryName: `.wh.etc/somefile` is an ordinary file in a dir named `.wh.etc`.
    _allowed(
        "WhiteoutDirectoryName",
        lambda h: [f(".wh.etc/somefile", "non-empty")],
        lambda dest, h: (_is_file(dest / ".wh.etc/somefile", b"non-empty"), _absent(dest / "etc")),
    ),
    # containerd HardlinkSymlinkBeforeCreateTarget / HardlinkSymlinkRelative / HardlinkSymlinkAbsolute:
    # a hardlink to a symlink links the symlink itself (linkat without AT_SYMLINK_FOLLOW).
    _allowed(
        "HardlinkSymlinkBeforeCreateTarget-literal",
        lambda h: [
            d("etc", 0o770),
            sym("localpasswd", "/etc/passwd"),
            hard("localpasswd-dup", "localpasswd"),
            f("etc/passwd", "after"),
        ],
        _check_hardlinked_symlink("localpasswd", "localpasswd-dup", lambda h: "/etc/passwd"),
    ),
    _allowed(
        "HardlinkSymlinkBeforeCreateTarget-host-abs",
        lambda h: [
            d("etc", 0o770),
            sym("localpasswd", h.passwd),
            hard("localpasswd-dup", "localpasswd"),
            f("etc/passwd", "after"),
        ],
        _check_hardlinked_symlink("localpasswd", "localpasswd-dup", lambda h: h.passwd),
    ),
    _allowed(
        "HardlinkSymlinkRelative-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("passwdlink", "../../../../../etc/passwd"),
            hard("localpasswd", "passwdlink"),
        ],
        _check_hardlinked_symlink("passwdlink", "localpasswd", lambda h: "../../../../../etc/passwd"),
    ),
    _allowed(
        "HardlinkSymlinkRelative-host-rel",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("passwdlink", "../etc/passwd"),
            hard("localpasswd", "passwdlink"),
        ],
        _check_hardlinked_symlink("passwdlink", "localpasswd", lambda h: "../etc/passwd"),
    ),
    _allowed(
        "HardlinkSymlinkAbsolute-literal",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("passwdlink", "/etc/passwd"),
            hard("localpasswd", "passwdlink"),
        ],
        _check_hardlinked_symlink("passwdlink", "localpasswd", lambda h: "/etc/passwd"),
    ),
    _allowed(
        "HardlinkSymlinkAbsolute-host-abs",
        lambda h: [
            d("etc", 0o770),
            f("etc/passwd", "inside"),
            sym("passwdlink", h.passwd),
            hard("localpasswd", "passwdlink"),
        ],
        _check_hardlinked_symlink("passwdlink", "localpasswd", lambda h: h.passwd),
    ),
    # containerd HardlinkSymlinkChmod with names inside the layer: the hardlink's mode 0777 must not
    # reach the 0400 host file behind the symlink (the fixture checks its mode and ctime).
    _allowed(
        "HardlinkSymlinkChmod-relative-names",
        lambda h: [
            sym("also-exists-outside-root", h.perm400),
            hard("sketchylink", "also-exists-outside-root", mode=0o777),
        ],
        _check_hardlinked_symlink("also-exists-outside-root", "sketchylink", lambda h: h.perm400),
    ),
    _allowed(
        "hardlink-inside-layer",
        lambda h: [f("a/file", "data"), hard("b/link", "a/file")],
        lambda dest, h: (_same_inode(dest / "a/file", dest / "b/link"), _is_file(dest / "b/link", b"data", nlink=2)),
    ),
    _allowed(
        "opaque-marker-in-layer-dir",
        lambda h: [d("etc"), f("etc/.wh..wh..opq")],
        lambda dest, h: _has_xattr(dest / "etc", "trusted.overlay.opaque", b"y"),
    ),
    _allowed(
        "overlay-xattrs-from-tar-dropped",
        lambda h: [
            d("dir", pax={"SCHILY.xattr.trusted.overlay.redirect": h.etc, "SCHILY.xattr.trusted.overlay.opaque": "y"}),
            f(
                "dir/f",
                "x",
                pax={
                    "SCHILY.xattr.user.overlay.metacopy": "",
                    "SCHILY.xattr.trusted.overlay.origin": "x",
                    "SCHILY.xattr.trusted.minirun-test": "kept",
                },
            ),
        ],
        _check_overlay_xattrs_dropped,
    ),
]


@pytest.mark.parametrize(("build", "check"), ALLOWED)
def test_allowed_layer_stays_inside(host: Host, build: Build, check: Callable[[Path, Host], None], feed) -> None:
    members = build(host)
    guard = Untouched(host, members)
    apply_layer(feed(make_tar(members)), host.dest)
    guard.check()
    check(host.dest, host)


# -- through the CLI: one error line, exit 125, no image, no leftover, host untouched ----------

CLI_CASES = [
    case("symlink-then-through", lambda h: [d("etc"), sym("localetc", h.etc), f("localetc/unbroken", "unbroken")]),
    case(
        "hardlink-up-to-sentinel", lambda h: [d("etc"), f("etc/passwd", "inside"), hard("localpasswd", "../etc/passwd")]
    ),
    case("absolute-name", lambda h: [f(h.passwd, "pwned")]),
    case("whiteout-dotdot", lambda h: [d("etc"), f("etc/passwd", "inside"), f("etc/.wh..")]),
    case("whiteout-through-symlink", lambda h: [sym("localetc", "../etc"), f("localetc/.wh.passwd")]),
]


@pytest.mark.parametrize("build", CLI_CASES)
def test_cli_import_refuses_breakout(host: Host, build: Build, cli, isolated_store: Path, tmp_path: Path) -> None:
    members = build(host)
    tar_path = tmp_path / "evil.tar"
    tar_path.write_bytes(make_tar(members))
    guard = Untouched(host, members)

    result = cli("import", str(tar_path), "evil")

    assert result.code == 125, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minirun: error: "), result.err
    assert "Traceback" not in result.err
    images = cli("images", "-q")
    assert images.code == 0 and images.out.strip() == "", images
    layers = isolated_store / "layers"
    leftovers = [p.name for p in layers.iterdir()] if layers.exists() else []
    assert not [n for n in leftovers if n.startswith(".tmp-")], leftovers
    assert not [n for n in leftovers if not n.startswith(".")], leftovers  # nor a committed layer
    guard.check()
