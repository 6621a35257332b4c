"""Kernel calls through ctypes: mounts, namespaces, pivot_root, the new mount API.

The only module that talks to libc. Every call raises SyscallError naming the call and the
path it was about, so a failure deep in container setup still reads as one useful line.
Imports stay at ctypes and os: this module is on the path of every `run`.
"""

from __future__ import annotations

import ctypes
import errno
import os

from minirun.errors import SyscallError

TYPE_CHECKING = False  # typing costs ~6 ms to import
if TYPE_CHECKING:
    from collections.abc import Iterable

# mount(2) flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# unshare(2)/setns(2) namespace flags (os.CLONE_* only arrives in Python 3.12)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000
CLONE_INTO_CGROUP = 0x200000000  # clone3 only (Linux >= 5.7)
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_SYSVSEM = 0x00040000

# the new mount API (Linux >= 5.2; overlay's "lowerdir+" since 6.8)
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_BINARY = 2
FSCONFIG_SET_PATH = 3
FSCONFIG_SET_PATH_EMPTY = 4
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSCONFIG_CMD_RECONFIGURE = 7
FSCONFIG_CMD_CREATE_EXCL = 8
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
MOVE_MOUNT_F_SYMLINKS = 0x1
MOVE_MOUNT_F_AUTOMOUNTS = 0x2
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_SYMLINKS = 0x10
MOVE_MOUNT_T_AUTOMOUNTS = 0x20
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_RECURSIVE = 0x8000

# seccomp(2) (linux/seccomp.h)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4

# bpf(2) (linux/bpf.h): the two commands a cgroup device program needs
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6

# keyctl(2) (linux/keyctl.h)
KEYCTL_JOIN_SESSION_KEYRING = 1

# syscall(2) numbers for calls glibc lacks (pivot_root) or gained late (fs*, 2.36).
# aarch64 uses the asm-generic table; numbers from 424 on are shared by every arch.
_SYSCALLS = {
    "x86_64": {
        "pivot_root": 155,
        "clone": 56,
        "clone3": 435,
        "seccomp": 317,
        "bpf": 321,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "mount_setattr": 442,
        "open_tree": 428,
        "openat2": 437,
        "execveat": 322,
        "keyctl": 250,
    },
    "aarch64": {
        "pivot_root": 41,
        "clone": 220,
        "clone3": 435,
        "seccomp": 277,
        "bpf": 280,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "mount_setattr": 442,
        "open_tree": 428,
        "openat2": 437,
        "execveat": 281,
        "keyctl": 219,
    },
}

_libc = ctypes.CDLL(None, use_errno=True)
_NR = _SYSCALLS.get(os.uname().machine, {})

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long
# The same library called with the GIL held (fork_to_parent's child must wake up holding it)
_libc_gil = ctypes.PyDLL(None, use_errno=True)
_libc_gil.syscall.restype = ctypes.c_long
_SIGCHLD = 17  # the same on every Linux architecture minirun knows


def _b(value: str | bytes | None) -> bytes | None:
    """Encode a path or string for the kernel; refuse NUL, which C would silently cut at."""
    if value is None:
        return None
    raw = os.fsencode(value)
    if b"\0" in raw:
        raise ValueError(f"NUL byte in {value!r}")
    return raw


def _check(ret: int, call: str, path: str | bytes | None) -> int:
    if ret < 0:
        raise SyscallError(call, ctypes.get_errno(), os.fsdecode(path) if path is not None else None)
    return ret


def _syscall(name: str, *args: object) -> int:
    nr = _NR.get(name)
    if nr is None:
        raise SyscallError(name, 38)  # ENOSYS: an architecture we have no table for
    # every argument goes in as a full register (long or pointer): syscall(2) is variadic,
    # so ctypes would otherwise pass ints as 32-bit values with undefined upper halves.
    # A ctypes buffer (a struct the kernel reads or fills) goes in as its address.
    cargs = [
        ctypes.c_long(a)
        if isinstance(a, int)
        else ctypes.c_char_p(a)
        if isinstance(a, bytes) or a is None
        else ctypes.c_void_p(ctypes.addressof(a))  # type: ignore[arg-type]  # a ctypes buffer, as the docstring says
        for a in args
    ]
    return _libc.syscall(ctypes.c_long(nr), *cargs)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | bytes | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount2", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare", None)


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns", f"fd {fd}")


