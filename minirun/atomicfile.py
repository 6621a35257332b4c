"""Replacing a small file so readers see the old bytes or the new ones, never a mix, even on a
full disk. Imports only os and errno: the monitor's lean log copier records exits with it too.
"""

from __future__ import annotations

import errno
import os

_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """A new file renamed over `path`. `durable=False` skips the fsyncs, for records that are
    re-derived after a crash anyway.

    On a full disk (ENOSPC, EDQUOT) the new file cannot be made; if `path` already holds the
    blocks `data` needs (a state record rewritten, a tag file that shrinks), it is rewritten in
    place instead: not atomic, but the exit is recorded and a removal goes through, where the
    alternative is losing both. Anything else is raised, and nothing is left behind.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".tmp-{name}-{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in _FULL and _rewrite_in_place(path, data):
            return
        raise
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _FULL and _rewrite_in_place(path, data):
            return
        raise
    os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(directory)


def _rewrite_in_place(path: str, data: bytes) -> bool:
    """`data` over the blocks `path` already has, if they are enough; False where they are not."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_blocks * 512 < len(data):
            return False
        write_all(fd, data)
        os.ftruncate(fd, len(data))
        return True
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
