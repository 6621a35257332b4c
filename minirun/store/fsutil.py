"""Atomic writes and the store-wide lock: the two ways the store keeps a crash from lying."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from minirun.atomicfile import atomic_write, fsync_dir

__all__ = ["atomic_write", "fsync_dir"]  # the store's writers find them here, with the lock and the readers

TYPE_CHECKING = False  # typing costs ~6 ms to import; annotations are strings here anyway
if TYPE_CHECKING:
    from typing import Any


RECORD_LIMIT = 16 << 20  # no record of the store is near this: a bigger one is damaged


def read_capped(path: str, limit: int, what: str, regular: bool = False) -> bytes:
    """At most `limit` bytes of `path`; more is an error naming the file (an endless /dev/zero or
    a huge file is refused at once, never read into memory). FileNotFoundError passes through.
    `regular`: a regular file only, found so before it is opened to read (a build context's
    Dockerfile, which a container sharing the context may swap for a FIFO, which would block
    the open, or for a device node, whose open calls its driver, after the caller's isfile)."""
    from minirun.errors import UsageError

    fd = _open_regular_path(path, what) if regular else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        # sized by the file: read(limit + 1) would allocate (and page in) `limit` bytes each time
        size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, limit) + 1)
        if len(data) > size:  # grown meanwhile, or a device whose size says nothing (/dev/zero)
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise UsageError(f"{what} {path} is larger than {limit >> 10} KiB")
    return data


def _open_regular_path(path: str, what: str) -> int:
    """`path` (links followed) open to read if it is a regular file; an error naming it if not."""
    from minirun.errors import UsageError
    from minirun.layer.dirchain import open_regular

    fd = open_regular(None, path, follow=True)  # (no dir: a path from here)
    if fd is None:
        raise UsageError(f"{what} {path} is not a regular file")
    return fd


