"""`cp`: files between a container (running or stopped) and the host, or a tar stream, with
docker's path rules (SRC a file or a directory, `/.` for a directory's contents; DEST existing or
not, a file or a directory) and docker's documented owners: files copied in belong to the
container's root, files copied out to the user running cp; `-a` keeps the source's.

The container's side runs in a forked child, in a view of the container mounted privately
(runtime/containerfs.py), every path of it resolved inside its root (layer/treetar.py); the host's
side runs here. A tar stream on a pipe joins them, as docker's client and daemon are joined: the
child tells which the source is (a directory or not, its name) on the stream's first line."""

from __future__ import annotations

import os
import posixpath

from minirun.errors import Forbidden, MinirunError, NotFound, UsageError

# -- docker's path rules (pure) ------------------------------------------------------------------


def split_cp_arg(arg: str) -> tuple[str, str]:
    """`CONTAINER:PATH` -> (container, path); a local path -> ("", path). A local path holding a
    colon is written explicitly, `./a:b` or `/a:b`, as docker asks."""
    if arg.startswith("/"):
        return "", arg
    container, colon, path = arg.partition(":")
    if not colon or container.startswith("."):
        return "", arg
    return container, path


def preserve_trailing(cleaned: str, original: str) -> str:
    """`cleaned` with the trailing `/.` or `/` of `original` put back: they ask for a directory
    (and `/.` for its contents)."""
    if posixpath.basename(cleaned) != "." and posixpath.basename(original) == ".":
        cleaned = cleaned + ("." if cleaned.endswith("/") else "/.")
    if not cleaned.endswith("/") and original.endswith("/"):
        cleaned += "/"
    return cleaned


def asserts_directory(path: str) -> bool:
    return path.endswith("/") or posixpath.basename(path) == "."


def split_dir_entry(path: str) -> tuple[str, str]:
    """(directory, name) of a path, cleaned, its trailing `.` kept: `/a/b/` -> (/a, b),
    `/a/b/.` -> (/a/b, .)."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if posixpath.basename(path) == ".":
        cleaned = posixpath.join(cleaned, ".")
    return posixpath.dirname(cleaned) or ".", posixpath.basename(cleaned) or "/"


def container_path(path: str) -> str:
    """A path in the container: relative to its root, the trailing `/` or `/.` kept."""
    return preserve_trailing(clean_path(path), path)


def clean_path(path: str) -> str:
    """`a//b/../c/` -> `/a/c`: absolute and clean (posixpath keeps a leading `//`, POSIX's own)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def prepare_copy(
    src_is_dir: bool, src_name: str, dst: str, dst_exists: bool, dst_is_dir: bool
) -> tuple[str, str | None, str | None]:
    """docker's PrepareArchiveCopy: (the directory to extract into, the archive's first name and
    the name it takes there, or None, None to keep it)."""
    dst_dir, dst_base = split_dir_entry(dst)
    if dst_exists and dst_is_dir:
        return dst, None, None
    if dst_exists and src_is_dir:
        raise MinirunError(f"cannot copy a directory to a file: {dst}")
    if not dst_exists and not src_is_dir and asserts_directory(dst):
        raise NotFound(f"the destination directory must exist: {dst}")
    return dst_dir, src_name, dst_base


def archive_root(name: str) -> str:
    """The first name of an archive's entries as treetar.rebase matches it: "" when the archive
    holds a directory's contents (`.`, or the root `/`)."""
    return "" if name in (".", "/") else name


# -- the container's side (in the child, every path resolved in the container's root) --------


class _Source:
    """What is archived: `name` in the directory `dir_fd` ("." for that directory itself)."""

    def __init__(self, dir_fd: int, name: str, is_dir: bool, arcname: str) -> None:
        self.dir_fd, self.name, self.is_dir, self.arcname = dir_fd, name, is_dir, arcname


def _missing(path: str, container: str, exc: OSError) -> MinirunError:
    import errno

    if exc.errno == errno.ENOTDIR:
        return MinirunError(f"{path}: not a directory (in container {container})")
    if exc.errno == errno.ENOENT:
        return NotFound(f"Could not find the file {path} in container {container}")
    return MinirunError(f"{path} in container {container}: {exc.strerror}")


