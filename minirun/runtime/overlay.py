"""The union mount: image layers stacked read-only under a container's upper dir.

Two ways in: the new mount API passes one layer per fsconfig call and has no length limit;
mount(2) takes every option in one page. Both get the same layers, topmost first.
"""

from __future__ import annotations

import errno
import os

from minirun import linux
from minirun.errors import MinirunError, SyscallError

# OVL_MAX_STACK in fs/overlayfs: the kernel refuses a 501st lower layer.
MAX_LOWERS = 500
# mount(2) copies one page of option data and silently cuts it at byte 4095 (the NUL goes in
# the last byte), so a longer string can mount a *different* directory: "l/12" becomes "l/1".
OPTIONS_MAX = 4096

API_AUTO = "auto"
API_NEW = "new"
API_CLASSIC = "classic"


def _check_layers(lowers: list[str]) -> None:
    if not lowers:
        raise MinirunError("overlay needs at least one lower layer: the image has no layers")
    if len(lowers) > MAX_LOWERS:
        raise MinirunError(f"image has {len(lowers)} layers; overlayfs stacks at most {MAX_LOWERS}")


def _check_path(path: str) -> None:
    if not path:
        raise MinirunError("overlay: empty layer path")
    if "\0" in path:
        raise MinirunError(f"overlay: NUL byte in path {path!r}")


def _escape(path: str) -> str:
    """Escape a path for the monolithic option string.

    The kernel splits options at unescaped `,` and lowerdir at unescaped `:` (`::` marks data-only
    layers), then drops one backslash before any character in every dir option.
    """
    _check_path(path)
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lowers: list[str], upper: str, work: str) -> str:
    """The mount(2) data for overlayfs; `lowers` are topmost first, as the kernel stacks them.

    index=off always: the inodes index ties an upper dir to the exact lower dirs it was first
    mounted with, and would refuse a container whose layers moved (docker sets it off too).
    """
    _check_layers(lowers)
    opts = (
        f"lowerdir={':'.join(_escape(p) for p in lowers)},upperdir={_escape(upper)},workdir={_escape(work)},index=off"
    )
    size = len(os.fsencode(opts)) + 1  # + the NUL the kernel needs inside the page
    if size > OPTIONS_MAX:
        raise MinirunError(
            f"overlay options for {len(lowers)} layers take {size} bytes; mount(2) takes "
            f"{OPTIONS_MAX}: use shorter layer paths (relative `l/<id>` links) or the new mount API"
        )
    return opts


def mount_overlay(target: str, lowers: list[str], upper: str, work: str, *, api: str = API_AUTO) -> str:
    """Mount the union at `target`, nodev; return the API used ("new" or "classic").

    nodev: a device node an image ships or a container mknods (CAP_MKNOD is one of docker's
    defaults) must not open the host's disks; docker leaves that to the devices cgroup,
    we close it for every cgroup layout (see rootfs.py for /dev).

    Relative paths resolve against the current directory, with either API: callers in the
    container's own process can chdir into the store so `l/<id>` keeps mount(2)'s page short.
    `api` forces one path ("new", "classic"), for tests; "auto" prefers the new mount API.
    """
    if api == API_AUTO:
        api = API_NEW if linux.has_new_mount_api() else API_CLASSIC
    if api == API_NEW:
        _mount_new(target, lowers, upper, work)
    elif api == API_CLASSIC:
        _mount_classic(target, lowers, upper, work)
    else:
        raise ValueError(f"unknown mount api {api!r}")
    return api


def _mount_classic(target: str, lowers: list[str], upper: str, work: str) -> None:
    try:
        linux.mount("overlay", target, "overlay", linux.MS_NODEV, overlay_options(lowers, upper, work))
    except SyscallError as e:
        # mount(2) reports a missing layer as ENOENT on the *target*; name the real culprit
        missing = next((p for p in [target, *lowers, upper, work] if not os.path.isdir(p)), None)
        if e.errno == errno.ENOENT and missing is not None:
            raise SyscallError("mount", e.errno, missing) from None
        raise


def _mount_new(target: str, lowers: list[str], upper: str, work: str) -> None:
    """fsopen + one "lowerdir+" per layer (Linux >= 6.8): no page limit.

    "lowerdir+" takes its path as is, but the kernel still unescapes upperdir and workdir
    (measured on 6.18: an upper named `u\\p` resolves as `up`), so those two stay escaped.
    """
    _check_layers(lowers)
    for lower in lowers:
        _check_path(lower)
    fsfd = linux.fsopen("overlay")
    try:
        # "overlay" as source, so /proc/mounts reads the same as after mount(2), not "none"
        linux.fsconfig_set_string(fsfd, "source", "overlay")
        for lower in lowers:
            linux.fsconfig_set_string(fsfd, "lowerdir+", lower)
        linux.fsconfig_set_string(fsfd, "upperdir", _escape(upper))
        linux.fsconfig_set_string(fsfd, "workdir", _escape(work))
        linux.fsconfig_set_string(fsfd, "index", "off")
        linux.fsconfig_create(fsfd)
        mntfd = linux.fsmount(fsfd, linux.FSMOUNT_CLOEXEC, linux.MOUNT_ATTR_NODEV)
    finally:
        os.close(fsfd)
    try:
        linux.move_mount(mntfd, "", linux.AT_FDCWD, target, linux.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        # the detached mount disappears with its last fd if move_mount failed
        os.close(mntfd)