def read_record(path: str, limit: int = RECORD_LIMIT) -> Any:
    """A JSON record of the store. Missing: FileNotFoundError. Anything else that keeps it from
    being read (truncated, not JSON, too deep, too big, unreadable) is DamagedRecord naming it."""
    from minirun import leanjson
    from minirun.errors import DamagedRecord, UsageError

    try:
        data = read_capped(path, limit, "record")
        return leanjson.loads(data)
    except FileNotFoundError:
        raise
    except UsageError:
        raise DamagedRecord(path, f"larger than {limit >> 20} MiB") from None
    except (ValueError, RecursionError) as exc:
        raise DamagedRecord(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except OSError as exc:
        raise DamagedRecord(path, exc.strerror or str(exc)) from None


# The two context managers here are classes, not @contextlib.contextmanager: contextlib brings
# collections and functools, ~3 ms of every start that takes the store's lock.


class ReplaceWhenDone:
    """Rename `tmp` over `path` once the block has written it; remove `tmp` if the block (or the
    rename) fails: a failed write leaves no partial file under either name."""

    def __init__(self, tmp: str, path: str) -> None:
        self.tmp, self.path = tmp, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: Any) -> None:
        try:
            if kind is None:
                os.replace(self.tmp, self.path)
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _discard(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def replace_when_done(tmp: str, path: str) -> ReplaceWhenDone:
    return ReplaceWhenDone(tmp, path)


def remove_tree(path: str) -> None:
    """Remove a tree we own, including dirs whose mode forbids writing (root ignores it). What is
    in it may be a container's: every step is relative to an open directory and never follows a
    link, as shutil.rmtree's fd-based walk (whose import, with fnmatch and re, costs a `run --rm`
    ~5 ms). A container may nest dirs deeper than any limit (one name at a time): past
    _REMOVE_DEPTH a dir is moved up to the top and removed from there, so the walk's recursion
    and its open fds stay bounded however deep the tree (a deep upper once made every `rm`, and
    a commit's unfinished layer every locked verb of the store, fail)."""
    remove_below(None, path)


def remove_below(dir_fd: int | None, name: str) -> None:
    """remove_tree of `name` in the dir open at `dir_fd` (None: `name` is a path), one name below
    it: where no path reaches (past PATH_MAX, or in a root where /proc is not mounted)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except (NotADirectoryError, OSError) as exc:
        if not isinstance(exc, NotADirectoryError) and exc.errno != errno.ELOOP:
            raise
        os.unlink(name, dir_fd=dir_fd)  # a file, or a link (never followed)
        return
    try:
        while _empty_dir(fd, fd, 0):  # dirs moved up to the top meanwhile: another round
            pass
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


_REMOVE_DEPTH = 64


def _empty_dir(dir_fd: int, top_fd: int, depth: int) -> bool:
    """Remove what `dir_fd` holds; True if a dir too deep was moved up to `top_fd` instead."""
    with os.scandir(dir_fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    moved = False
    for name, is_dir in names:
        if not is_dir:
            os.unlink(name, dir_fd=dir_fd)
            continue
        if depth >= _REMOVE_DEPTH:
            os.rename(name, f".deep-{os.urandom(8).hex()}", src_dir_fd=dir_fd, dst_dir_fd=top_fd)
            moved = True
            continue
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            moved = _empty_dir(fd, top_fd, depth + 1) or moved
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)  # what was moved up left it: it is empty
    return moved


class FileLock:
    """An flock on `path` (created if missing) for the duration of a `with` block, which gets its fd."""

    def __init__(self, path: str, shared: bool = False) -> None:
        self.path, self.shared, self.fd = path, shared, -1

    def __enter__(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return fd

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: Any) -> None:
        os.close(self.fd)
        self.fd = -1


def flocked(path: str, shared: bool = False) -> FileLock:
    return FileLock(path, shared)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def tree_size(path: str) -> int:
    """docker's directory.Size: lstat sizes of all but dirs, a hardlinked inode once; symlinks
    are never followed and a tree that changes meanwhile (a running container) is tolerated.
    Each dir is opened by one name below a dir held open, never following a link
    (layer/dirchain.py): a container that swaps a dir for a link to / meanwhile never has the
    host's tree walked as its own, and one that nests dirs past PATH_MAX has them all counted."""
    from minirun.layer.dirchain import DirChain

    sizes = _Sizes()
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    chain = DirChain(top)
    try:
        stack = [sizes.scan(top)]  # per level: the dirs in it yet to visit
        while stack:
            names = stack[-1]
            if not names:
                stack.pop()
                if stack:
                    chain.leave()
                continue
            depth = chain.depth
            try:
                stack.append(sizes.scan(chain.enter(names.pop())))
            except OSError:  # gone, or no longer a dir
                if chain.depth > depth:
                    chain.leave()
    finally:
        chain.close()
        os.close(top)
    return sizes.total


class _Sizes:
    def __init__(self) -> None:
        self.total = 0
        self.seen: set[tuple[int, int]] = set()

    def scan(self, fd: int) -> list[str]:
        """Count what dir `fd` holds but its dirs; their names."""
        dirs = []
        with os.scandir(fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    dirs.append(entry.name)
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in self.seen:
                        continue
                    self.seen.add(key)
                self.total += st.st_size
        return dirs


USER_DB_LIMIT = 1 << 20  # bytes of an image's /etc/passwd or /etc/group read on the host's side, at most


def read_user_db(path: str) -> str:
    """An image's /etc/passwd or /etc/group, read on the host's side, outside any container's
    limits: a regular file only, opened without blocking (a FIFO would hang the reader), and at
    most USER_DB_LIMIT bytes (a sparse giant would fill its memory). "" when it cannot be opened;
    ValueError, with the reason, for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return ""
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("is not a regular file")
        data = f.read(USER_DB_LIMIT + 1)
    if len(data) > USER_DB_LIMIT:
        raise ValueError(f"is over {USER_DB_LIMIT} bytes")
    return data.decode("utf-8", "surrogateescape")
