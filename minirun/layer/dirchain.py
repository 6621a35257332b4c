"""The open directories from the top of a walk down to where it is: what lets a walk go as deep as
a container nests dirs (one name at a time, past PATH_MAX and past Python's recursion limit) with
an explicit stack, every step one name below an open dir, never a whole path.

A fd per level would make the deepest tree need as many fds as levels (a soft RLIMIT_NOFILE of
1024 is common): only every KEEP-th level and the last KEEP levels stay open; a level whose fd
was closed is opened again, by its names, from the level kept open above it when the walk comes
back up to it. Every open is one name with O_NOFOLLOW below a dir already open: the walk never
leaves the tree, whatever a running container renames meanwhile.
"""

from __future__ import annotations

import os

READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KEEP = 32


class DirChain:
    """`top` (an open dir, still the caller's) and the dirs entered below it, one name at a time."""

    def __init__(self, top: int) -> None:
        self._fds = [top]  # by level; -1: closed for now
        self._names: list[str] = []  # the name entered at each level below the top

    @property
    def depth(self) -> int:
        return len(self._names)

    def enter(self, name: str) -> int:
        """Open `name` in the current dir and make it the current one; its fd (the chain's)."""
        fd = os.open(name, READ_DIR, dir_fd=self.fd())
        self._names.append(name)
        self._fds.append(fd)
        level = len(self._fds) - 1 - KEEP  # the level that leaves the window of the last KEEP
        if level > 0 and level % KEEP and self._fds[level] >= 0:
            os.close(self._fds[level])
            self._fds[level] = -1
        return fd

    def leave(self) -> None:
        """Back to the parent dir (opened again when it is next asked for)."""
        fd = self._fds.pop()
        self._names.pop()
        if fd >= 0:
            os.close(fd)

    def fd(self) -> int:
        """The current dir's fd, opened again if the window had closed it."""
        level = len(self._fds) - 1
        if self._fds[level] < 0:
            start = level - level % KEEP  # a checkpoint: never closed
            for i in range(start + 1, level + 1):
                if self._fds[i] < 0:
                    self._fds[i] = os.open(self._names[i - 1], READ_DIR, dir_fd=self._fds[i - 1])
        return self._fds[level]

    def close(self) -> None:
        while self._names:
            self.leave()


# O_PATH opens nothing a node does on open (a FIFO's writer is not woken, no device's driver is
# called); the inode it holds is then reopened to read only once fstat says it is a regular file.
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular(dir_fd: int | None, name: str, fd_dir: int | None = None, follow: bool = False) -> int | None:
    """`name` in `dir_fd` open to read if it is a regular file, else None (a link, a FIFO, a
    device: a running container may swap one in after the walk's stat). The host never opens
    what it finds there for reading first: an open of a device node has its driver's effects (a
    watchdog starts, a tape rewinds), even on the host's side of a container's upper dir.
    `fd_dir`: this process's /proc/self/fd, opened before a chroot that left /proc behind.
    `follow`: a link leads on to what it names (a path the caller chose, such as a Dockerfile's)."""
    import stat

    fd = os.open(name, _PATH & ~os.O_NOFOLLOW if follow else _PATH, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fd_dir is not None:
            return os.open(str(fd), os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd_dir)
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)