def join_namespace(path: str, nstype: int) -> None:
    """setns into the namespace at `path` (/proc/PID/ns/..., or a bind of one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError("open namespace", exc.errno or errno.EIO, path) from None
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) for the options python-prctl does not know (PR_CAP_AMBIENT)."""
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(_libc.prctl(ctypes.c_int(option), *args), "prctl", None)


_AF_INET, _SOCK_DGRAM, _SOCK_CLOEXEC = 2, 2, 0o2000000


def udp_socket() -> int:
    """A close-on-exec AF_INET datagram socket's fd, for ioctls: the `_socket` extension's import
    (~0.15 ms) spared where nothing else of it is wanted (a start's loopback)."""
    return _check(_libc.socket(_AF_INET, _SOCK_DGRAM | _SOCK_CLOEXEC, 0), "socket", None)


def sethostname(name: str) -> None:
    raw = _b(name) or b""
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall("pivot_root", _b(new_root), _b(put_old)), "pivot_root", new_root)


def join_session_keyring() -> int:
    """A new anonymous session keyring for this process (and the children it forks after), in
    place of the one it inherited: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL). Its serial."""
    return _check(_syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, None), "keyctl", None)


def close_fds(keep: Iterable[int] = ()) -> None:
    """Close every fd but 0-2 and `keep`. An fd inherited from the host is a way out of a
    container's root (runc CVE-2024-21626 leaked a host directory fd). os.closerange is one
    close_range(2) call on Linux >= 5.9."""
    low = 3
    for fd in sorted({fd for fd in keep if fd >= 3}):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _fd_ceiling())


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def _fd_ceiling() -> int:
    """One past the highest possible fd: the hard RLIMIT_NOFILE, since fds opened before the soft
    limit was lowered stay open above it (getrlimit through libc: `resource` costs ~0.3 ms)."""
    limit = _Rlimit()
    if _libc.getrlimit(7, ctypes.byref(limit)) != 0:  # RLIMIT_NOFILE
        return 1 << 20  # the kernel's nr_open default
    return max(min(limit.max, 1 << 30), os.sysconf("SC_OPEN_MAX"), 1024)


