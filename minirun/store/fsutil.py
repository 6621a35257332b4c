"""Atomic writes and the store-wide lock: the two ways the store keeps a crash from lying."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat

from minirun.atomicfile import atomic_write, fsync_dir

__all__ = ["atomic_write", "fsync_dir"]  # the store's writers find them here, with the lock and the readers

TYPE_CHECKING = False  # typing costs ~6 ms to import; annotations are strings here anyway
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


RECORD_LIMIT = 16 << 20  # no record of the store is near this: a bigger one is damaged


def read_capped(path: str, limit: int, what: str) -> bytes:
    """At most `limit` bytes of `path`; more is an error naming the file (an endless /dev/zero or
    a huge file is refused at once, never read into memory). FileNotFoundError passes through."""
    from minirun.errors import UsageError

    with open(path, "rb") as f:
        # sized by the file: read(limit + 1) would allocate (and page in) `limit` bytes each time
        size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, limit) + 1)
        if len(data) > size:  # grown meanwhile, or a device whose size says nothing (/dev/zero)
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise UsageError(f"{what} {path} is larger than {limit >> 10} KiB")
    return data


def read_record(path: str, limit: int = RECORD_LIMIT) -> Any:
    """A JSON record of the store. Missing: FileNotFoundError. Anything else that keeps it from
    being read (truncated, not JSON, too deep, too big, unreadable) is DamagedRecord naming it."""
    import json

    from minirun.errors import DamagedRecord, UsageError

    try:
        data = read_capped(path, limit, "record")
        return json.loads(data)
    except FileNotFoundError:
        raise
    except UsageError:
        raise DamagedRecord(path, f"larger than {limit >> 20} MiB") from None
    except (ValueError, RecursionError) as exc:
        raise DamagedRecord(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except OSError as exc:
        raise DamagedRecord(path, exc.strerror or str(exc)) from None


@contextlib.contextmanager
def replace_when_done(tmp: str, path: str) -> Iterator[None]:
    """Rename `tmp` over `path` once the block has written it; remove `tmp` if the block (or the
    rename) fails: a failed write leaves no partial file under either name."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_tree(path: str) -> None:
    """Remove a tree we own, including dirs whose mode forbids writing (root ignores it)."""
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil  # not at the top: it pulls in fnmatch and re, a few ms of every start

            shutil.rmtree(path)
        else:
            os.unlink(path)


@contextlib.contextmanager
def flocked(path: str, shared: bool = False) -> Iterator[int]:
    """Hold an flock on `path` (created if missing) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock without waiting; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def tree_size(path: str) -> int:
    """docker's directory.Size: lstat sizes of all but dirs, a hardlinked inode once; symlinks
    are never followed and a tree that changes meanwhile (a running container) is tolerated."""
    total = 0
    seen: set[tuple[int, int]] = set()
    pending = [path]
    while pending:
        try:
            it = os.scandir(pending.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    pending.append(entry.path)
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total
