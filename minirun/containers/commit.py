"""A container's writable layer as a new read-only layer (`commit`), and its merged view as a tar
(`export`).

The upper dir is in overlay's notation; a layer tar is in OCI's: a 0/0 character device becomes
`.wh.NAME`, the opaque xattr becomes `.wh..wh..opq` right after its directory's own entry (before
the directory's other entries), and overlay's own xattrs are never written out. Entries go in
sorted order with numeric owners only, so the same upper always gives the same diff_id.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from minirun.errors import MinirunError
from minirun.layer.dirchain import DirChain, open_regular
from minirun.layer.whiteouts import is_opaque, is_overlay_xattr, is_whiteout, oci_opaque, oci_whiteout

# The walk goes by directory fds, one name at a time, never following a link, and opens a file to
# read only once an O_PATH open of it says it is a regular one (dirchain.open_regular): a running
# container may swap any entry for a symlink to a host path, a FIFO or a device node between our
# stat and our open (docker pauses the container; CVE-2018-15664 is that race).
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _xattrs(path: str) -> dict[str, str]:
    """PAX headers for the file's xattrs (values as surrogate-escaped text, tarfile's form)."""
    found: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return found
    for name in names:
        if is_overlay_xattr(name):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        found["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return found


def _info(path: str, name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000 if st.st_mtime_ns % 1_000_000_000 == 0 else st.st_mtime_ns / 1e9
    info.pax_headers = _xattrs(path)
    return info


def _changed(name: str) -> MinirunError:
    return MinirunError(f"{name}: changed while it was being read")


def _entries(root: str, oci_whiteouts: bool) -> Iterator[tuple[tarfile.TarInfo, tuple[int, str] | None]]:
    """(header, (dir fd, name) of the file to copy) for every entry below `root`, parents first,
    sorted. The walk keeps its own stack (layer/dirchain.py): a container may nest dirs deeper
    than Python's recursion limit and PATH_MAX."""
    links: dict[tuple[int, int], str] = {}
    root_fd = os.open(root, _READ_DIR)
    chain = DirChain(root_fd)
    try:
        # per level: the dir's path in the tar, and its names yet to visit (reversed: pop() is next)
        stack = [("", _sorted_names(root_fd))]
        while stack:
            rel, names = stack[-1]
            if not names:
                stack.pop()
                if stack:
                    chain.leave()
                continue
            entry = names.pop()
            dir_fd = chain.fd()
            name = f"{rel}/{entry}" if rel else entry
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            if is_whiteout(st):
                if oci_whiteouts:  # overlay's whiteout -> OCI's
                    info = tarfile.TarInfo(oci_whiteout(rel, entry))
                    info.mtime, info.uname, info.gname = int(st.st_mtime), "", ""
                    yield info, None
                continue
            # the last component is never followed; /proc/self/fd/N is the directory we hold
            info = _info(f"/proc/self/fd/{dir_fd}/{entry}", name, st)
            if stat.S_ISDIR(st.st_mode):
                try:
                    fd = chain.enter(entry)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise _changed(name) from None
                    raise
                stack.append((name, _sorted_names(fd)))
                info.type = tarfile.DIRTYPE
                yield info, None
                if oci_whiteouts and is_opaque(chain.fd()):
                    marker = tarfile.TarInfo(oci_opaque(name))
                    marker.mtime, marker.uname, marker.gname = int(st.st_mtime), "", ""
                    yield marker, None
                continue
            yield from _non_dir(dir_fd, entry, name, st, info, links)
    finally:
        chain.close()
        os.close(root_fd)


def _sorted_names(fd: int) -> list[str]:
    """The names in dir `fd`, last first (a stack's order)."""
    with os.scandir(fd) as it:
        return sorted((entry.name for entry in it), reverse=True)


def _non_dir(
    dir_fd: int, entry: str, name: str, st: os.stat_result, info: tarfile.TarInfo, links: dict[tuple[int, int], str]
) -> Iterator[tuple[tarfile.TarInfo, tuple[int, str] | None]]:
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1:
        if key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
            yield info, None
            return
        links[key] = name
    if stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
        yield info, (dir_fd, entry)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, _readlink(dir_fd, entry, name)
        yield info, None
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield info, None
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        yield info, None
    # sockets are not archived (tar cannot hold them; docker skips them too)


