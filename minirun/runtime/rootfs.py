"""The container's root: kernel filesystems, binds and masks mounted on it, then pivot_root into it.

Runs in PID 1 of the new PID namespace, inside the container's private mount namespace, once
the union is mounted at `root`. Every mount happens before pivot_root, while the host paths of
bind sources are still reachable; pivot_root then detaches the whole host tree at once.

What gets mounted is plain data (SYSTEM_MOUNTS, plan_mounts, MASKED_PATHS, READONLY_PATHS) so
tests read it without root; the functions below only carry it out on the kernel.

Mount points that already exist are used as they are, never touched: the shared init layer
holds /proc, /sys, /dev, /etc/hosts... so no container's upper dir records them as changes.
Only what is missing (a -v target, say) is created, and then in the upper dir, as docker does.
"""

from __future__ import annotations

import errno
import os
import stat

from minirun import linux
from minirun.errors import MinirunError, NotFound, SyscallError, UsageError
from minirun.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
)
from minirun.records import Record

TYPE_CHECKING = False  # collections.abc costs ~1 ms of every start
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class Bind(Record):
    """A host path shown at `target`, a path inside the container (`-v SRC:DST[:ro]`)."""

    source: str
    target: str
    readonly: bool
    DEFAULTS = {
        "readonly": False,
    }


class RootfsSpec(Record):
    """The mounted union at `root` and what to put on it; /etc/hosts and friends come as binds."""

    root: str
    readonly: bool
    binds: list[Bind]
    tmpfs: list[str]
    # the container's cgroup hierarchies as (dir under /sys/fs/cgroup, fstype, options); see
    # cgroups.namespace_mounts. Empty: /sys/fs/cgroup stays an empty read-only tmpfs.
    cgroups: list[tuple[str, str, str | None]]
    # --privileged: /sys and the cgroups writable, no masked or read-only paths, every host device
    privileged: bool
    devices: list[tuple[str, str]]  # --device: (host node, path in /dev)
    shm_size: int  # --shm-size: /dev/shm's size in bytes (0: docker's 64 MiB)
    host_ipc: bool  # --ipc host: /dev/shm is the host's, as the IPC namespace is
    # An OCI bundle's (minirun/oci): its mounts in its order instead of docker's and the binds
    # (None: docker's), its masked and read-only paths (None: docker's), and the device nodes
    # it asks for, [path, type, major, minor, mode, uid, gid], made with mknod(2)
    mounts: list[Mount] | None
    masked_paths: list[str] | None
    readonly_paths: list[str] | None
    device_nodes: list[list[Any]]
    # chroot, not pivot_root: the mount namespace is not the container's own (an OCI bundle's
    # shared or joined one), so the old root stays, for the others there
    chroot: bool
    # in a user namespace of its own, where mknod(2) makes no device: each node is the host's, bound
    userns: bool
    # paths made if missing, as directories (0755, root's) in the root before anything is mounted:
    # an image's VOLUMEs that no mount covers (a build's RUN step; see make_volume_dirs)
    volume_dirs: list[str]
    DEFAULTS = {
        "readonly": False,
        "binds": list,
        "tmpfs": list,
        "cgroups": list,
        "privileged": False,
        "devices": list,
        "shm_size": 0,
        "host_ipc": False,
        "mounts": None,
        "masked_paths": None,
        "readonly_paths": None,
        "device_nodes": list,
        "chroot": False,
        "userns": False,
        "volume_dirs": list,
    }


class Mount(Record):
    """One mount(2) call as data; `target` is a path inside the container."""

    target: str
    fstype: str | None  # None: a bind mount of `source`, a host path
    source: str
    flags: int
    data: str | None
    # OCI mounts only: MS_SHARED, MS_PRIVATE... (| MS_REC) set after the mount, and
    # MOUNT_ATTR_* set on it and every mount below it (runc's rro, rnosuid...)
    propagation: int
    recursive_attrs: int
    DEFAULTS = {
        "flags": 0,
        "data": None,
        "propagation": 0,
        "recursive_attrs": 0,
    }


_NOSUID_NODEV_NOEXEC = MS_NOSUID | MS_NODEV | MS_NOEXEC

