"""A new container with volumes: the volumes it needs made, its record written (from there on
the record keeps them from `volume rm`), and docker's copy-up: a volume that is empty when a
container is created gets what the image holds at the volume's path (content, owners, modes,
times, xattrs, hardlinks, symlinks and nodes), and the path's own owner and mode. A volume with
anything in it is left as it is, so this happens once per volume, as in docker (populateVolume).

The container's union is mounted, read-only, in a forked child's private mount namespace (the
host never sees it); the path is resolved in it as the container resolves it. The copy takes
every name relative to a directory fd, on both sides, and never follows a link of the image's:
nothing the image holds can point the copy, or its chowns, outside the volume.
"""

from __future__ import annotations

import errno
import os
import stat

from minirun.errors import MinirunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.containers.container import Container, ContainerConfig, Containers
    from minirun.containers.mounts import MountPlan
    from minirun.store import Store
    from minirun.store.images import Image

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# xattrs that may not be set here: a filesystem without them, or one we may not write
_XATTR_SKIPPED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES)


def create_container(
    store: Store, containers: Containers, config: ContainerConfig, resolv_conf: bytes, plan: MountPlan, image: Image
) -> Container:
    """Containers.create with the plan's volumes: those missing are made first, the record then
    names them (from there on `volume rm` refuses them), then docker's copy-up fills the empty
    ones from the image. A failure on the way takes back what this call made, record included."""
    from minirun.containers.mounts import release

    made = _make_missing(store, plan)
    try:
        container = containers.create(config, resolv_conf)
    except BaseException:
        release(store.root, made)
        raise
    try:
        # one removed between its making and the record (which now protects it) is made again
        made += _make_missing(store, plan)
        if plan.copy_up:
            copy_up(store, container, image, plan.copy_up)
    except BaseException:
        from minirun.containers.removal import discard

        discard(containers, container)
        release(store.root, made)
        raise
    return container


def _make_missing(store: Store, plan: MountPlan) -> list[str]:
    from minirun.containers.mounts import record_volume_event
    from minirun.store.volumes import VolumeStore

    volumes = VolumeStore(store.root)
    made = []
    with store.locked():
        for name, labels, options in plan.new_volumes:
            if not volumes.exists(name):
                volumes.create(name, labels, options)
                made.append(name)
    for name in made:
        record_volume_event(store.root, "create", name)
    return made


def copy_up(store: Store, container: Container, image: Image, pairs: list[tuple[str, str]]) -> None:
    """For each (path in the container, host dir of a volume): the image's content at the path
    into the dir, if the dir is empty and the path a directory; a file there is an error, as
    in docker (a volume cannot cover it)."""
    from minirun.containers.plan import container_lowers
    from minirun.runtime.overlay import mount_overlay
    from minirun.runtime.privatemounts import in_private_mounts
    from minirun.runtime.rootfs import remount_readonly, resolve_in_root
    from minirun.store.initlayer import init_layer_link

    lowers = container_lowers(store, image, init_layer_link(store))
    mountpoint = os.path.join(store.root, "mnt")
    os.makedirs(mountpoint, exist_ok=True)

    def copy() -> None:
        os.chdir(store.root)  # the lowers are relative: short, as the container's own mount has them
        mount_overlay(mountpoint, lowers, container.upper, container.work)
        remount_readonly(mountpoint)
        os.umask(0)
        for target, volume_dir in pairs:
            source = resolve_in_root(mountpoint, target)
            try:
                mode = os.lstat(source).st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue  # nothing there: the mount point will be made, empty
            if not stat.S_ISDIR(mode):
                raise MinirunError(f"cannot mount volume over existing file, file exists {target}")
            copy_tree(source, volume_dir)

    in_private_mounts(copy, "copying the image's content into a volume")


def copy_tree(source: str, dest: str) -> bool:
    """`source`'s content into `dest` if `dest` is empty, then `source`'s owner, mode, xattrs and
    times onto `dest`; False (nothing done) if `dest` holds anything."""
    src_fd = os.open(source, _DIR_FLAGS)
    try:
        dst_fd = os.open(dest, _DIR_FLAGS)
        try:
            if os.listdir(dst_fd):
                return False
            _Copy(dst_fd).tree(src_fd, dst_fd)
            _copy_attributes(src_fd, dst_fd, os.fstat(src_fd))
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return True


