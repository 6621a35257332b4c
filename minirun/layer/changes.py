"""What a container changed, read from its upper dir alone (never a walk of the whole image).

The upper dir holds exactly what differs from the lowers, in overlay's own notation:
- an entry no lower has -> A; one a lower has -> C (unless lstat says it is the same, as a
  full comparison would: mode, owner, size, mtime, device, link target);
- a 0/0 character device (whiteout) -> D;
- an opaque dir (created where a deleted one was): each lower child it no longer shows -> D,
  its own children -> A or C as above; the dir itself is C, never D (moby #37880);
- a dir is C when anything below it changed or its own mode/owner did (docker ignores a dir's
  mtime, which any create or delete inside bumps).
Lower lookups are answered per directory from one listing of each layer, so 10,000 files in
one dir cost 10,000 dict lookups, not 10,000 walks through the layers.
"""

from __future__ import annotations

import errno
import os
import stat

from minirun.layer.dirchain import DirChain
from minirun.layer.whiteouts import is_opaque, is_whiteout

MODIFIED, ADDED, DELETED = "C", "A", "D"
KIND_CODES = {MODIFIED: 0, ADDED: 1, DELETED: 2}  # docker's API: Kind 0/1/2
# minirun's mount points and provided files: never changes of the container (docker keeps them
# in its init layer; so do we, or as empty stubs in the upper of a 500-layer image)
PROVIDED = frozenset({"/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"})


class Change:
    """One line of `diff`. A plain slotted class: a frozen dataclass's __init__ costs several
    times more, and a diff of 10,000 new files makes 10,000 of these."""

    __slots__ = ("kind", "path")

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and (self.kind, self.path) == (other.kind, other.path)

    def __repr__(self) -> str:
        return f"Change({self.kind!r}, {self.path!r})"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


class _Lowers:
    """The merged lower layers (topmost first), asked one directory at a time."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self._cache: dict[str, dict[str, os.stat_result] | None] = {}

    def children(self, rel: str) -> dict[str, os.stat_result] | None:
        """Name -> lstat of what the lowers show inside dir `rel` ("" is the root); None when the
        lowers show no directory there."""
        if rel in self._cache:
            return self._cache[rel]
        found: dict[str, os.stat_result] | None
        if rel == "":
            found = self._merge([""])
        else:
            parent, _, name = rel.rpartition("/")
            siblings = self.children(parent)
            st = siblings.get(name) if siblings is not None else None
            found = self._merge(self._dirs_of(rel)) if st is not None and stat.S_ISDIR(st.st_mode) else None
        self._cache[rel] = found
        return found

    def _dirs_of(self, rel: str) -> list[str]:
        """The layers that contribute to dir `rel`, topmost first: down to the first layer where
        it is opaque, or where something other than a dir hides it."""
        contributing = []
        for layer in self.layers:
            path = os.path.join(layer, rel)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a file or whiteout here hides the dir of every layer below
            contributing.append(path)
            if is_opaque(path):
                break
        return contributing

    def _merge(self, dirs: list[str]) -> dict[str, os.stat_result]:
        rel_dirs = dirs if dirs != [""] else self._root_dirs()
        merged: dict[str, os.stat_result | None] = {}
        for directory in rel_dirs:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if entry.name in merged:
                    continue
                st = entry.stat(follow_symlinks=False)
                merged[entry.name] = None if is_whiteout(st) else st
        return {name: st for name, st in merged.items() if st is not None}

    def _root_dirs(self) -> list[str]:
        dirs = []
        for layer in self.layers:
            dirs.append(layer)
            if is_opaque(layer):
                break
        return dirs


def _same(a: os.stat_result, b: os.stat_result, a_path: str, b_path: str) -> bool:
    """A full comparison's verdict on one entry (docker's naive differ: no content reads)."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) != (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True  # a dir's mtime moves with every create or delete inside it
    if stat.S_ISLNK(a.st_mode) and (not b_path or os.readlink(a_path) != os.readlink(b_path)):
        return False
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and a.st_rdev == b.st_rdev


def changes(upper: str, lowers: list[str]) -> list[Change]:
    """Changes of the union (upper over lowers, topmost first) against the lowers, sorted by path."""
    result: list[Change] = []
    try:
        top = os.open(upper, _READ_DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            return result
        raise
    try:
        _walk(top, _Lowers(lowers), result, hidden=is_opaque(top))
    finally:
        os.close(top)
    result.sort(key=lambda c: c.path)
    return result


# Every dir of the upper is opened by one name below one held open (layer/dirchain.py), never
# followed: a running container may swap a dir for a symlink to a host dir while we walk, and the
# walk must never list that (its names would show in diff). The walks keep their own stacks: a
# container may nest dirs deeper than Python's recursion limit and PATH_MAX.
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)  # no longer a dir: nothing below it to tell

# d_type, read with the names: dirs, files and links told apart without a syscall
_IS_DIR, _IS_FILE, _IS_OTHER = 0, 1, 2


def _listing(fd: int) -> list[tuple[str, int]]:
    with os.scandir(fd) as it:
        return [
            (
                entry.name,
                _IS_DIR
                if entry.is_dir(follow_symlinks=False)
                else _IS_FILE
                if entry.is_file(follow_symlinks=False) or entry.is_symlink()
                else _IS_OTHER,
            )
            for entry in it
        ]


