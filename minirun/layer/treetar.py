"""Tar streams of file trees reached through directory fds, for `cp`: one tree archived from where
it lies, one extracted where it goes, every path resolved by the kernel under a rule it applies to
each component (openat2(2)), never a path string joined in Python and then opened.

A `Tree` is a directory fd and that rule. In a container (`IN_CONTAINER`) the fd is its root:
RESOLVE_IN_ROOT makes an absolute symlink restart there and `..` stop there, however the links are
swapped while the walk goes on (docker's CVE-2018-15664 was a check-then-use race of exactly that
kind). On the host (`ON_HOST`) the fd is the destination directory and no symlink is followed at
all, the first as much as the last: a tar made in a container may make a link `x -> /etc` and then
a file `x/passwd`; it ends in an error, never on the host's /etc.

Below a resolved directory every step is one name, opened with O_NOFOLLOW: a walk never leaves it.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable

from minirun import linux
from minirun.errors import BadArchive, MinirunError
from minirun.layer import longpaths
from minirun.layer.dirchain import DirChain, open_regular

IN_CONTAINER = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
ON_HOST = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS

_DIR_PATH = os.O_PATH | os.O_DIRECTORY
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class Tree:
    """Paths below the directory `fd`, resolved under `resolve` (IN_CONTAINER or ON_HOST)."""

    def __init__(self, fd: int, resolve: int) -> None:
        self.fd, self.resolve = fd, resolve

    def open(self, path: str, flags: int = _DIR_PATH) -> int:
        """An fd for `path` (relative, or absolute meaning the same): a directory by default."""
        return linux.openat2(self.fd, path.strip("/") or ".", flags, self.resolve)

    def make_dirs(self, path: str, owner: tuple[int, int]) -> int:
        """open(path), creating what is missing as 0755 directories of `owner` (docker's implied
        parents). Each new one is made by name in a directory already resolved."""
        try:
            return self.open(path)
        except FileNotFoundError:
            pass
        parts = [p for p in path.split("/") if p]
        fd = self.open("")
        for i, name in enumerate(parts):
            try:
                below = self.open("/".join(parts[: i + 1]))
            except FileNotFoundError:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (or a dangling link, which the open below refuses)
                else:
                    os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
                below = self.open("/".join(parts[: i + 1]))
            os.close(fd)
            fd = below
        return fd


def clean_name(name: str, shown_dest: str) -> str:
    """A member's name as a path below the extraction directory: `./a//b/` -> `a/b`, `/a` -> `a`
    (docker joins names to the destination), "" for the directory itself; a name that climbs out
    with `..` is refused, as docker's breakout check does."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BadArchive(f"{name!r} is outside of {shown_dest!r}")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def rebase(old: str, new: str) -> Callable[[str], str]:
    """docker's RebaseArchiveEntries: the first element `old` of every name becomes `new`."""

    def renamed(name: str) -> str:
        if not old:
            return f"{new}/{name}" if name else new
        if name == old:
            return new
        if name.startswith(old + "/"):
            return new + name[len(old) :]
        return name

    return renamed


class Writer:
    """Archives entries into `tar` (a stream open for writing): numeric owners only (no name is
    looked up: a lookup in a container's root would load its libraries, docker's CVE-2019-14271),
    hardlinks as links, sockets left out (tar cannot hold them, docker skips them too)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.file_bytes = 0  # the size of the regular files archived (what docker reports)
        self._links: dict[tuple[int, int], str] = {}

    def add(self, dir_fd: int, name: str, arcname: str) -> None:
        """`name` (one component, or "." for `dir_fd` itself) and, for a directory, all below it:
        parents first, each dir's entries sorted. The walk keeps its own stack (layer/dirchain.py):
        a container may nest dirs deeper than Python's recursion limit and PATH_MAX."""
        info = self._entry(dir_fd, name, arcname)
        if info is None:
            return
        fd = os.open(name, _READ_DIR, dir_fd=dir_fd)
        chain = DirChain(fd)
        try:
            stack = [(arcname, self._add_dir(fd, info))]
            while stack:
                parent, names = stack[-1]
                if not names:
                    stack.pop()
                    if stack:
                        chain.leave()
                    continue
                child = names.pop()
                info = self._entry(chain.fd(), child, f"{parent}/{child}")
                if info is not None:
                    stack.append((info.name, self._add_dir(chain.enter(child), info)))
        finally:
            chain.close()
            os.close(fd)

    def _entry(self, dir_fd: int, name: str, arcname: str) -> tarfile.TarInfo | None:
        """Archive `name` unless it is a directory: then its header, for _add_dir once it is open."""
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        info = tarfile.TarInfo(arcname)
        info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        info.uname = info.gname = ""
        ns = st.st_mtime_ns
        info.mtime = ns // 1_000_000_000 if ns % 1_000_000_000 == 0 else ns / 1e9
        if stat.S_ISDIR(st.st_mode):
            return info
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                self.tar.addfile(info)
                return None
            if st.st_nlink > 1:
                self._links[key] = arcname
            self._add_file(dir_fd, name, info)
        elif stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            self.tar.addfile(info)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        elif stat.S_ISFIFO(st.st_mode):
            info.type = tarfile.FIFOTYPE
            self.tar.addfile(info)
        return None

    def _add_dir(self, fd: int, info: tarfile.TarInfo) -> list[str]:
        """The header of the dir open at `fd`; its names, last first (a stack's order)."""
        info.type = tarfile.DIRTYPE
        info.pax_headers = _xattrs(fd)
        self.tar.addfile(info)
        return sorted(os.listdir(fd), reverse=True)

    def _add_file(self, dir_fd: int, name: str, info: tarfile.TarInfo) -> None:
        fd = open_regular(dir_fd, name)
        if fd is None:  # swapped since the stat: a link, a device, a FIFO (never opened to read)
            raise MinirunError(f"{info.name}: changed while it was being copied")
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            info.type, info.size = tarfile.REGTYPE, st.st_size
            info.pax_headers = _xattrs(fd)
            self.tar.addfile(info, f)
            self.file_bytes += st.st_size