class _Copy:
    """One tree's copy; `links` maps an inode already copied to its path under the root, so a
    hardlink stays one. Both sides are walked with a stack of dirs opened one name at a time
    (layer/dirchain.py), not by recursion: an image may nest dirs past Python's recursion limit,
    and past any number of fds."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.links: dict[tuple[int, int], str] = {}

    def tree(self, src_top: int, dst_top: int) -> None:
        """What the dir open at `src_top` holds, into the dir open at `dst_top`; each dir's own
        attributes after its children (their making moved its mtime)."""
        from minirun.layer.dirchain import DirChain

        source, dest = DirChain(src_top), DirChain(dst_top)
        # per dir: its names yet to copy (last first), its path under the root, its lstat
        stack: list[tuple[list[str], str, os.stat_result | None]] = [(_names(src_top), "", None)]
        try:
            while stack:
                names, rel, dir_st = stack[-1]
                if not names:
                    stack.pop()
                    if dir_st is not None:
                        _copy_attributes(source.fd(), dest.fd(), dir_st)
                        source.leave()
                        dest.leave()
                    continue
                name = names.pop()
                src_fd, dst_fd = source.fd(), dest.fd()
                st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
                here = os.path.join(rel, name)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(name, 0o700, dir_fd=dst_fd)
                    below = source.enter(name)
                    dest.enter(name)
                    stack.append((_names(below), here, st))
                else:
                    self.entry(name, src_fd, dst_fd, here, st)
        finally:
            source.close()
            dest.close()

    def entry(self, name: str, src_fd: int, dst_fd: int, here: str, st: os.stat_result) -> None:
        """One entry that is not a dir."""
        if stat.S_ISREG(st.st_mode):
            self.file(name, src_fd, dst_fd, here, st)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
        # a socket is no content: nothing can listen on a copy of it

    def file(self, name: str, src_parent: int, dst_parent: int, rel: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            first_dir, first_name = os.path.split(self.links[key])
            # the first copy's dir, opened a name at a time: a container sharing the volume
            # could have put a link where a dir of ours was, and the link must not be followed
            first_fd = _open_beneath(self.root_fd, first_dir)
            try:
                os.link(first_name, name, src_dir_fd=first_fd, dst_dir_fd=dst_parent, follow_symlinks=False)
            finally:
                os.close(first_fd)
            return
        src_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_parent)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dst_fd = os.open(name, flags, 0o600, dir_fd=dst_parent)
            try:
                offset = 0
                while offset < st.st_size:
                    sent = os.sendfile(dst_fd, src_fd, offset, min(st.st_size - offset, 1 << 30))
                    if sent == 0:
                        break  # the file shrank meanwhile: what there was is copied
                    offset += sent
                _copy_attributes(src_fd, dst_fd, st)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)
        if st.st_nlink > 1:
            self.links[key] = rel


def _names(dir_fd: int) -> list[str]:
    """A dir's names, last first: pop() takes them in order."""
    return sorted(os.listdir(dir_fd), reverse=True)


def _open_beneath(root_fd: int, rel: str) -> int:
    """A dir below `root_fd`, never through a symlink."""
    fd = os.dup(root_fd)
    for part in [p for p in rel.split("/") if p]:
        try:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def _copy_attributes(src_fd: int, dst_fd: int, st: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-id bits), then xattrs (it clears file capabilities
    too), then times (the rest moved them)."""
    from minirun.layer.whiteouts import is_overlay_xattr

    os.chown(dst_fd, st.st_uid, st.st_gid)
    os.chmod(dst_fd, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src_fd)
    except OSError as exc:
        if exc.errno not in _XATTR_SKIPPED:
            raise
        names = []
    for attribute in names:
        if is_overlay_xattr(attribute):
            continue
        try:
            os.setxattr(dst_fd, attribute, os.getxattr(src_fd, attribute))
        except OSError as exc:
            if exc.errno not in _XATTR_SKIPPED:
                raise
    os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