class _Frame:
    """A dir of the upper the image also has as a dir, being walked."""

    __slots__ = ("rel", "entries", "image", "present", "hidden", "before", "name", "had")

    def __init__(self, rel: str, fd: int, lowers: _Lowers, hidden: bool, before: int) -> None:
        self.rel, self.hidden, self.before = rel, hidden, before
        self.entries = _listing(fd)
        self.entries.reverse()  # pop() takes them in the listing's order
        self.image = lowers.children(rel) or {}
        self.present: set[str] = set()
        self.name = ""  # the child dir being walked
        self.had: os.stat_result | None = None  # and the image's lstat of it


def _walk(top: int, lowers: _Lowers, out: list[Change], hidden: bool) -> None:
    """Report the changes inside the upper (held open at `top`), which the image has as a dir;
    `hidden`: the lowers' entries do not show through (an opaque dir, or inside one)."""
    chain = DirChain(top)
    stack = [_Frame("", top, lowers, hidden, 0)]
    try:
        while stack:
            frame = stack[-1]
            if not frame.entries:
                _finish_dir(frame, out)
                stack.pop()
                if stack:  # the parent's own line for the dir just walked
                    chain.leave()
                    parent = stack[-1]
                    shown = f"/{frame.rel}"
                    st = os.stat(parent.name, dir_fd=chain.fd(), follow_symlinks=False)
                    had = parent.had
                    assert had is not None
                    if shown not in PROVIDED and (len(out) > frame.before or not _same(st, had, "", "")):
                        out.append(Change(MODIFIED, shown))
                continue
            name, kind = frame.entries.pop()
            dir_fd = chain.fd()
            child = f"{frame.rel}/{name}" if frame.rel else name
            shown = "/" + child
            if kind == _IS_OTHER and is_whiteout(os.stat(name, dir_fd=dir_fd, follow_symlinks=False)):
                if name in frame.image and shown not in PROVIDED:
                    out.append(Change(DELETED, shown))
                continue
            frame.present.add(name)
            had = frame.image.get(name)
            is_dir = kind == _IS_DIR
            if is_dir and had is not None and stat.S_ISDIR(had.st_mode):
                try:
                    below = chain.enter(name)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if shown not in PROVIDED and not _same(st, had, "", ""):
                        out.append(Change(MODIFIED, shown))
                    continue
                frame.name, frame.had = name, had
                stack.append(_Frame(child, below, lowers, frame.hidden or is_opaque(below), len(out)))
            elif shown in PROVIDED:
                continue  # a mount point's stub, made in the upper for a 500-layer image
            elif had is None:
                out.append(Change(ADDED, shown))
                if is_dir:
                    _all_added(chain, name, child, out)
            elif is_dir:  # a dir where the image had a file: all inside is new
                _all_added(chain, name, child, out)
                out.append(Change(MODIFIED, shown))
            else:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if not _same(st, had, f"/proc/self/fd/{dir_fd}/{name}", _lower_path(lowers, child)):
                    out.append(Change(MODIFIED, shown))
    finally:
        chain.close()


def _finish_dir(frame: _Frame, out: list[Change]) -> None:
    """What the image has in an opaque dir (or inside one) that the upper does not show: deleted."""
    if not frame.hidden:
        return
    rel = frame.rel
    for name in frame.image.keys() - frame.present:
        shown = f"/{rel}/{name}" if rel else f"/{name}"
        if shown not in PROVIDED:
            out.append(Change(DELETED, shown))


def _enter(chain: DirChain, name: str) -> int | None:
    """The chain one level down, into dir `name`; None if a running container removed it meanwhile."""
    try:
        return chain.enter(name)
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise


def _all_added(chain: DirChain, name: str, rel: str, out: list[Change]) -> None:
    """Everything inside dir `name` of the chain's current dir, which the image did not have
    (whiteouts there hide nothing). The chain is back where it was when this returns."""
    depth = chain.depth
    fd = _enter(chain, name)
    if fd is None:
        return
    stack = [(rel, _listing(fd))]
    try:
        while stack:
            rel, entries = stack[-1]
            if not entries:
                stack.pop()
                chain.leave()
                continue
            name, kind = entries.pop()
            child = f"{rel}/{name}"
            if kind == _IS_DIR:
                out.append(Change(ADDED, "/" + child))
                fd = _enter(chain, name)
                if fd is not None:
                    stack.append((child, _listing(fd)))
            # d_type answers for files and links; only the rest (devices, fifos) need an lstat
            elif kind == _IS_FILE or not is_whiteout(os.stat(name, dir_fd=chain.fd(), follow_symlinks=False)):
                out.append(Change(ADDED, "/" + child))
    finally:
        while chain.depth > depth:
            chain.leave()


def _lower_path(lowers: _Lowers, rel: str) -> str:
    """The path of `rel` in the topmost layer that has it (for readlink)."""
    for layer in lowers.layers:
        path = os.path.join(layer, rel)
        if os.path.lexists(path):
            return path
    return ""