# docker's mounts, in an order where every parent comes before its children.
SYSTEM_MOUNTS: tuple[Mount, ...] = (
    # a new instance: we are PID 1 of the new PID namespace, so it lists only the container's
    Mount("/proc", "proc", "proc", _NOSUID_NODEV_NOEXEC),
    # a tmpfs, never the host's devtmpfs, and nodev: the container gets only the host's nodes
    # bound onto it below; a node it makes itself (mknod) does not open. noexec, as podman's: it
    # is writable in every container, --read-only ones too, and no program belongs in it
    Mount("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_STRICTATIME, "mode=755,size=65536k"),
    # newinstance: the container's ptys are its own, neither visible to nor numbered among the host's
    Mount("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    Mount("/dev/shm", "tmpfs", "shm", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k"),
    # mqueue shows the queues of the mounting process's IPC namespace: the container's own
    Mount("/dev/mqueue", "mqueue", "mqueue", _NOSUID_NODEV_NOEXEC),
    Mount("/sys", "sysfs", "sysfs", MS_RDONLY | _NOSUID_NODEV_NOEXEC),
    # hides the host's hierarchies; holds the container's own (mount_cgroups), then turns read-only
    Mount("/sys/fs/cgroup", "tmpfs", "cgroup", _NOSUID_NODEV_NOEXEC, "mode=755"),
)

# Kernel filesystems land only on real directories of the image: a symlink there could put
# procfs somewhere the masks below never look (runc CVE-2019-19921 raced one).
_NO_SYMLINK = frozenset({"/proc", "/dev", "/sys"})

# (name, major, minor): docker's default nodes, all crw-rw-rw- root:root
DEVICES: tuple[tuple[str, int, int], ...] = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
    ("ptmx", "pts/ptmx"),
)

# docker's defaults (moby oci/defaults.go): kernel data a container must not read...
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
# docker >= 28 also masks each CPU's thermal_throttle (moby#49560, GHSA-6fw5-f8r9-fgfm): its
# thermal event counts, as /proc/interrupts', are a side channel on what other tenants compute.
# Which CPUs have one is the host's to say: masked_paths() lists them at each start.
_CPU_DIR = "/sys/devices/system/cpu"


def masked_paths(cpu_dir: str = _CPU_DIR) -> list[str]:
    """docker's masked paths on this host: MASKED_PATHS, then each CPU's thermal_throttle in
    `cpu_dir` (the host's sysfs, which the container's shows too), in CPU order."""
    try:
        names = os.listdir(cpu_dir)
    except OSError:
        names = []
    cpus = sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())
    throttles = [f"cpu{n}/thermal_throttle" for n in cpus]
    return [*MASKED_PATHS, *(f"{_CPU_DIR}/{t}" for t in throttles if os.path.isdir(os.path.join(cpu_dir, t)))]


# ...and kernel knobs it may read but never write (/proc/sys/kernel/hostname, sysrq, ...)
READONLY_PATHS: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# docker's --tmpfs defaults; size and mode are the kernel's (half of RAM, 1777)
TMPFS_FLAGS = _NOSUID_NODEV_NOEXEC
# --tmpfs options that turn a flag on or off; size, mode, uid and gid go to the kernel as data
_TMPFS_SWITCHES = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
}

# Where no volume may go: the kernel filesystems and what minirun mounts itself. runc refuses
# anything inside /proc but the files lxcfs stands in for; a bind over /sys or /dev would undo
# the read-only sysfs and the device walls.
_RUNTIME_OWNED = frozenset({"/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"})
_PROC_ALLOWED = frozenset(
    {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    }
)

_MAX_SYMLINKS = 40  # the kernel's own MAXSYMLINKS


def plan_mounts(spec: RootfsSpec) -> list[Mount]:
    """Every mount setup_rootfs makes before the masks, in order. Pure."""
    user = [
        Mount(_container_path(b.target), None, b.source, MS_BIND | MS_REC | (MS_RDONLY if b.readonly else 0))
        for b in spec.binds
    ]
    user += [tmpfs_mount(t) for t in spec.tmpfs]
    check_targets([m.target for m in user])
    # a parent mounted after its child would hide it: shallow targets first, as docker sorts
    user.sort(key=lambda m: m.target.count("/"))
    system = SYSTEM_MOUNTS if not spec.privileged else tuple(_privileged(m) for m in SYSTEM_MOUNTS)
    return [*(_shm(m, spec) if m.target == "/dev/shm" else m for m in system), *user]


def _shm(m: Mount, spec: RootfsSpec) -> Mount:
    """/dev/shm: the host's own with --ipc host (POSIX shared memory lives there; docker binds it
    too, nosuid, nodev, noexec as every bind here), else a tmpfs of --shm-size."""
    if spec.host_ipc:
        return Mount(m.target, None, "/dev/shm", MS_BIND | MS_REC)
    if spec.shm_size:
        return Mount(m.target, m.fstype, m.source, m.flags, f"mode=1777,size={spec.shm_size}")
    return m


def _privileged(m: Mount) -> Mount:
    """docker's --privileged: /sys read-write, and /dev able to hold every host device node."""
    if m.target in ("/sys", "/sys/fs/cgroup"):
        return Mount(m.target, m.fstype, m.source, m.flags & ~MS_RDONLY, m.data)
    if m.target == "/dev":
        return Mount(m.target, m.fstype, m.source, m.flags & ~MS_NODEV, m.data)
    return m


