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
The devices asked about are the filesystem's own, not the file's st_dev alone: a btrfs file's
st_dev is an anonymous device of btrfs's, whatever disks (or loop devices) hold its bytes, and a
loop device may lie under a partition or a device-mapper or md device too.

No signal announces a break here: a break would send SIGIO, which kills, so the file's signal is
SIGURG instead, ignored unless handled. Readers ask `intact()` as they go and once more at the end.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import signal

_KEEPS_ITS_BYTES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs"})
_BTRFS_IOC_FS_INFO = 0x8400941F  # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args): 1024 bytes, fsid at 16
_CHANGED_ELSEWHERE = ("loop", "nbd", "ublkb", "rbd", "drbd")  # block devices whose bytes others write


def _backing_devices(fd: int, fstype: str) -> list[str] | None:
    """The sysfs directories of the block devices that hold the bytes of `fd`'s filesystem, or
    None where they cannot be told."""
    if fstype == "tmpfs":
        return []
    if fstype == "btrfs":  # st_dev is btrfs's own anonymous device: the disks are in /sys/fs/btrfs
        args = bytearray(1024)
        fcntl.ioctl(fd, _BTRFS_IOC_FS_INFO, args)
        fsid = args[16:32].hex()  # as a UUID is written (uuid's import costs a load ~1 ms)
        listed = f"/sys/fs/btrfs/{fsid[:8]}-{fsid[8:12]}-{fsid[12:16]}-{fsid[16:20]}-{fsid[20:]}/devices"
        return [os.path.realpath(os.path.join(listed, name)) for name in os.listdir(listed)] or None
    dev = os.fstat(fd).st_dev
    return [os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")]


def _changed_elsewhere(device: str) -> bool:
    """Whether the block device (a sysfs directory), or any it is made of (a partition's disk, a
    device-mapper or md device's slaves), has bytes changed other than through it: a loop
    device's image file, a network block device's server. Unknown: yes."""
    stack, seen = [device], set()
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        if not os.path.isfile(os.path.join(path, "dev")):
            return True
        if os.path.isdir(os.path.join(path, "loop")) or os.path.basename(path).startswith(_CHANGED_ELSEWHERE):
            return True
        if os.path.isfile(os.path.join(path, "partition")):
            stack.append(os.path.dirname(path))
        slaves = os.path.join(path, "slaves")
        if os.path.isdir(slaves):
            stack.extend(os.path.realpath(os.path.join(slaves, name)) for name in os.listdir(slaves))
    return False


def _lease_holds(fd: int) -> bool:
    """Whether only an open of the file on this host, which breaks a lease, changes its bytes:
    its filesystem (read off /proc/self/mountinfo by the fd's mount) is one of _KEEPS_ITS_BYTES,
    on no device others change (a loop device, however deep), and not xfs with a realtime
    device (another one, its files' bytes)."""
    with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
        mount = next((line.split()[1] for line in info if line.startswith(b"mnt_id:")), None)
    with open("/proc/self/mountinfo", "rb") as mounts:
        for line in mounts:
            if line.split(b" ", 1)[0] == mount:
                fstype, _, options = line.partition(b" - ")[2].rstrip(b"\n").split(b" ", 2)
                break
        else:
            return False
    if fstype.decode() not in _KEEPS_ITS_BYTES or b"rtdev=" in options:
        return False
    devices = _backing_devices(fd, fstype.decode())
    return devices is not None and not any(_changed_elsewhere(device) for device in devices)


class LeasedMap:
    """`size` bytes of the regular file `fd` from `start` (fewer if the file ends first), as `view`
    (view[0] is the byte at `start`); `close()` unmaps and lets the lease go.

    The lease and the map are of a descriptor of our own, opened anew: a lease belongs to an open
    file description, and the caller's is shared with whoever handed it over (a shell, a `sudo`
    caller, a program that kept its copy). Any of them could drop a lease there, have the file
    written, and take one again, and `intact()` would see nothing."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if not os.path.samestat(os.fstat(self.fd), os.fstat(fd)):  # a descriptor changed meanwhile
                raise OSError(f"/proc/self/fd/{fd} is not the file of descriptor {fd}")
            fcntl.fcntl(self.fd, fcntl.F_SETSIG, signal.SIGURG)  # before the lease: a break may come at once
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)  # EAGAIN: open for writing somewhere
            size = min(size, os.fstat(self.fd).st_size - start)  # never past the end: a read there is SIGBUS
            base = start - start % mmap.ALLOCATIONGRANULARITY
            self._map = mmap.mmap(self.fd, start + size - base, mmap.MAP_SHARED, mmap.PROT_READ, offset=base)
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
        """Nobody opened the file for writing since the lease was taken (and it is not let go:
        a reader on another thread may ask while close() runs)."""
        try:
            return self.fd >= 0 and fcntl.fcntl(self.fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK
        except OSError:  # closed meanwhile
            return False

    def close(self) -> None:
        self.view.release()
        try:
            self._map.close()
        except BufferError:  # a view of it still held (a traceback's): the collector closes it
            pass
        self._release()

    def _release(self) -> None:
        """The lease let go now (a map that a held view keeps open shares our descriptor's lease
        until it is collected), and the descriptor closed."""
        if self.fd < 0:
            return
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1
