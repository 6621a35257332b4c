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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.layer.longpaths import ShortPaths

MODIFIED, ADDED, DELETED = "C", "A", "D"
KIND_CODES = {MODIFIED: 0, ADDED: 1, DELETED: 2}  # docker's API: Kind 0/1/2
# minirun's mount points and provided files: never changes of the container (docker keeps them
# in its init layer; so do we, or as empty stubs in the upper of a 500-layer image)
PROVIDED = frozenset({"/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"})
# layer/longpaths.py's SHORT, here so that diff imports longpaths only for a path this long
_SHORT = 3072


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
    """The merged lower layers (topmost first), asked one directory at a time.

    A dir's layers are found from its parent's, as overlay looks a name up: the name in each
    layer that shows the parent, down to the first where it is opaque or something other than a
    dir hides it (a layer's own symlink on the way is never followed). The walks keep their own
    loops, and a layer's path past PATH_MAX is reached through dirs opened below the layer
    (layer/longpaths.py): an image may nest dirs as deep as a container committed them."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self._long: ShortPaths | None = None
        # rel -> (name -> lstat of what the lowers show in it, or None: no dir there; the
        # indexes of the layers that show it, topmost first)
        self._cache: dict[str, tuple[dict[str, os.stat_result] | None, list[int]]] = {}

    def children(self, rel: str) -> dict[str, os.stat_result] | None:
        """Name -> lstat of what the lowers show inside dir `rel` ("" is the root); None when the
        lowers show no directory there."""
        known = self._cache.get(rel)
        if known is not None:
            return known[0]
        todo = [rel]  # up to the nearest dir known, then down from it
        while todo[-1] and todo[-1].rpartition("/")[0] not in self._cache:
            todo.append(todo[-1].rpartition("/")[0])
        for each in reversed(todo):
            self._cache[each] = self._look_up(each)
        return self._cache[rel][0]

    def link(self, rel: str) -> str:
        """The target of the symlink the lowers show at `rel` (whose dir was asked for)."""
        for i in self._cache[rel.rpartition("/")[0]][1]:
            try:
                return os.readlink(self._path(i, rel))
            except (FileNotFoundError, NotADirectoryError):
                continue
        return ""

    def _look_up(self, rel: str) -> tuple[dict[str, os.stat_result] | None, list[int]]:
        """What `children` caches for `rel`, whose parent is cached."""
        shown: list[int] = []
        if rel == "":
            for i, layer in enumerate(self.layers):
                shown.append(i)
                if is_opaque(layer):
                    break
            return self._merge(rel, shown), shown
        parent, _, name = rel.rpartition("/")
        siblings, above = self._cache[parent]
        st = siblings.get(name) if siblings is not None else None
        if st is None or not stat.S_ISDIR(st.st_mode):
            return None, shown
        for i in above:
            path = self._path(i, rel)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                break  # a file or whiteout here hides the dir of every layer below
            shown.append(i)
            if is_opaque(path):
                break
        return self._merge(rel, shown), shown

    def _merge(self, rel: str, shown: list[int]) -> dict[str, os.stat_result]:
        merged: dict[str, os.stat_result | None] = {}
        for i in shown:
            try:
                entries = list(os.scandir(self._path(i, rel)))
            except OSError:
                continue
            for entry in entries:
                if entry.name in merged:
                    continue
                st = entry.stat(follow_symlinks=False)
                merged[entry.name] = None if is_whiteout(st) else st
        return {name: st for name, st in merged.items() if st is not None}

    def _path(self, i: int, rel: str) -> str:
        """`rel` in layer `i` as calls take it: whole, or past PATH_MAX through a dir opened below
        the layer (valid until the next such path is asked for)."""
        layer = self.layers[i]
        if len(layer) + len(rel) < _SHORT:
            return f"{layer}/{rel}" if rel else layer
        if self._long is None:
            from minirun.layer.longpaths import ShortPaths

            self._long = ShortPaths()
        return self._long(rel, layer)

    def close(self) -> None:
        if self._long is not None:
            self._long.close()


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """A full comparison's verdict on one entry's lstat (docker's naive differ: no content reads);
    a symlink's target is the caller's to compare."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) != (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True  # a dir's mtime moves with every create or delete inside it
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
    looked_up = _Lowers(lowers)
    try:
        _walk(top, looked_up, result, hidden=is_opaque(top))
    finally:
        looked_up.close()
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
                    if shown not in PROVIDED and (len(out) > frame.before or not _same(st, had)):
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
                    if shown not in PROVIDED and not _same(st, had):
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
                if not _same(st, had) or (
                    stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dir_fd) != lowers.link(child)
                ):
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