def _container_path(path: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"invalid mount config: mount path must be absolute: {path!r}")
    clean = os.path.normpath(path)
    if clean in ("/", "//"):
        raise UsageError("invalid mount config: destination can't be '/'")
    return clean


def check_targets(targets: list[str]) -> None:
    """Refuse volume and tmpfs targets that would undo a wall or clash with each other. Pure."""
    seen = set()
    for target in targets:
        clean = _container_path(target)
        if clean in seen:
            raise UsageError(f"Duplicate mount point: {clean}")
        seen.add(clean)
        refused = _refused_target(clean)
        if refused:
            raise UsageError(f"invalid mount config: {refused}")


def _refused_target(clean: str) -> str:
    """Why a clean container path may not take a volume or a tmpfs; "" if it may."""
    if clean == "/":
        return "destination can't be '/'"
    if (clean == "/proc" or clean.startswith("/proc/")) and clean not in _PROC_ALLOWED:
        return f"{clean!r} cannot be mounted because it is inside /proc"
    if clean == "/sys" or clean.startswith("/sys/"):
        return f"{clean!r} cannot be mounted because it is inside /sys"
    if clean in _RUNTIME_OWNED:
        return f"{clean} is mounted by minirun itself" + (" (add devices with --device)" if clean == "/dev" else "")
    return ""


def tmpfs_mount(spec: str) -> Mount:
    """`--tmpfs TARGET[:OPTIONS]` as a mount, docker's defaults (noexec, nosuid, nodev) changed by
    ro/rw, exec/noexec, suid/nosuid, dev/nodev, and size, mode, uid, gid passed to the kernel.
    Anything else is refused rather than ignored. Pure."""
    target, _, options = spec.partition(":")
    flags, data = TMPFS_FLAGS, list[str]()
    for option in filter(None, options.split(",")):
        key, sep, value = option.partition("=")
        if not sep and key in _TMPFS_SWITCHES:
            bit, on = _TMPFS_SWITCHES[key]
            flags = flags | bit if on else flags & ~bit
        elif sep and _tmpfs_value_ok(key, value):
            data = [d for d in data if not d.startswith(f"{key}=")] + [f"{key}={value}"]
        else:
            raise UsageError(
                f"invalid tmpfs option {option!r} in {spec!r}: use size, mode, uid, gid, "
                "ro/rw, exec/noexec, suid/nosuid or dev/nodev"
            )
    return Mount(_container_path(target), "tmpfs", "tmpfs", flags, ",".join(data) or None)


def _tmpfs_value_ok(key: str, value: str) -> bool:
    if key == "size":  # bytes, or with k/m/g/t/p/e, or a percentage of RAM: the kernel's forms
        number = value[:-1] if value[-1:].lower() in ("k", "m", "g", "t", "p", "e", "%") else value
        return number.isdigit() and number.isascii()
    if key == "mode":
        return 0 < len(value) <= 4 and all(c in "01234567" for c in value)
    if key in ("uid", "gid"):
        return value.isdigit() and value.isascii() and int(value) < 2**32 - 1
    return False


def setup_rootfs(spec: RootfsSpec, before_pivot: Callable[[], None] | None = None) -> None:
    """Mount everything on `spec.root`, then make it `/` with the host's tree detached;
    `before_pivot` runs in between (an OCI container's createContainer hooks).

    The caller must be in its own mount namespace with `/` already rprivate (else the mounts
    would propagate to the host) and `root` must be a mount point (pivot_root's rule); with
    `spec.chroot`, in someone else's, `root` itself a private mount.
    """
    root = os.path.abspath(spec.root)
    if spec.volume_dirs:
        make_volume_dirs(root, spec.volume_dirs)
    if spec.mounts is not None:
        _oci_mounts(root, spec)
    for m in plan_mounts(spec) if spec.mounts is None else ():
        _mount(root, m)
        if m.target == "/dev":
            _populate_dev(os.path.join(root, "dev"), spec.devices, spec.privileged)
        elif m.target == "/sys/fs/cgroup":
            mount_cgroups(os.path.join(root, "sys/fs/cgroup"), spec.cgroups, writable=spec.privileged)
        elif m.target == "/dev/shm" and spec.host_ipc:  # the host's: noexec too, as docker binds it
            linux.mount_setattr(os.path.join(root, "dev/shm"), linux.MOUNT_ATTR_NOEXEC, recursive=True)
    if not spec.privileged:
        _mask_paths(root, masked_paths() if spec.masked_paths is None else spec.masked_paths)
        _readonly_paths(root, READONLY_PATHS if spec.readonly_paths is None else spec.readonly_paths)
    if spec.readonly:
        # after every mount point was created; the mounts on top keep their own flags
        remount_readonly(root)
    if before_pivot is not None:
        before_pivot()
    if spec.chroot:
        os.chdir(root)
        os.chroot(".")
        os.chdir("/")
    else:
        pivot(root)