def _view_path(root_fd: int, fd: int) -> str:
    """The container path of an fd resolved in the view (what the kernel says it reached)."""
    root = os.readlink(f"/proc/self/fd/{root_fd}")
    here = os.readlink(f"/proc/self/fd/{fd}")
    if here == root:
        return "/"
    if not here.startswith(root.rstrip("/") + "/"):
        raise MinirunError(f"{here}: resolved outside the container's root")
    return here[len(root.rstrip("/")) :]


def resolve_source(tree, path: str, follow: bool, container: str) -> _Source:
    """docker's container source: symlinks followed in every component but the last (the last
    too with `-L`, or with a trailing `/`); a followed link is archived under its own name."""
    import stat

    wanted = container_path(path)
    directory, _, base = wanted.rpartition("/")
    try:
        dir_fd = tree.open(directory + "/")
        if base in ("", "."):
            return _Source(dir_fd, ".", True, archive_name(wanted))
        st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        if follow and stat.S_ISLNK(st.st_mode):
            os.close(dir_fd)
            fd = tree.open(wanted, os.O_PATH)
            try:
                target = _view_path(tree.fd, fd)
            finally:
                os.close(fd)
            source = resolve_source(tree, target, False, container)
            source.arcname = base
            return source
    except OSError as exc:
        raise _missing(path, container, exc) from None
    return _Source(dir_fd, base, stat.S_ISDIR(st.st_mode), base)


def archive_name(wanted: str) -> str:
    """The first name in an archive of the directory `wanted` (`/a/b/` -> b, `/a/b/.` -> .)."""
    if posixpath.basename(wanted) == ".":
        return "."
    return posixpath.basename(posixpath.normpath(wanted)) or "."


def dest_info(tree, path: str) -> tuple[str, bool, bool]:
    """docker's look at a destination in the container: (path, exists, is a directory). A
    symlink is followed (inside the root): DEST is then where it points, existing or not."""
    import stat

    wanted = container_path(path)
    directory, _, base = wanted.rpartition("/")
    try:
        dir_fd = tree.open(directory + "/")
    except OSError:
        return wanted, False, False  # the extraction names the missing parent
    try:
        if base in ("", "."):
            return wanted, True, True
        try:
            st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return wanted, False, False
        if not stat.S_ISLNK(st.st_mode):
            return wanted, True, stat.S_ISDIR(st.st_mode)
        try:
            fd = tree.open(wanted, os.O_PATH)
        except OSError:  # a dangling link: DEST is its target, to be made
            link = os.readlink(base, dir_fd=dir_fd)
            parent = _view_path(tree.fd, dir_fd)
            return clean_path(posixpath.join(parent, link)), False, False
        try:
            return _view_path(tree.fd, fd), True, stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def extraction_dir(tree, path: str, container: str, binds: list[list], readonly_root: bool) -> str:
    """The directory a tar is extracted into, resolved in the root: it must be one, and not on
    a read-only volume nor, outside every volume, on a read-only root (docker's checks)."""
    import stat

    try:
        fd = tree.open(container_path(path), os.O_PATH)
    except OSError as exc:
        raise _missing(path, container, exc) from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise UsageError(f"extraction point is not a directory: {path}")
        resolved = _view_path(tree.fd, fd)
    finally:
        os.close(fd)
    holders = [b for b in binds if _below(resolved, clean_path(b[1]))]
    if holders:
        deepest = max(holders, key=lambda b: len(clean_path(b[1])))
        if deepest[2]:
            raise Forbidden("mounted volume is marked read-only")
    elif readonly_root:
        raise Forbidden("container rootfs is marked read-only")
    return resolved


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


# -- the host's side ---------------------------------------------------------------------------