def _readlink(dir_fd: int, name: str, shown: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # no longer a symlink
            raise _changed(shown) from None
        raise


def _open_regular(dir_fd: int, name: str, shown: str) -> BinaryIO:
    """The regular file `name` in `dir_fd`, open to read; an error if it is no longer one."""
    fd = open_regular(dir_fd, name)
    if fd is None:  # a symlink, a FIFO or a device now: never opened to read
        raise _changed(shown)
    return open(fd, "rb")


def write_tar(root: str, out: BinaryIO, oci_whiteouts: bool) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, source in _entries(root, oci_whiteouts):
            if source is None:
                tar.addfile(info)
                continue
            with _open_regular(*source, info.name) as f:
                tar.addfile(info, f)


def layer_tar(upper: str, out: BinaryIO) -> None:
    """The upper dir as an OCI layer tar."""
    write_tar(upper, out, oci_whiteouts=True)


def is_empty(upper: str) -> bool:
    with os.scandir(upper) as it:
        return next(it, None) is None


def stage_upper(store, upper: str):
    """The upper dir as a staged layer of the store."""
    return store.unpack_written(lambda out: layer_tar(upper, out), "reading the container's changes")


def commit_container(
    store,
    container,
    *,
    message: str = "",
    author: str = "",
    changes=(),
    ref=None,
    created_by: str | None = None,
    empty_layer_if_unchanged: bool = False,
    config: dict | None = None,
    pause: bool = False,
):
    """docker commit: the upper becomes a layer on top of the container's image; a new image whose
    history gains one entry. `config` replaces the image config's `config` (the builder keeps its
    own); by default it is the container's, as docker's commit does. With
    `empty_layer_if_unchanged`, an empty upper adds no layer, only a history entry (the builder).
    With `pause` (docker's default), a running container is frozen while its upper is read."""
    import copy

    from minirun.image.instructions import apply_changes
    from minirun.timestamps import rfc3339_now

    image = store.images.get(container.config.image)
    base = copy.deepcopy(image.config)
    new_config = apply_changes(
        config if config is not None else _container_config(base.get("config", {}), container), list(changes)
    )
    staged = []
    empty = empty_layer_if_unchanged and is_empty(container.upper)
    if not empty:
        with _frozen(store, container, pause):
            staged.append(stage_upper(store, container.upper))
    created = rfc3339_now()
    entry: dict[str, object] = {
        "created": created,
        "created_by": created_by if created_by is not None else " ".join(container.config.argv),
    }
    if message:
        entry["comment"] = message
    if author:
        entry["author"] = author
    if empty:
        entry["empty_layer"] = True
    base["created"] = created
    base["config"] = new_config
    base["history"] = list(base.get("history", [])) + [entry]
    diff_ids = list(base.get("rootfs", {}).get("diff_ids", []))
    if staged:
        diff_ids.append(staged[0].applied.diff_id)
    base["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    if author:
        base["author"] = author
    else:
        base.pop("author", None)
    base["container"] = container.id
    return store.commit_image(staged, base, ref)


@contextlib.contextmanager
def _frozen(store, container, pause: bool) -> Iterator[None]:
    """The container paused meanwhile, if `pause` and it runs unpaused: nothing in it changes the
    upper while it is read (the walk above refuses a swap, but would fail the commit, and a file
    written meanwhile would be taken half-written). Recorded as a pause, with its events, as
    docker's commit does: a commit killed meanwhile leaves a container that says it is paused,
    which exec refuses and stop, kill, rm -f and unpause thaw."""
    if not pause:
        yield
        return
    from minirun.containers.container import Containers
    from minirun.containers.pause import pause as pause_container
    from minirun.containers.pause import unpause as unpause_container
    from minirun.errors import Conflict

    containers = Containers(store)
    try:
        pause_container(containers, container)
    except Conflict:  # not running, or paused by its user: read as it is, and left so
        yield
        return
    try:
        yield
    finally:
        unpause_container(containers, container)


def _container_config(image_config: dict, container) -> dict:
    """The image config a commit records: the container's command, env, workdir and user."""
    config = dict(image_config)
    entrypoint = list(image_config.get("Entrypoint") or [])
    argv = list(container.config.argv)
    if entrypoint and argv[: len(entrypoint)] == entrypoint:
        config["Cmd"] = argv[len(entrypoint) :]
    else:
        config["Entrypoint"] = None if not entrypoint else config.get("Entrypoint")
        config["Cmd"] = argv
    config["Env"] = list(container.config.env)
    config["WorkingDir"] = (
        container.config.workdir if container.config.workdir != "/" else image_config.get("WorkingDir", "")
    )
    config["User"] = container.config.user
    if not config.get("Entrypoint"):
        config.pop("Entrypoint", None)
    return config


def export_container(store, container, out: BinaryIO) -> None:
    """The merged view (upper over the init layer over the image) as a plain tar, no whiteouts.

    A read-only overlay of every layer, the upper included as the topmost lower, is mounted in a
    forked child's private mount namespace: the container (running or not) is never touched and
    nothing is mounted on the host."""
    from minirun.runtime.privatemounts import in_private_mounts
    from minirun.store.initlayer import init_layer_dir

    image = store.images.get(container.config.image)
    lowers = [container.upper, init_layer_dir(store)] + [store.layers.diff_dir(d) for d in reversed(image.diff_ids)]
    out.flush()

    def export() -> None:
        mountpoint = os.path.join(store.root, "mnt")
        os.makedirs(mountpoint, exist_ok=True)
        _mount_readonly_union(mountpoint, lowers)
        with open(out.fileno(), "wb", closefd=False) as target:
            write_tar(mountpoint, target, oci_whiteouts=False)

    in_private_mounts(export, "export")


def _mount_readonly_union(target: str, lowers: list[str]) -> None:
    from minirun import linux

    if linux.has_new_mount_api():
        fd = linux.fsopen("overlay")
        try:
            linux.fsconfig_set_string(fd, "source", "overlay")
            for lower in lowers:
                linux.fsconfig_set_string(fd, "lowerdir+", lower)
            linux.fsconfig_create(fd)
            mount_fd = linux.fsmount(fd, linux.FSMOUNT_CLOEXEC, linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NODEV)
        finally:
            os.close(fd)
        try:
            linux.move_mount(mount_fd, "", linux.AT_FDCWD, target, linux.MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mount_fd)
    else:
        linux.mount("overlay", target, "overlay", linux.MS_RDONLY | linux.MS_NODEV, "lowerdir=" + ":".join(lowers))