def mount_setattr(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    """Set MOUNT_ATTR_* flags on the mount at `path` and, with `recursive`, on every mount below
    it in one call (Linux >= 5.12): what a bind remount cannot do for submounts."""
    attr = ctypes.create_string_buffer(attr_set.to_bytes(8, "little") + attr_clr.to_bytes(8, "little") + bytes(16))
    flags = AT_SYMLINK_NOFOLLOW | (AT_RECURSIVE if recursive else 0)
    _check(_syscall("mount_setattr", AT_FDCWD, _b(path), flags, attr, len(attr.raw)), "mount_setattr", path)


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """Install a classic-BPF seccomp program (8-byte sock_filter records) on the calling thread.
    Needs no_new_privs or CAP_SYS_ADMIN; survives fork and execve and can never be removed."""
    if not program or len(program) % 8:
        raise SyscallError("seccomp", 22, "a program of whole 8-byte instructions")
    code = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: 6 bytes of padding
    fprog = ctypes.create_string_buffer(
        (len(program) // 8).to_bytes(2, "little") + bytes(6) + ctypes.addressof(code).to_bytes(8, "little")
    )
    _check(_syscall("seccomp", SECCOMP_SET_MODE_FILTER, flags, fprog), "seccomp", None)


def bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    """bpf(2) with a filled `union bpf_attr` buffer; returns the kernel's result (an fd for loads)."""
    return _check(_syscall("bpf", cmd, attr, len(attr.raw)), "bpf", what)


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """Open a filesystem context; configure it with fsconfig, then fsmount it."""
    return _check(_syscall("fsopen", _b(fstype), flags), "fsopen", fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | bytes | None = None, aux: int = 0) -> None:
    if _syscall("fsconfig", fd, cmd, _b(key), _b(value), aux) < 0:
        err = ctypes.get_errno()
        what = f"{key}={os.fsdecode(value)}" if key is not None and value is not None else key
        raise _with_log(SyscallError("fsconfig", err, what), fd)


def fsconfig_set_string(fd: int, key: str, value: str | bytes) -> None:
    fsconfig(fd, FSCONFIG_SET_STRING, key, value)


def fsconfig_create(fd: int) -> None:
    """Build the superblock from the parameters set so far (where overlay checks its layers)."""
    fsconfig(fd, FSCONFIG_CMD_CREATE)


def fsmount(fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """Turn a created context into a detached mount; returns its fd for move_mount."""
    ret = _syscall("fsmount", fd, flags, attr_flags)
    if ret < 0:
        raise _with_log(SyscallError("fsmount", ctypes.get_errno()), fd)
    return ret


def move_mount(from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int = 0) -> None:
    _check(_syscall("move_mount", from_dfd, _b(from_path), to_dfd, _b(to_path), flags), "move_mount", to_path)


def fs_context_log(fd: int) -> list[str]:
    """Drain the kernel's messages for a filesystem context ("e overlayfs: ...").

    The errno alone says EINVAL for a dozen overlay mistakes; the log says which one.
    """
    lines = []
    while True:
        try:
            lines.append(os.read(fd, 4096).decode(errors="replace").rstrip("\n"))
        except OSError:  # ENODATA: the log is empty
            return lines


def _with_log(err: SyscallError, fd: int) -> SyscallError:
    """Append the context's log to the one-line message, where the real reason lives."""
    log = [line[2:] if line[1:2] == " " else line for line in fs_context_log(fd)]
    err.kernel_log = log  # type: ignore[attr-defined]
    if log:
        err.args = (f"{err.args[0]} ({'; '.join(log)})",)
    return err


_new_mount_api: bool | None = None


def has_new_mount_api() -> bool:
    """Can overlay be mounted through fsopen with one "lowerdir+" per layer (Linux >= 6.8)?

    Probed once by trying it, as containerd does: fsopen alone succeeds on 5.2+ kernels
    that would still reject "lowerdir+", and the probe mounts nothing.
    """
    global _new_mount_api
    if _new_mount_api is None:
        try:
            fd = fsopen("overlay")
        except (SyscallError, ValueError):
            _new_mount_api = False
        else:
            try:
                fsconfig_set_string(fd, "lowerdir+", "/")
                _new_mount_api = True
            except SyscallError:
                _new_mount_api = False
            finally:
                os.close(fd)
    return _new_mount_api


# openat2(2) (Linux >= 5.6): path resolution the kernel confines (linux/openat2.h)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
# open_tree(2) (Linux >= 5.2)
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000


def openat2(dirfd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """open `path` below `dirfd` with RESOLVE_* rules the kernel applies to every component, even
    a symlink swapped in while it walks: RESOLVE_IN_ROOT reads `dirfd` as `/` (an absolute link
    restarts there, `..` stops there). The kernel answers EAGAIN when a concurrent rename might
    have let `..` out; that is retried here."""
    how = ctypes.create_string_buffer(
        (flags | os.O_CLOEXEC).to_bytes(8, "little") + mode.to_bytes(8, "little") + resolve.to_bytes(8, "little")
    )
    raw = _b(path)
    for _ in range(64):
        ret = _syscall("openat2", dirfd, raw, how, 24)
        if ret >= 0 or ctypes.get_errno() != 11:  # EAGAIN
            break
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(path))
    return ret


def fd_path(fd: int, path: str) -> str:
    """A path that names exactly the inode `fd` holds (procfs's magic link), so that nothing
    swapped in on the way to `path` since it was opened can move a mount (runc's answer to
    CVE-2021-30465); `path` itself where there is no procfs to ask."""
    link = f"/proc/self/fd/{fd}"
    return link if os.path.lexists(link) else path


def execveat_fd(fd: int, argv: list[str], env: dict[str, str]) -> None:
    """execveat(2) of the file `fd` refers to (AT_EMPTY_PATH: an O_PATH fd, a detached mount's
    too); returns only by raising."""
    args = [os.fsencode(a) for a in argv]
    envs = [os.fsencode(f"{k}={v}") for k, v in env.items()]
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    c_env = (ctypes.c_char_p * (len(envs) + 1))(*envs, None)
    _check(_syscall("execveat", fd, b"", c_argv, c_env, AT_EMPTY_PATH), "execveat", argv[0])
    raise SyscallError("execveat", 0, argv[0])  # (unreachable: it succeeded or raised)


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """A mount (or, with OPEN_TREE_CLONE, a detached copy of it) as an fd for move_mount."""
    return _check(_syscall("open_tree", dirfd, _b(path), flags | os.O_CLOEXEC), "open_tree", path or f"fd {dirfd}")


def mount_setattr_fd(fd: int, attr_set: int, recursive: bool = True, attr_clr: int = 0, propagation: int = 0) -> None:
    """mount_setattr on the mount `fd` refers to (a detached tree from open_tree included);
    `propagation`: one of MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE, or 0 to leave it."""
    attr = ctypes.create_string_buffer(
        attr_set.to_bytes(8, "little") + attr_clr.to_bytes(8, "little") + propagation.to_bytes(8, "little") + bytes(8)
    )
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_syscall("mount_setattr", fd, b"", flags, attr, len(attr.raw)), "mount_setattr", f"fd {fd}")


class _CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h) up to its cgroup field: clone3's second version."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",
            "stack",
            "stack_size",
            "tls",
            "set_tid",
            "set_tid_size",
            "cgroup",
        )
    ]