def _xattrs(fd: int) -> dict[str, str]:
    """PAX headers for an open file's xattrs, overlay's own left out (tarfile's surrogate form)."""
    from minirun.layer.whiteouts import is_overlay_xattr

    found: dict[str, str] = {}
    try:
        names = os.listxattr(fd)
    except OSError:
        return found
    for key in names:
        if is_overlay_xattr(key):
            continue
        try:
            value = os.getxattr(fd, key)
        except OSError:
            continue
        found["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return found


class Extractor:
    """Extracts a tar stream into `dest` (a directory path of `tree`) as docker's cp does: an
    existing directory is merged into and never replaced by a non-directory (nor the reverse),
    anything else in the way is replaced; missing parents are made.

    owner: the uid/gid every entry gets, or None to keep the archive's (`cp -a`).
    host: extraction onto the host from a tar a container made: device nodes are skipped (a
    container may mknod the host's disks), set-id bits dropped unless owners are kept, and only
    `user.` xattrs set unless owners are kept (a `security.capability` xattr would grant
    capabilities on the host)."""

    def __init__(
        self,
        tree: Tree,
        dest: str,
        shown_dest: str,
        *,
        owner: tuple[int, int] | None,
        implied_owner: tuple[int, int],
        host: bool = False,
        rename: Callable[[str], str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.tree, self.dest, self.shown_dest = tree, dest.rstrip("/"), shown_dest
        self.owner, self.implied_owner, self.host = owner, implied_owner, host
        self.rename = rename or (lambda name: name)
        self.warn = warn or (lambda message: None)
        self._dirs: list[tuple[str, int]] = []  # (path below dest, mtime ns): set last
        self._parent: tuple[str, int] | None = None  # the last parent resolved, kept open
        self._cut_dirs: dict[str, int] = {}  # dirs at the cuts of paths past PATH_MAX, oldest first

    def extract(self, stream) -> None:
        old_umask = os.umask(0)  # modes exactly as the archive gives them
        try:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:
                for member in tar:
                    self._member(tar, member)
            self._finish()
        except (tarfile.TarError, EOFError) as exc:
            if str(exc) == "empty file":
                return  # no bytes at all: nothing to extract (docker's reader sees EOF, and is done)
            raise BadArchive(f"invalid tar stream: {exc}") from None
        finally:
            os.umask(old_umask)
            if self._parent is not None:
                os.close(self._parent[1])
            for fd in self._cut_dirs.values():
                os.close(fd)

    def _path(self, name: str) -> str:
        return f"{self.dest}/{name}" if name else self.dest

    def _shown(self, name: str) -> str:
        return os.path.join(self.shown_dest, name) if name else self.shown_dest

    def _parent_fd(self, parent: str) -> int:
        if self._parent is not None and self._parent[0] == parent:
            return self._parent[1]
        fd = self._resolve(self._path(parent), make=True)
        if self._parent is not None:
            os.close(self._parent[1])
        self._parent = (parent, fd)
        return fd

    def _resolve(self, path: str, flags: int = _DIR_PATH, make: bool = False) -> int:
        """tree.open (or make_dirs) of `path`, also past PATH_MAX (a tree a container nested one
        name at a time): such a path is cut into chunks (layer/longpaths.py), each resolved
        below the dir of the one before under the tree's rule, so a symlink deep in a path that
        long resolves within the dir at the last cut, never above it."""
        tree = self.tree
        cuts = longpaths.cuts_of(path) if len(path) >= longpaths.SHORT else []
        if cuts:
            tree = Tree(self._cut_dir(path, cuts, make), tree.resolve)
            path = path[cuts[-1] + 1 :]
        return tree.make_dirs(path, self.implied_owner) if make else tree.open(path, flags)

    def _cut_dir(self, path: str, cuts: list[int], make: bool) -> int:
        i = len(cuts) - 1
        while i >= 0 and path[: cuts[i]] not in self._cut_dirs:
            i -= 1
        tree = Tree(self._cut_dirs[path[: cuts[i]]], self.tree.resolve) if i >= 0 else self.tree
        for j in range(i + 1, len(cuts)):
            chunk = path[cuts[j - 1] + 1 if j else 0 : cuts[j]]
            fd = tree.make_dirs(chunk, self.implied_owner) if make else tree.open(chunk)
            if len(self._cut_dirs) >= 64:
                os.close(self._cut_dirs.pop(next(iter(self._cut_dirs))))  # the oldest (its child is open)
            self._cut_dirs[path[: cuts[j]]] = fd
            tree = Tree(fd, self.tree.resolve)
        return tree.fd

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        for text in (member.name, member.linkname, *member.pax_headers):
            if "\0" in text:  # only a PAX record carries one; Go's archive/tar (docker's) refuses it
                raise BadArchive(f"invalid tar stream: a NUL byte in {text[:100]!r}")
        name = self.rename(clean_name(member.name, self.shown_dest))
        if not name:
            return  # the destination itself (`.`): it exists, docker leaves it as it is
        parent, _, base = name.rpartition("/")
        if not (member.isdir() or member.isreg() or member.issym() or member.islnk() or member.isdev()):
            return  # GNU volume labels and the like
        if self.host and (member.ischr() or member.isblk()):
            self.warn(f"skipped device node {self._shown(name)}: device nodes are not copied onto the host")
            return
        parent_fd = self._parent_fd(parent)
        self._clear_way(parent_fd, base, member, name)
        uid, gid = self.owner if self.owner is not None else (member.uid, member.gid)
        mode = member.mode & 0o7777
        if self.host and self.owner is not None and not member.isdir():
            mode &= ~0o6000  # not kept owners: no set-id program the container chose
        ns = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self._make_dir(parent_fd, base, member, uid, gid, mode)
            self._dirs.append((name, ns))
        elif member.isreg():
            fd = os.open(base, _CREATE_FILE, 0o600, dir_fd=parent_fd)
            try:
                source = tar.extractfile(member)
                while source is not None and (chunk := source.read(_CHUNK)):
                    _write_all(fd, chunk)
                self._finish_open(fd, member, uid, gid, mode)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
        elif member.issym():
            os.symlink(member.linkname, base, dir_fd=parent_fd)
            os.chown(base, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
            os.utime(base, ns=(ns, ns), dir_fd=parent_fd, follow_symlinks=False)
        elif member.islnk():
            self._link(parent_fd, base, member)
        else:  # a FIFO, or a device node in a container (whose overlay is nodev)
            kind = stat.S_IFIFO if member.isfifo() else stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | mode, os.makedev(member.devmajor, member.devminor), dir_fd=parent_fd)
            os.chown(base, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
            os.utime(base, ns=(ns, ns), dir_fd=parent_fd, follow_symlinks=False)

    def _clear_way(self, parent_fd: int, base: str, member: tarfile.TarInfo, name: str) -> None:
        try:
            st = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) and not member.isdir():
            raise MinirunError(
                f'cannot overwrite directory "{self._shown(name)}" with non-directory "{self.shown_dest}"'
            )
        if not stat.S_ISDIR(st.st_mode) and member.isdir():
            raise MinirunError(
                f'cannot overwrite non-directory "{self._shown(name)}" with directory "{self.shown_dest}"'
            )
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(base, dir_fd=parent_fd)

    def _make_dir(self, parent_fd: int, base: str, member: tarfile.TarInfo, uid: int, gid: int, mode: int) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass  # merged into, as docker does: it takes the archive's owner and mode
        fd = os.open(base, _READ_DIR, dir_fd=parent_fd)
        try:
            self._finish_open(fd, member, uid, gid, mode)
        finally:
            os.close(fd)

    def _finish_open(self, fd: int, member: tarfile.TarInfo, uid: int, gid: int, mode: int) -> None:
        """Owner, then mode (a chown clears set-id bits), then xattrs, on an open file or dir."""
        from minirun.layer.archive import member_xattrs

        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        for key, value in member_xattrs(member).items():
            if self.host and self.owner is not None and not key.startswith("user."):
                continue
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                if exc.errno not in (1, 95):  # EPERM, ENOTSUP: the filesystem's call, as docker
                    raise

    def _link(self, parent_fd: int, base: str, member: tarfile.TarInfo) -> None:
        """A hardlink to an entry already below the destination (docker refuses one outside)."""
        target = self.rename(clean_name(member.linkname, self.shown_dest))
        target_parent, _, target_base = target.rpartition("/")
        if not target_base:
            raise BadArchive(f"hardlink {member.name!r} to the destination itself")
        target_fd = self._resolve(self._path(target_parent))
        try:
            os.link(target_base, base, src_dir_fd=target_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(target_fd)

    def _finish(self) -> None:
        """Directory times last: every entry made inside one changed its mtime. Deepest first."""
        for name, ns in reversed(self._dirs):
            try:
                fd = self._resolve(self._path(name), _READ_DIR)
            except OSError:
                continue  # removed or replaced meanwhile: nothing to date
            try:
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