def make_volume_dirs(root: str, paths: Sequence[str]) -> None:
    """Each missing path as a directory, 0755 and root's (the umask set aside), its missing
    parents too, as runc makes a volume's mount point and docker's classic builder leaves it in
    the layer of the RUN step that follows a VOLUME. Resolved and made inside `root`, as mount
    points are (a link on the way leads where it leads in the container). What is there already
    is left as it is, and a path that cannot be made (a parent that is a file, a link that loops)
    is skipped: no mount goes there, and the step sees the image as BuildKit leaves it. So is one
    in /proc, /sys or /dev: the kernel's filesystems cover it (and run refuses a volume there)."""
    umask = os.umask(0o022)
    try:
        for target in paths:
            try:
                path = resolve_in_root(root, target)
                if os.path.relpath(path, root).split("/")[0] in (".", "proc", "sys", "dev"):
                    continue
                fd = _mount_point(root, path, target, is_dir=True)
            except (MinirunError, OSError):
                continue
            os.close(fd)
    finally:
        os.umask(umask)


def resolve_in_root(root: str, path: str) -> str:
    """The host path of container `path`, following symlinks as the container would see them.

    A symlink is read with `root` as `/`: an absolute target restarts at root and `..` stops
    there, so no image can point a mount at the host (`/etc -> /host/etc`), which the kernel
    would otherwise follow on the host's terms. Missing components are kept as written.
    """
    root = os.path.abspath(root)
    todo = [p for p in path.split("/") if p][::-1]  # a stack: the next component last
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop()
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        try:
            mode = os.lstat(here).st_mode
        except (FileNotFoundError, NotADirectoryError):
            done.append(name)
            continue
        if not stat.S_ISLNK(mode):
            done.append(name)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise MinirunError(f"resolving {path} in the container: too many levels of symbolic links")
        target = os.readlink(here)
        if target.startswith("/"):
            done = []
        todo.extend([p for p in target.split("/") if p][::-1])
    return os.path.join(root, *done)


def _mount(root: str, m: Mount) -> None:
    bind = m.fstype is None
    if bind and not os.path.exists(m.source):
        raise NotFound(f'invalid mount config for type "bind": bind source path does not exist: {m.source}')
    path = resolve_in_root(root, m.target)
    if m.target in _NO_SYMLINK and path != os.path.join(root, m.target.lstrip("/")):
        raise MinirunError(f"{m.target} in the image is a symlink: {m.fstype} must be mounted on a directory")
    target_fd = _mount_point(root, path, m.target, is_dir=not bind or os.path.isdir(m.source))
    try:
        _check_landing(root, target_fd, path, m.target)
        if bind:
            _bind_at(m.source, target_fd, readonly=bool(m.flags & MS_RDONLY))
        else:
            linux.mount(m.source, linux.fd_path(target_fd, path), m.fstype, m.flags, m.data)
    finally:
        os.close(target_fd)