def host_source(path: str, follow: bool) -> tuple[str, str, bool]:
    """docker's local source: (the path to archive, the name to archive it as, is a directory).
    The host is the user's own: its symlinks are followed in every component but the last (and
    the last with `-L`), as docker does."""
    import stat

    if follow:
        resolved = preserve_trailing(os.path.realpath(path), path)
    else:
        directory, _, base = path.rpartition("/")
        resolved = os.path.realpath(directory or "/").rstrip("/") + "/" + base
    try:
        st = os.lstat(resolved)
    except OSError as exc:
        raise NotFound(f"lstat {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    name = split_dir_entry(path)[1]
    return resolved, name, stat.S_ISDIR(st.st_mode)


def host_dest_info(path: str) -> tuple[str, bool, bool]:
    """docker's local destination: (path, exists, is a directory). A symlink there is followed:
    DEST is where it points (made if missing); the parent of what is made must exist."""
    import stat

    target = path
    for _ in range(11):  # docker follows 10 links here
        if not os.path.islink(target.rstrip("/") or "/"):
            break
        link = os.readlink(target.rstrip("/"))
        target = preserve_trailing(os.path.join(os.path.dirname(target.rstrip("/")), link), target)
    else:
        raise MinirunError(f"too many symlinks in {path}")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        parent = split_dir_entry(target)[0]
        if not os.path.isdir(parent):
            raise NotFound(f"no such directory: {parent}") from None
        return target, False, False
    except NotADirectoryError:
        raise MinirunError(f"{path}: not a directory") from None
    return target, True, stat.S_ISDIR(st.st_mode)


def write_host_tar(out, path: str, arcname: str) -> int:
    """The host's `path` as a tar on `out`, its first name `arcname`; the bytes of its files."""
    import tarfile

    from minirun.layer.treetar import Writer

    directory, name = split_dir_entry(path)
    if name == "/":
        name = "."  # the host's root: its contents, as a container's `/` is copied
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            writer = Writer(tar)
            writer.add(dir_fd, name, arcname)
        return writer.file_bytes
    finally:
        os.close(dir_fd)


# -- the two directions --------------------------------------------------------------------------


def view_spec(containers, container):
    """How to mount the container's view: PID 1's root if it runs, else its union; its binds."""
    from minirun.containers.lifecycle import refuse_dead
    from minirun.containers.liveness import is_running, refresh
    from minirun.containers.plan import container_binds, container_lowers
    from minirun.runtime.containerfs import ViewSpec
    from minirun.store.initlayer import init_layer_link

    store = containers.store
    container = refresh(containers, container, record=False)
    refuse_dead(container)
    image = store.images.get(container.config.image)
    mountpoint = os.path.join(store.root, "mnt")
    os.makedirs(mountpoint, exist_ok=True)
    spec = ViewSpec(
        store_root=store.root,
        mountpoint=mountpoint,
        lowers=container_lowers(store, image, init_layer_link(store)),
        upper=container.upper,
        work=container.work,
        binds=container_binds(container),
        readonly=container.config.readonly,
    )
    if is_running(container):
        spec.pid, spec.pid_start = container.state.get("Pid", 0), container.state.get("PidStartTime")
    return spec


def copy_from_container(containers, container, src: str, dst: str, *, archive: bool, follow: bool, stdout) -> int:
    """`cp CONTAINER:SRC DST` (DST `-`: the tar on `stdout`); returns the bytes copied."""
    from minirun import leanjson
    from minirun.containers.container import record_event
    from minirun.runtime.containerfs import start_in_view

    spec = view_spec(containers, container)
    name = container.name
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)

    def work(root_fd: int) -> None:  # in the child
        import tarfile

        from minirun.layer.treetar import IN_CONTAINER, Tree, Writer

        source = resolve_source(Tree(root_fd, IN_CONTAINER), src, follow, name)
        with open(write_fd, "wb") as out:
            out.write(leanjson.dumps({"dir": source.is_dir, "name": source.arcname}).encode() + b"\n")
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                Writer(tar).add(source.dir_fd, source.name, source.arcname)

    child = start_in_view(spec, work, close_in_child=(read_fd,))
    os.close(write_fd)
    with open(read_fd, "rb") as stream:
        try:
            header = stream.readline()
            if not header:
                child.wait()  # the child's error: the source is missing, or the like
                raise MinirunError(f"cp: no archive came from container {name}")
            found = leanjson.loads(header)
            if dst == "-":
                copied = _pump(stream, stdout)
            else:
                copied = _extract_on_host(stream, found["dir"], found["name"], dst, archive)
        except BaseException as exc:
            stream.close()  # the child, still writing, stops at a broken pipe
            if isinstance(exc, KeyboardInterrupt):
                child.reap()
            else:
                child.wait(strict=False)  # the error it explains first: ours may only follow from it
            raise
    child.wait()
    record_event(containers.store.root, container, "archive-path")
    return copied


