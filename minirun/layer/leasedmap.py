"""A regular file's bytes read in place: mapped, under a read lease that shows whether anybody
opened the file for writing while it was read.

A layer's files must hold the very bytes its diff_id was computed from. Read once into memory of
our own, they do by construction; read in place (a mapping the applier hashes and the writer
writes from), they do only if the file does not change meanwhile. A read lease (fcntl(2)
F_SETLEASE) makes that checkable: the kernel grants it only while no one has the file open for
writing, and breaks it when someone opens or truncates it for writing, who then waits for us
(up to /proc/sys/fs/lease-break-time). So as long as `intact()` holds, every byte read so far is
the file's.

A lease tells of this host's opens alone, so a file is mapped only where nothing else can change
its bytes: on a filesystem that keeps them itself, on a disk or in memory (_KEEPS_ITS_BYTES). A
FUSE server changes a file's bytes with nobody opening it (and any user who may mount one can
hand root such a file), as do a network filesystem's other clients, a writer of an overlay's
layer by its own path, or of a loop device's image file; such a file is read once instead.

No signal announces a break here: a break would send SIGIO, which kills, so the file's signal is
SIGURG instead, ignored unless handled. Readers ask `intact()` as they go and once more at the end.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import signal

_KEEPS_ITS_BYTES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs"})
_LOOP_MAJOR = 7  # <linux/major.h>: a loop device's bytes are its image file's


def _lease_holds(fd: int) -> bool:
    """Whether only an open of the file on this host, which breaks a lease, changes its bytes:
    its filesystem (read off /proc/self/mountinfo by the fd's mount) is one of _KEEPS_ITS_BYTES,
    on no loop device."""
    if os.major(os.fstat(fd).st_dev) == _LOOP_MAJOR:
        return False
    with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
        mount = next((line.split()[1] for line in info if line.startswith(b"mnt_id:")), None)
    with open("/proc/self/mountinfo", "rb") as mounts:
        for line in mounts:
            if line.split(b" ", 1)[0] == mount:
                return line.partition(b" - ")[2].split(b" ", 1)[0].decode() in _KEEPS_ITS_BYTES
    return False


class LeasedMap:
    """`size` bytes of the regular file `fd` from `start` (fewer if the file ends first), as `view`
    (view[0] is the byte at `start`); `close()` unmaps and lets the lease go, unless it was the
    caller's already."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self._owned = fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK  # a caller's lease stays the caller's
        if self._owned:
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)  # before the lease: a break may come at once
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)  # EAGAIN: open for writing somewhere
        try:
            size = min(size, os.fstat(fd).st_size - start)  # never past the end: a read there is SIGBUS
            base = start - start % mmap.ALLOCATIONGRANULARITY
            self._map = mmap.mmap(fd, start + size - base, mmap.MAP_SHARED, mmap.PROT_READ, offset=base)
        except BaseException:
            self._release()
            raise
        self.view = memoryview(self._map)[start - base :]

    @classmethod
    def take(cls, fd: int, start: int, size: int) -> LeasedMap | None:
        """The map, or None where a lease cannot be had or would prove nothing: the file is open
        for writing, its filesystem has no leases (or they are off) or changes its bytes unopened
        (above), or we may not take one (not the owner, without CAP_LEASE)."""
        if size <= 0:
            return None
        try:
            if not _lease_holds(fd):
                return None
            return cls(fd, start, size)
        except (OSError, ValueError):
            return None

    def intact(self) -> bool:
        """Nobody opened the file for writing since the lease was taken."""
        return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK

    def close(self) -> None:
        self.view.release()
        try:
            self._map.close()
        except BufferError:  # a view of it still held (a traceback's): the collector closes it
            pass
        self._release()

    def _release(self) -> None:
        if self._owned:
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            except OSError:
                pass
            self._owned = False