def _check_landing(root: str, target_fd: int, path: str, target: str) -> None:
    """Refuse a mount that an image's link (`/data -> /proc`), or one a container sharing a
    volume swapped in, leads onto a path check_targets refuses as written: a volume over the
    container's /proc, /sys or /dev/pts would replace what the kernel and minirun put there
    (runc's checkProcMount, CVE-2019-19921). Where the mount point is, is asked of its fd."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:  # both asked of fds: the root's own path may go through a link (/var/lib -> /srv)
        where, top = (os.readlink(f"/proc/self/fd/{fd}") for fd in (target_fd, root_fd))
    except OSError:
        where, top = path, root  # no procfs to ask (someone else's namespace): resolve_in_root's answer
    finally:
        os.close(root_fd)
    rel = os.path.relpath(where, top)
    landing = "/" if rel == "." else "/" + rel
    if landing == os.path.normpath(target) or _refused_target(target):
        return  # as written (the system's own mounts, checked by check_targets for the user's)
    outside = rel == ".." or rel.startswith("../")
    refused = "it is outside the container" if outside else _refused_target(landing)
    if refused:
        raise UsageError(f"invalid mount config: {target} leads to {landing}: {refused}")


def _bind_at(source: str, target_fd: int, readonly: bool) -> None:
    """`source` (a host path) on the mount point `target_fd`, recursive: a clone of its tree
    made nosuid and nodev (and read-only, if asked) all the way down while still detached, then
    attached where `target_fd` is. A remount after mount(2) would change only the top mount, and
    `-v /:/host:ro` would leave /host/proc, /host/dev and every tmpfs under it writable (docker >=
    25 does the same with mount_setattr); a path looked up again could be another mount by then."""
    attrs = linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | (linux.MOUNT_ATTR_RDONLY if readonly else 0)
    try:
        clone = linux.open_tree(linux.AT_FDCWD, source, linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE)
    except SyscallError as exc:
        if exc.errno == errno.ENOSYS:
            raise MinirunError(
                "volumes need mount_setattr(2) (Linux >= 5.12) to be read-only and nodev all the way down"
            ) from None
        raise
    try:
        linux.mount_setattr_fd(clone, attrs)
        flags = linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH
        linux.move_mount(clone, "", target_fd, "", flags)
    finally:
        os.close(clone)


# the kernel resolves with the container's root as `/`: an absolute link restarts there, `..` stops there
_IN_ROOT = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS


def _mount_point(root: str, path: str, shown: str, *, is_dir: bool) -> int:
    """An O_PATH fd of the mount point at `path` (resolve_in_root's answer for `shown`); what is
    missing is made (0755 directories, an empty 0644 file for a file's bind), one existing one is
    left exactly as it is. Every step is resolved by the kernel inside `root` (openat2's
    RESOLVE_IN_ROOT) and each new entry made by name in a directory so resolved: a container
    sharing a volume on the way can swap a directory for a symlink between our look and our
    mkdir, and that link must lead inside this root, never to the host's `/` (runc CVE-2021-30465)."""
    rel = os.path.relpath(path, root)
    parts = [] if rel == "." else rel.split("/")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    root_fd = os.dup(fd)
    try:
        for i, name in enumerate(parts):
            sub = "/".join(parts[: i + 1])
            try:
                try:
                    below = linux.openat2(root_fd, sub, os.O_PATH, _IN_ROOT)
                except FileNotFoundError:
                    _make_entry(fd, name, directory=is_dir or i < len(parts) - 1)
                    below = linux.openat2(root_fd, sub, os.O_PATH, _IN_ROOT)
            except NotADirectoryError:
                raise MinirunError(f"cannot mount on {shown}: a parent is not a directory") from None
            except OSError as exc:
                raise MinirunError(f"cannot create mount point {shown}: {exc.strerror}") from None
            os.close(fd)
            fd = below
        if shown in _NO_SYMLINK and not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise MinirunError(f"cannot mount on {shown}: not a directory in the image")
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(root_fd)
    return fd


def _make_entry(parent_fd: int, name: str, *, directory: bool) -> None:
    """A new directory or empty file `name` in `parent_fd`; one made meanwhile is no error (a
    link made meanwhile is: the open after this one refuses what it leads out to)."""
    try:
        if directory:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=parent_fd))
    except FileExistsError:
        pass


def _open_in_root(root: str, target: str) -> int:
    """An O_PATH fd of what container path `target` is now, resolved by the kernel inside `root`
    as resolve_in_root reads links: after a mount, the new mount's root."""
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return linux.openat2(root_fd, target.lstrip("/") or ".", os.O_PATH, _IN_ROOT)
    finally:
        os.close(root_fd)


def _populate_dev(dev: str, devices: Sequence[tuple[str, str]] = (), privileged: bool = False) -> None:
    """Each of docker's nodes is the host's own, bind-mounted: /dev itself is nodev. So is each
    --device node, at its path under /dev; privileged, /dev gets every other host node too."""
    for name, major, minor in DEVICES:
        host = f"/dev/{name}"
        st = os.stat(host)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(major, minor):
            raise MinirunError(f"the host's {host} is not the character device {major}:{minor}")
        _bind_node(host, os.path.join(dev, name))
    for name, target in DEV_SYMLINKS:
        os.symlink(target, os.path.join(dev, name))
    for host, target in devices:
        node = os.path.join(dev, os.path.relpath(target, "/dev"))
        if os.path.lexists(node):
            if os.path.exists(node) and os.stat(node).st_rdev == os.stat(host).st_rdev:
                continue  # one of the default nodes, asked for again
            raise UsageError(f"--device {host}:{target}: {target} is already in the container's /dev")
        os.makedirs(os.path.dirname(node), 0o755, exist_ok=True)
        _bind_node(host, node)
    if privileged:
        _copy_host_nodes(dev)