def _pump(stream, out) -> int:
    copied = 0
    while chunk := stream.read(1 << 20):
        out.write(chunk)
        copied += len(chunk)
    out.flush()
    return copied


def _extract_on_host(stream, src_is_dir: bool, src_name: str, dst: str, archive: bool) -> int:
    """A container's tar into the host's DST: names below DST only, no symlink followed, and
    without `-a` the files belong to the user running cp (treetar.Extractor's host rules)."""
    from minirun.errors import warn
    from minirun.layer.treetar import ON_HOST, Extractor, Tree, rebase

    path, exists, is_dir = host_dest_info(dst)
    into, old, new = prepare_copy(src_is_dir, src_name, path, exists, is_dir)
    rename = rebase(archive_root(old), new) if old is not None and new is not None else None
    me = (os.getuid(), os.getgid())
    dest_fd = os.open(into, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    counted = _Counting(stream)
    try:
        extractor = Extractor(
            Tree(dest_fd, ON_HOST),
            "",
            into,
            owner=None if archive else me,
            implied_owner=me,
            host=True,
            rename=rename,
            warn=warn,
        )
        extractor.extract(counted)
    finally:
        os.close(dest_fd)
    return counted.count


class _Counting:
    """A reader that counts what passes (what docker reports as transferred)."""

    def __init__(self, inner) -> None:
        self.inner, self.count = inner, 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.count += len(data)
        return data


def copy_to_container(
    containers, container, src: str, dst: str, *, archive: bool, follow: bool, stdin, to_user: bool = False
) -> int:
    """`cp SRC CONTAINER:DST` (SRC `-`: a tar read from `stdin`); returns the bytes of the files.
    Owners: the archive's with `archive`, else root's; `to_user`: the container's user's (-u,
    resolved in its own passwd and group files), as dockerd's copyUIDGID."""
    from minirun.containers.container import record_event
    from minirun.runtime.containerfs import start_in_view

    spec = view_spec(containers, container)
    name, readonly_root, user = container.name, container.config.readonly, container.config.user
    if src == "-":
        source = None
        read_fd, write_fd = stdin.fileno(), -1
    else:
        source = host_source(src, follow)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)

    def work(root_fd: int) -> None:  # in the child
        from minirun.layer.treetar import IN_CONTAINER, Extractor, Tree, rebase

        tree = Tree(root_fd, IN_CONTAINER)
        path, exists, is_dir = dest_info(tree, dst)
        rename = None
        if source is None:
            if not (exists and is_dir):
                raise UsageError(f'destination "{name}:{dst}" must be a directory')
            into = path
        else:
            _, source_name, source_is_dir = source
            into, old, new = prepare_copy(source_is_dir, source_name, path, exists, is_dir)
            rename = rebase(archive_root(old), new) if old is not None and new is not None else None
        resolved = extraction_dir(tree, into, name, spec.binds, readonly_root)
        root_ids = (0, 0)  # the container's root (no user namespace remaps it)
        owner = _user_ids(tree, user) if to_user else None if archive else root_ids
        extractor = Extractor(tree, resolved, resolved, owner=owner, implied_owner=root_ids, rename=rename)
        with open(read_fd, "rb", closefd=False) as stream:
            extractor.extract(stream)

    child = start_in_view(spec, work, close_in_child=(write_fd,) if write_fd >= 0 else ())
    copied = 0
    if source is not None:
        os.close(read_fd)
        try:
            with open(write_fd, "wb") as out:
                copied = write_host_tar(out, source[0], source[1])  # (path, name, is_dir)
        except BrokenPipeError:
            pass  # the child stopped reading: its error says why
        except BaseException:
            child.reap()  # it read a stream cut short by our own error, which is the one to tell
            raise
    child.wait()
    record_event(containers.store.root, container, "extract-to-dir")
    return copied