# errnos of a kernel without clone3 (ENOSYS, < 5.3) or CLONE_INTO_CGROUP (EINVAL, E2BIG, < 5.7),
# or of a directory it cannot be born into (EBADF: not cgroup2; EOPNOTSUPP: not a domain)
_NO_CLONE_INTO = (errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EBADF, errno.EOPNOTSUPP)
_clone_into_works = True


def _raw_fork(flags: int, cgroup_fd: int = -1) -> int:
    """fork(2) as a raw clone, or clone3 into the cgroup `cgroup_fd`. The GIL stays held across it
    (PyDLL), and CPython's fork hooks (os.register_at_fork, its locks' reinit) are skipped, which
    is sound only in a single-threaded process whose child execs soon, as launch.start's does."""
    if cgroup_fd < 0:
        zero = ctypes.c_long(0)
        nr = ctypes.c_long(_NR.get("clone", -1))  # -1: ENOSYS on an architecture we have no table for
        return _check(_libc_gil.syscall(nr, ctypes.c_long(flags | _SIGCHLD), zero, zero, zero, zero), "clone", None)
    # clone3 refuses an exit signal with CLONE_PARENT (EINVAL): the child gets the caller's own,
    # which for a forked process is SIGCHLD, as clone(2) does
    exit_signal = 0 if flags & CLONE_PARENT else _SIGCHLD
    args = _CloneArgs(flags=flags | CLONE_INTO_CGROUP, exit_signal=exit_signal, cgroup=cgroup_fd)
    nr = ctypes.c_long(_NR.get("clone3", -1))
    return _check(_libc_gil.syscall(nr, ctypes.byref(args), ctypes.c_long(ctypes.sizeof(args))), "clone3", None)


_children_to_parent = False


def hand_children_to_parent() -> None:
    """From now on fork_owned() makes this process's children its parent's (clone's CLONE_PARENT):
    that process waits for them and gets their exit, and their parent-death signal follows it. A
    monitor's launcher (containers/monitor.py) starts what the monitor will own (PID 1, a port
    proxy) and exits."""
    global _children_to_parent
    _children_to_parent = True


def owner_pid() -> int:
    """The process fork_owned()'s children will have as their parent."""
    return os.getppid() if _children_to_parent else os.getpid()


def fork_owned(cgroup_fd: int = -1) -> tuple[int, bool]:
    """fork(): (0, _) in the child, (its pid, _) in the caller. The child is the caller's, or after
    hand_children_to_parent() the caller's parent's. Given `cgroup_fd`, an open cgroup2 directory,
    the child is born in that cgroup (clone3's CLONE_INTO_CGROUP) and the second value is True:
    moving a process there by writing cgroup.procs waits ~7-15 ms for an RCU grace period under
    the kernel's global threadgroup lock. False: the child must join it itself (an older kernel,
    or other threads in this process, with which a raw clone is unsound; see _raw_fork)."""
    global _clone_into_works
    flags = CLONE_PARENT if _children_to_parent else 0
    if cgroup_fd >= 0 and _clone_into_works and _single_threaded():
        try:
            return _raw_fork(flags, cgroup_fd), True
        except SyscallError as exc:
            if exc.errno not in _NO_CLONE_INTO:
                raise
            _clone_into_works = False
    return (_raw_fork(flags) if flags else os.fork()), False


def fork_sibling() -> int:
    """fork(), the child made the caller's parent's (CLONE_PARENT): a runtime's stage that exits
    once it forked hands the child to the runtime, which waits for it. Single-threaded callers
    only (_raw_fork)."""
    return _raw_fork(CLONE_PARENT)


def _single_threaded() -> bool:
    """The kernel's count (/proc/self/stat's 20th field), whatever started the threads."""
    try:
        with open("/proc/self/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[17] == b"1"
    except OSError:
        return False