def _bind_node(host: str, node: str) -> None:
    """The host's node, bound read-only: the device still reads and writes, but its inode is the
    host's, so the container's root (CAP_FOWNER, CAP_CHOWN) must not chmod, chown or touch it
    (docker's nodes are the container's own, made with mknod)."""
    os.close(os.open(node, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
    linux.mount(host, node, None, MS_BIND)
    remount(node, MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _copy_host_nodes(dev: str) -> None:
    """docker's privileged /dev: a node for each of the host's devices (this /dev is not nodev
    then), the pseudo-filesystems under it excepted."""
    for top, dirs, files in os.walk("/dev"):
        if top == "/dev":
            dirs[:] = [d for d in dirs if d not in ("pts", "shm", "mqueue")]
        for name in files:
            host = os.path.join(top, name)
            node = os.path.join(dev, os.path.relpath(host, "/dev"))
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) or os.path.lexists(node):
                continue
            os.makedirs(os.path.dirname(node), 0o755, exist_ok=True)
            os.mknod(node, st.st_mode, st.st_rdev)
            os.chown(node, st.st_uid, st.st_gid)


def mount_cgroups(path: str, hierarchies: list[tuple[str, str, str | None]], writable: bool = False) -> None:
    """docker's view of /sys/fs/cgroup: each hierarchy read-only (unless `writable`: privileged),
    mounted from inside the container's cgroup namespace, so its root is the container's own
    cgroup (nothing above it, no sibling's); a v2 hierarchy named "" covers /sys/fs/cgroup itself."""
    for name, _, _ in hierarchies:
        if name:
            os.mkdir(os.path.join(path, name), 0o755)
    if not writable:
        remount_readonly(path)  # the tmpfs, before a v2 hierarchy may cover it
    for name, fstype, options in hierarchies:
        if fstype == "bind" and options:  # no cgroup namespace: the container's own cgroup (bind_mounts)
            target = os.path.join(path, name) if name else path
            linux.mount(options, target, None, MS_BIND)
            if not writable:
                remount(target, MS_RDONLY | _NOSUID_NODEV_NOEXEC)
            continue
        linux.mount(
            fstype,
            os.path.join(path, name) if name else path,
            fstype,
            (0 if writable else MS_RDONLY) | _NOSUID_NODEV_NOEXEC,
            options,
        )


# -- an OCI bundle's mounts -----------------------------------------------------------------------

_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE


def _oci_mounts(root: str, spec: RootfsSpec) -> None:
    """An OCI bundle's mounts, in its order and as it says them (runc's rules, not docker's: no
    target is refused, a bind keeps the flags it asks for); then /dev's nodes, if /dev is a
    filesystem of the container's own.

    Each mount is made whole while detached (a bind's clone with its flags, a new filesystem from
    fsopen(2)), then moved onto a mount point made and resolved through fds inside the root, and
    what follows (cgroup hierarchies, propagation, recursive attributes) acts on the mount's own
    fd: a volume shared with a running container may be changed under us at any moment (runc
    CVE-2021-30465), so no path is looked up again once the mount is in place. (A lookup after
    the mount once let a container that renamed the mount point away and put a link to /proc in
    its place turn /proc read-only and leave a read-only bind of the host writable.)"""
    own_dev = False
    for m in spec.mounts or []:
        path = resolve_in_root(root, m.target)
        if m.target in _NO_SYMLINK and path != os.path.join(root, m.target.lstrip("/")):
            raise MinirunError(f"{m.target} in the root is a symlink: {m.fstype} must be mounted on a directory")
        bind = m.fstype is None
        if bind and not os.path.exists(m.source):
            raise NotFound(f"mount {m.source} to {m.target}: no such file or directory")
        mounted = _detached_mount(m)
        try:
            point = _mount_point(root, path, m.target, is_dir=not bind or os.path.isdir(m.source))
            try:
                flags = linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH
                linux.move_mount(mounted, "", point, "", flags)
            finally:
                os.close(point)
            # from here `mounted` is the mount in its place, wherever that dir is renamed to
            if m.fstype == "cgroup":
                mount_cgroups(linux.fd_path(mounted, path), spec.cgroups, writable=not m.flags & MS_RDONLY)
            if m.propagation:
                kind = m.propagation & ~MS_REC
                linux.mount_setattr_fd(mounted, 0, recursive=bool(m.propagation & MS_REC), propagation=kind)
            if m.recursive_attrs:
                linux.mount_setattr_fd(mounted, m.recursive_attrs, recursive=True)
        finally:
            os.close(mounted)
        own_dev = own_dev or (m.target == "/dev" and not bind and m.fstype != "cgroup")
    if own_dev:
        _oci_dev(root, spec.device_nodes, spec.userns)


# mount(2)'s per-mount flags as mount_setattr(2)'s and fsmount(2)'s attributes
_MOUNT_ATTRS = (
    (MS_RDONLY, linux.MOUNT_ATTR_RDONLY),
    (MS_NOSUID, linux.MOUNT_ATTR_NOSUID),
    (MS_NODEV, linux.MOUNT_ATTR_NODEV),
    (MS_NOEXEC, linux.MOUNT_ATTR_NOEXEC),
    (MS_NOATIME, linux.MOUNT_ATTR_NOATIME),
    (MS_STRICTATIME, linux.MOUNT_ATTR_STRICTATIME),
    (MS_NODIRATIME, linux.MOUNT_ATTR_NODIRATIME),
    (linux.MS_NOSYMFOLLOW, linux.MOUNT_ATTR_NOSYMFOLLOW),
)
_ATIME_MASK = 0x70  # MOUNT_ATTR__ATIME: relatime, noatime and strictatime, one of them
_ALL_ATTRS = _ATIME_MASK | linux.MOUNT_ATTR_NODIRATIME | 0xF | linux.MOUNT_ATTR_NOSYMFOLLOW
# mount(2)'s superblock flags as fsconfig(2)'s flag names (the kernel's common_set_sb_flag)
_SB_FLAG_NAMES = (
    (MS_RDONLY, "ro"),
    (linux.MS_SYNCHRONOUS, "sync"),
    (linux.MS_DIRSYNC, "dirsync"),
    (64, "mand"),  # MS_MANDLOCK
    (1 << 16, "posixacl"),  # MS_POSIXACL
    (1 << 25, "lazytime"),  # MS_LAZYTIME
)


def _mount_attrs(flags: int) -> int:
    attrs = 0
    for flag, attr in _MOUNT_ATTRS:
        if flags & flag:
            attrs |= attr
    return attrs


def _detached_mount(m: Mount) -> int:
    """The bundle's mount `m` as a detached mount's fd, with every flag it asks for, for
    move_mount(2): a bind is a clone of its source (its tree with rbind) given its flags as a bind
    remount would (mount_setattr), anything else a new filesystem (fsopen, fsconfig, fsmount)."""
    if m.fstype is None:
        recursive = linux.AT_RECURSIVE if m.flags & MS_REC else 0
        clone = linux.open_tree(linux.AT_FDCWD, m.source, linux.OPEN_TREE_CLONE | recursive)
        try:
            extra = m.flags & ~(MS_BIND | MS_REC | MS_REMOUNT | _PROPAGATION)
            if extra:  # a bind takes its flags only from a remount
                attrs = _mount_attrs(extra)
                try:  # a bind remount sets exactly these: the others cleared, relatime by default
                    linux.mount_setattr_fd(clone, attrs, recursive=False, attr_clr=_ALL_ATTRS)
                except SyscallError as exc:
                    if exc.errno != errno.EPERM:
                        raise
                    # flags the source's mount locks (nodev...) kept, as runc retries
                    atime = _ATIME_MASK if attrs & _ATIME_MASK else 0
                    linux.mount_setattr_fd(clone, attrs, recursive=False, attr_clr=atime)
        except BaseException:
            os.close(clone)
            raise
        return clone
    if m.fstype == "cgroup":  # the tmpfs the hierarchies are mounted in
        fstype, source, flags, data = "tmpfs", "cgroup", (m.flags & ~MS_RDONLY) | _NOSUID_NODEV_NOEXEC, "mode=755"
    else:
        fstype, source, flags, data = m.fstype or "", m.source, m.flags, m.data or ""
    context = linux.fsopen(fstype)
    try:
        if source:
            linux.fsconfig_set_string(context, "source", source)
        for flag, name in _SB_FLAG_NAMES:
            if flags & flag:
                linux.fsconfig(context, linux.FSCONFIG_SET_FLAG, name)
        for option in filter(None, data.split(",")):
            key, sep, value = option.partition("=")
            if sep:
                linux.fsconfig_set_string(context, key, value)
            else:
                linux.fsconfig(context, linux.FSCONFIG_SET_FLAG, key)
        linux.fsconfig_create(context)
        return linux.fsmount(context, linux.FSMOUNT_CLOEXEC, _mount_attrs(flags))
    finally:
        os.close(context)


def _oci_dev(root: str, nodes: Sequence[Sequence[Any]], userns: bool = False) -> None:
    """runc's /dev: its default nodes (here the host's, bound, as for minirun's containers), the
    usual links, and each node the bundle lists, made with mknod(2) (a node already there stays);
    in a user namespace the host's node at that path, bound, as runc does there."""
    dev = os.path.join(root, "dev")
    for name, _, _ in DEVICES:
        if not os.path.lexists(os.path.join(dev, name)):
            _bind_node(f"/dev/{name}", os.path.join(dev, name))
    for name, target in DEV_SYMLINKS:
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for path, kind, major, minor, mode, uid, gid in nodes:
        # made by name in its directory, opened through fds inside the root: a volume under /dev
        # that a running container writes may turn any directory on the way, or the node itself
        # once made, into a link to a host path, which a path-based chmod followed
        parent_path = os.path.dirname(path)
        parent = _mount_point(root, resolve_in_root(root, parent_path), parent_path, is_dir=True)
        name = os.path.basename(path)
        try:
            try:
                os.lstat(name, dir_fd=parent)
                continue  # a node already there stays
            except FileNotFoundError:
                pass
            if userns:
                if not os.path.exists(path):
                    raise MinirunError(f"device {path}: no such node on the host to bind in a user namespace")
                _bind_node_at(path, parent, name)
                continue
            umask = os.umask(0)  # the mode exactly, from mknod itself: no chmod by name after it
            try:
                os.mknod(name, kinds[kind] | (mode & 0o7777), os.makedev(major, minor), dir_fd=parent)
            finally:
                os.umask(umask)
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise MinirunError(f"mknod {path}: {exc.strerror}") from None
        finally:
            os.close(parent)


def _bind_node_at(host: str, parent_fd: int, name: str) -> None:
    """_bind_node's bind, onto the file made as `name` in `parent_fd`, through that file's fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    node = os.open(name, flags, 0o666, dir_fd=parent_fd)
    try:
        clone = linux.open_tree(linux.AT_FDCWD, host, linux.OPEN_TREE_CLONE)
        try:
            attrs = linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NOEXEC
            linux.mount_setattr_fd(clone, attrs, recursive=False)
            linux.move_mount(clone, "", node, "", linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH)
        finally:
            os.close(clone)
    finally:
        os.close(node)


def _mask_paths(root: str, paths: Sequence[str]) -> None:
    """Hide `paths`: /dev/null over a file, an empty read-only tmpfs over a directory. The null is
    the host's own node, checked, never the root's /dev/null (runc CVE-2025-31133: an OCI bundle's
    /dev may be a dir a container writes, its `null` a link to any host file); each path is found
    and mounted on through an fd inside the root."""
    null = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(null)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            raise MinirunError("the host's /dev/null is not the character device 1:3")
        for path in paths:
            try:
                fd = _open_in_root(root, path)
            except FileNotFoundError:
                continue  # /proc/acpi without ACPI, /sys/devices/virtual/powercap without RAPL...
            try:
                at = linux.fd_path(fd, os.path.join(root, path.lstrip("/")))
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    linux.mount("tmpfs", at, "tmpfs", MS_RDONLY | _NOSUID_NODEV_NOEXEC)
                    continue
                linux.mount(linux.fd_path(null, "/dev/null"), at, None, MS_BIND)
            finally:
                os.close(fd)
            _remount_in_root(root, path, MS_RDONLY | MS_NOSUID | MS_NOEXEC)  # /dev/null is the host's inode
    finally:
        os.close(null)


def _readonly_paths(root: str, paths: Sequence[str]) -> None:
    """Make `paths` read-only: each bound onto itself so it becomes its own mount, whose flags may
    then change; found and mounted on through fds inside the root."""
    for path in paths:
        try:
            fd = _open_in_root(root, path)
        except FileNotFoundError:
            continue
        try:
            at = linux.fd_path(fd, os.path.join(root, path.lstrip("/")))
            linux.mount(at, at, None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        _remount_in_root(root, path, MS_RDONLY)


def _remount_in_root(root: str, target: str, add: int) -> None:
    """remount() of the mount now at container path `target`, opened again inside the root."""
    fd = _open_in_root(root, target)
    try:
        remount(linux.fd_path(fd, os.path.join(root, target.lstrip("/"))), add)
    finally:
        os.close(fd)


# statvfs(3) flag -> the mount(2) flag that keeps it
_KEPT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


def remount_readonly(path: str) -> None:
    remount(path, MS_RDONLY)


def remount(path: str, add: int) -> None:
    """Add per-mount flags (MS_RDONLY, MS_NODEV) to the mount at `path`, keeping its others.

    A bind remount *sets* the flags it is given: leaving out nosuid/nodev/noexec would clear
    them, and the kernel refuses (EPERM) to clear ones locked by a less privileged namespace;
    atime too, where no flag means relatime.
    """
    have = os.statvfs(path).f_flag
    flags = MS_BIND | MS_REMOUNT | add
    if have & os.ST_RDONLY:
        flags |= MS_RDONLY
    for st_flag, ms_flag in _KEPT_FLAGS:
        if have & st_flag:
            flags |= ms_flag
    if not have & (os.ST_NOATIME | os.ST_RELATIME):
        flags |= MS_STRICTATIME
    linux.mount(None, path, None, flags)


def pivot(root: str) -> None:
    """Make `root` the root and detach the old one with every host mount below it. No chroot:
    a chroot leaves the host's tree in the mount namespace, one `..` escape away."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        try:
            # new and old root the same: the old root is stacked on top of the new one at `/`
            linux.pivot_root(".", ".")
        except SyscallError as exc:
            # EBUSY: `root` is no mount point of its own, so it is on the current root's mount
            # EINVAL: a shared mount in the way (/ not made rprivate), or another non-mount point
            if exc.errno in (errno.EINVAL, errno.EBUSY):
                raise MinirunError(
                    f"{SyscallError('pivot_root', exc.errno, root).message} (the new "
                    "root must be a mount point, in a private mount namespace)"
                ) from None
            raise
        # the kernel promises nothing about our cwd after pivot_root: go to the old root explicitly
        os.fchdir(old_root)
        # a slave first, so unmounting it cannot propagate to a peer namespace (the host's)
        linux.mount(None, ".", None, MS_SLAVE | MS_REC)
        linux.umount2(".", MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")