_USER_DB_LIMIT = 1 << 20  # bytes of /etc/passwd or /etc/group read on the host's side, at most


def _user_ids(tree, user: str) -> tuple[int, int]:
    """The uid and gid the container's user resolves to in its own /etc/passwd and /etc/group
    (no user: root, nothing read)."""
    from minirun.runtime.security import resolve_user

    if not user:
        return 0, 0
    passwd, group = (_user_db(tree, path) for path in ("etc/passwd", "etc/group"))
    found = resolve_user(user, passwd, group)
    return found.uid, found.gid


def _user_db(tree, path: str) -> str:
    """A user database of the container's, read here, outside its limits: symlinks resolved
    inside its root, a regular file only (a FIFO would hang the copy), and at most
    _USER_DB_LIMIT bytes (a sparse giant would fill this process's memory). Missing: empty."""
    import stat

    try:
        fd = tree.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise MinirunError(f"cannot resolve the container's user: /{path} is not a regular file")
        data = f.read(_USER_DB_LIMIT + 1)
    if len(data) > _USER_DB_LIMIT:
        raise MinirunError(f"cannot resolve the container's user: /{path} is over {_USER_DB_LIMIT} bytes")
    return data.decode("utf-8", "surrogateescape")


# -- docker's stat of a container path (the Engine API's archive HEAD) ----------------------------

# Go's os.FileMode type bits, which docker's stat carries as they are (its clients test them)
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(st_mode: int) -> int:
    """A stat's st_mode as Go's os.FileMode: the permission bits, and type and set-id bits in
    Go's own places (not the kernel's)."""
    import stat

    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFBLK: _GO_DEVICE,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
    }.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode


def stat_entry(tree, path: str) -> dict | None:
    """docker's ContainerStatPath of `path` (in the child): every component's symlink followed
    but the last's (that one too with a trailing `/`), a link's target given as the container
    path it reaches; None when there is no such path."""
    import stat

    from minirun.timestamps import rfc3339_ns

    wanted = container_path(path)
    directory, _, base = wanted.rpartition("/")
    name = posixpath.basename(wanted.rstrip("/")) if base != "." else "."
    try:
        dir_fd = tree.open(directory + "/")
    except OSError:
        return None
    try:
        if base in ("", "."):
            st = os.fstat(dir_fd)
        else:
            st = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                fd = tree.open(wanted, os.O_PATH)
            except OSError:  # dangling: where it points, in the container
                link_target = clean_path(posixpath.join(_view_path(tree.fd, dir_fd), os.readlink(base, dir_fd=dir_fd)))
            else:
                try:
                    link_target = _view_path(tree.fd, fd)
                finally:
                    os.close(fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return {
        "name": name or "/",
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": rfc3339_ns(st.st_mtime_ns),
        "linkTarget": link_target,
    }


def stat_path(containers, container, path: str) -> dict:
    """docker's stat of a path in a container (running or stopped); NotFound when missing."""
    from minirun import leanjson
    from minirun.runtime.containerfs import start_in_view

    spec = view_spec(containers, container)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)

    def work(root_fd: int) -> None:  # in the child
        from minirun.layer.treetar import IN_CONTAINER, Tree

        found = stat_entry(Tree(root_fd, IN_CONTAINER), path)
        with open(write_fd, "wb") as out:
            out.write(leanjson.dumps(found).encode())

    child = start_in_view(spec, work, close_in_child=(read_fd,))
    os.close(write_fd)
    with open(read_fd, "rb") as stream:
        data = stream.read()
    child.wait()
    found = leanjson.loads(data) if data else None
    if found is None:
        raise NotFound(f"Could not find the file {path} in container {container.name}")
    return found
