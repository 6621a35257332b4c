"""COPY and ADD for the builder: sources found inside the build context (never outside it), their
digest for the layer cache, and the copy itself into an image's merged view.

Files the context's ignore file excludes (minirun.build.ignore) are not there for COPY and ADD:
a name given directly is not found, a wildcard does not match them, a directory is copied
without them, and they are out of the cache digest too.

The copy runs in a forked child that mounts the image's layers under the step's upper dir in its
own mount namespace and chroots into the union. Symlinks in the destination path then resolve
inside the image (docker's FollowSymlinkInScope), a parent dir that exists keeps its owner and
mode (overlay copies it up as it is), and nothing is ever mounted on the host. The sources are
opened through directory fds taken before the chroot.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator

from minirun.build import sha256
from minirun.build.ignore import ContextFilter, component_matcher
from minirun.errors import MinirunError, NotFound, UsageError
from minirun.layer.dirchain import DirChain, open_regular
from minirun.layer.longpaths import SHORT, cuts_of
from minirun.layer.whiteouts import is_overlay_xattr, is_whiteout
from minirun.records import Record

# tarfile and shutil load where used (ADD's archives, a replaced tree): a cached build needs neither
TAR_BLOCK = 512

_MAX_SYMLINKS = 255
_CHUNK = 1 << 20


class Source(Record):
    root: str  # host directory `rel` is below: the context, or an archive extracted for ADD
    rel: str  # resolved inside root, no symlinks in it ("" is root itself)
    name: str  # the name a file takes in a destination directory (the source as written)
    is_dir: bool
    digest: str  # "file:<hex>" or "dir:<hex>": what the layer cache compares
    archive: bool  # ADD: a local tar, extracted into the destination
    preserve_owner: bool  # extracted archives keep their owners; context files become root's
    excludes: ContextFilter | None  # the ignore file's rules over `rel` (context sources only)
    DEFAULTS = {"archive": False, "preserve_owner": False, "excludes": None}


# -- the sources, seen from the host -------------------------------------------------------
def collect_sources(
    context: str,
    words: list[str],
    instruction: str,
    allow_archives: bool,
    excludes: ContextFilter | None = None,
    image: str | None = None,
) -> list[Source]:
    """Every source the words name (wildcards expanded), resolved inside `context`; what
    `excludes` leaves out is not there. With `image` (`COPY --from`; what it names, for
    messages) `context` is that image's root: its files keep their owners, and no digest is
    taken (the image's id stands for its content in the cache key)."""
    sources: list[Source] = []
    for word in words:
        if word.startswith(("http://", "https://", "git@")):
            if instruction == "COPY":
                raise UsageError(f"COPY failed: source can't be a URL for COPY: {word}")
            raise UsageError(f"ADD failed: remote sources are not supported by minirun build: {word}")
        rel = _clean_source(word, instruction)
        if any(ch in rel for ch in "*?["):
            try:
                matches = [m for m in glob_in_scope(context, rel) if _visible(excludes, context, m) is not None]
            except UsageError as exc:
                raise UsageError(f"{instruction} failed: {exc.message}") from None
            if not matches:
                raise NotFound(f"{instruction} failed: no source files were specified")
        else:
            matches = [rel]
        for match in matches:
            sources.append(_source(context, match, word, instruction, allow_archives, excludes, image))
    return sources


def sources_digest(sources: list[Source]) -> str:
    """docker's getSourceHashFromInfos: one source's own hash, several hashed together."""
    if len(sources) == 1:
        return sources[0].digest
    return "multi:" + sha256.new(",".join(s.digest for s in sources).encode()).hexdigest()


def _clean_source(word: str, instruction: str) -> str:
    cleaned = posixpath.normpath(word) if word else "."
    # An absolute source is relative to the context root, as in docker.
    cleaned = cleaned.lstrip("/") or "."
    if cleaned == ".." or cleaned.startswith("../"):
        raise UsageError(f"{instruction} failed: forbidden path outside the build context: {word} ()")
    return cleaned


def _source(
    context: str,
    rel: str,
    word: str,
    instruction: str,
    allow_archives: bool,
    excludes: ContextFilter | None,
    image: str | None,
) -> Source:
    resolved = _visible(excludes, context, rel)
    full = os.path.join(context, resolved or "")
    try:
        if resolved is None:
            raise FileNotFoundError
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        where = f"{image}" if image else "build context or excluded by .dockerignore"
        raise NotFound(f"{instruction} failed: file not found in {where}: stat {word}: file does not exist") from None
    name = posixpath.basename(rel.rstrip("/")) if rel not in ("", ".") else posixpath.basename(context)
    if image is not None:
        return Source(context, resolved, name, stat.S_ISDIR(st.st_mode), "", preserve_owner=True)
    if stat.S_ISDIR(st.st_mode):
        digest = "dir:" + _tree_digest(full, resolved, excludes)
        return Source(context, resolved, name, True, digest, excludes=excludes)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{instruction} failed: {word} is not a regular file or directory")
    with open(_open_context_file(context, resolved, f"{instruction} failed: {word}"), "rb") as f:
        digest = "file:" + _file_digest(f, name, os.fstat(f.fileno()))
        archive = allow_archives and f.seek(0) == 0 and is_tar(f)
    return Source(context, resolved, name, False, digest, archive=archive)


def _open_context_file(context: str, rel: str, shown: str) -> int:
    """The regular file `rel` (resolved, no symlink in it) below `context`, open to read, or an
    error if it is something else now: a container sharing the context dir may swap in a FIFO
    (which would block the build), a device node (opened on the host, where no mount is nodev),
    or a link (to /dev/zero, or out of the context) after our lstat. Nothing is opened to read
    before fstat says it is a regular file (dirchain.open_regular)."""
    parent, _, name = rel.rpartition("/")
    root_fd = os.open(context, _READ_DIR)
    try:
        dir_fd = _open_source(root_fd, parent, _READ_DIR)
    finally:
        os.close(root_fd)
    try:
        fd = open_regular(dir_fd, name)
    finally:
        os.close(dir_fd)
    if fd is None:
        raise MinirunError(f"{shown}: changed while it was being read")
    return fd


def _visible(excludes: ContextFilter | None, context: str, rel: str) -> str | None:
    """`rel` resolved inside the context; None when the ignore file hides it: an excluded name,
    or a link that is one or goes through one, is not in the context."""
    links: list[str] = []
    resolved = resolve_in_scope(context, rel, links)
    if excludes is not None and any(excludes.excluded(link) for link in links):
        return None
    return resolved if present(excludes, context, resolved) else None


def glob_in_scope(root: str, pattern: str) -> list[str]:
    """The paths below root that `pattern` (Go's filepath.Match, one component at a time) names,
    sorted, as written (links not resolved). Every directory listed is first resolved inside root,
    so a link in an image or a context never lists a directory of the host."""
    found = [""]
    for part in [p for p in pattern.split("/") if p not in ("", ".")]:
        matcher = component_matcher(part)
        if matcher is None:
            found = [_join(path, part) for path in found]
            continue
        listed = []
        for path in found:
            try:
                names = os.listdir(os.path.join(root, resolve_in_scope(root, path)))
            except (OSError, UsageError):
                continue
            listed += [_join(path, name) for name in names if matcher(name)]
        found = listed
    return sorted(p for p in found if p and os.path.lexists(os.path.join(root, resolve_in_scope(root, p))))


def resolve_in_scope(root: str, rel: str, links: list[str] | None = None) -> str:
    """`rel` with every symlink followed as if `root` were `/`: an absolute target restarts at
    root and `..` stops there, so the result never leaves root (docker's FollowSymlinkInScope).
    The links followed are appended to `links` (their paths below root)."""
    pending = [p for p in rel.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        path = os.path.join(root, *resolved, part)
        if os.path.islink(path):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise UsageError(f"too many links while resolving {rel} in the build context")
            target = os.readlink(path)
            if links is not None:
                links.append("/".join([*resolved, part]))
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return "/".join(resolved)


def _file_digest(f, name: str, st: os.stat_result) -> str:
    """The digest of the regular file open as `f` (its lstat: `st`)."""
    # The name is in: renaming a source changes what lands in a destination dir. mtime and
    # owner are not (docker's tarsum leaves mtime out; COPY gives files to root anyway).
    header = f"{name}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_size}\0".encode(errors="surrogateescape")
    hasher = sha256.new(header, st.st_size)
    while chunk := f.read(_CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


def _tree_digest(top: str, top_rel: str, excludes: ContextFilter | None) -> str:
    hasher = sha256.new()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for dir_fd, name, rel, st in _walk(fd, top_rel, excludes):
            line = f"{rel}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}\0"
            if stat.S_ISREG(st.st_mode):
                file_fd = open_regular(dir_fd, name)
                if file_fd is None:  # swapped since the walk's stat (see _open_context_file)
                    raise MinirunError(f"{rel}: changed while it was being read")
                with open(file_fd, "rb") as f:
                    line += f"{st.st_size}\0" + _file_digest(f, "", st)
            elif stat.S_ISLNK(st.st_mode):
                line += os.readlink(name, dir_fd=dir_fd)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                line += f"{st.st_rdev}"
            hasher.update(line.encode(errors="surrogateescape") + b"\n")
    finally:
        os.close(fd)
    return hasher.hexdigest()


def _walk(top: int, context_rel: str, excludes: ContextFilter | None) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """What the ignore file leaves below the dir open at `top` (`context_rel` in the context):
    (its dir's fd, valid until the next step; its name; its path below top; its lstat), each
    dir's entries by name, a dir before what it holds. The walk keeps its own stack of dirs, each
    opened by one name (layer/dirchain.py): a context may nest dirs past the recursion limit and
    PATH_MAX."""
    chain = DirChain(top)
    known: dict[str, bool] = {}
    stack = [("", context_rel, _stacked(kept_entries(top, context_rel, excludes, known)))]
    try:
        while stack:
            rel, dir_rel, entries = stack[-1]
            if not entries:
                stack.pop()
                if stack:
                    chain.leave()
                continue
            entry, st = entries.pop()
            child = f"{rel}/{entry.name}" if rel else entry.name
            yield chain.fd(), entry.name, child, st
            if stat.S_ISDIR(st.st_mode):
                below = _join(dir_rel, entry.name)
                entries = kept_entries(chain.enter(entry.name), below, excludes, known)
                stack.append((child, below, _stacked(entries)))
    finally:
        chain.close()


def _stacked(entries: list) -> list:
    """`entries` last first: pop() takes them in order."""
    entries.reverse()
    return entries


# -- what the ignore file leaves ------------------------------------------------------------
def present(excludes: ContextFilter | None, context: str, rel: str) -> bool:
    """Whether `rel` (no symlinks in it) is in the context as COPY sees it: not excluded, or an
    excluded directory that still holds something an exception brings back (docker sends that
    directory for the sake of those)."""
    if excludes is None or not excludes.excluded(rel):
        return True
    if not excludes.may_keep_below(rel):
        return False
    try:
        fd = _open_dir(os.path.join(context, rel), None)
    except (NotADirectoryError, FileNotFoundError, OSError):
        return False
    try:
        return _holds_kept(fd, rel, excludes)
    finally:
        os.close(fd)


def kept_entries(
    dir_fd: int, dir_rel: str | None, excludes: ContextFilter | None, known: dict[str, bool] | None = None
) -> list[tuple[os.DirEntry, os.stat_result]]:
    """The entries of a directory (by fd; `dir_rel` is its path in the context) that the ignore
    file leaves, sorted by name. `known`: what one walk found of which excluded dirs hold kept
    entries (_holds_kept), so that a walk down a deep excluded tree searches each dir once."""
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    kept = []
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if excludes is not None and dir_rel is not None:
            rel = _join(dir_rel, entry.name)
            if excludes.excluded(rel) and not (
                stat.S_ISDIR(st.st_mode)
                and excludes.may_keep_below(rel)
                and _child_holds_kept(dir_fd, entry.name, rel, excludes, known)
            ):
                continue
        kept.append((entry, st))
    return kept


def _child_holds_kept(
    dir_fd: int, name: str, rel: str, excludes: ContextFilter, known: dict[str, bool] | None = None
) -> bool:
    if known is not None and rel in known:
        return known[rel]
    fd = _open_dir(name, dir_fd)
    try:
        return _holds_kept(fd, rel, excludes, known)
    finally:
        os.close(fd)


def _holds_kept(top: int, rel: str, excludes: ContextFilter, known: dict[str, bool] | None = None) -> bool:
    """Whether kept_entries of the dir open at `top` (`rel` in the context) has any: an entry
    not excluded, or an excluded dir that holds one, searched below with a stack of its own.
    The dirs it settles go into `known`: those on the way to a kept entry hold one, those
    searched through do not."""
    chain = DirChain(top)
    stack = [(rel, os.listdir(top))]
    try:
        while stack:
            rel, names = stack[-1]
            if not names:
                stack.pop()
                if known is not None:
                    known[rel] = False
                if stack:
                    chain.leave()
                continue
            name = names.pop()
            child = _join(rel, name)
            below = None
            if excludes.excluded(child):
                if not excludes.may_keep_below(child) or not stat.S_ISDIR(
                    os.stat(name, dir_fd=chain.fd(), follow_symlinks=False).st_mode
                ):
                    continue
                below = known.get(child) if known is not None else None
                if below is None:
                    stack.append((child, os.listdir(chain.enter(name))))
                    continue
                if not below:
                    continue
            if known is not None:  # a kept entry below each dir on the way
                known.update((way, True) for way, _ in stack)
            return True
        return False
    finally:
        chain.close()


def _open_dir(path: str, dir_fd: int | None) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def is_tar(f) -> bool:
    """docker's ADD rule: a file (open as `f`, at its start) whose (decompressed) start is a
    valid tar header is extracted."""
    from minirun.layer.compression import decompressed

    try:
        block = decompressed(f).read(TAR_BLOCK)
    except (OSError, EOFError, ValueError, ImportError):
        return False
    return is_tar_header(block)


def is_tar_header(block: bytes) -> bool:
    """Whether `block` (a tar's first 512 bytes) is a valid tar header."""
    import tarfile

    if len(block) < TAR_BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def extract_archives(store, sources: list[Source]) -> tuple[list[Source], list]:
    """ADD's archives unpacked (by the layer store's hardened applier) into staged dirs, which
    the copy then treats as directories whose owners are kept. Returns the new sources and the
    staged layers, which the caller discards."""
    staged_layers = []
    result = []
    try:
        for source in sources:
            if not source.archive:
                result.append(source)
                continue
            with open(_open_archive(source), "rb") as stream:
                staged = store.unpack_layer(stream)
            staged_layers.append(staged)
            changes = {"root": staged.diff_dir, "rel": "", "is_dir": True, "archive": False, "preserve_owner": True}
            result.append(Source(**{**source.as_dict(), **changes, "excludes": None}))
    except BaseException:
        for staged in staged_layers:
            store.layers.discard(staged)
        raise
    return result, staged_layers


def _open_archive(source: Source) -> int:
    """ADD's archive, opened as it was found (_open_source): a regular file, or an error."""
    try:
        root_fd = os.open(source.root, _READ_DIR)
        try:
            fd = _open_source(root_fd, source.rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        finally:
            os.close(root_fd)
    except OSError as exc:
        raise MinirunError(f"ADD failed: {source.rel}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MinirunError(f"ADD failed: {source.rel} is no longer a regular file")
    return fd


def _open_source(root_fd: int, rel: str, flags: int) -> int:
    """`rel` below the source root open at `root_fd`, no symlink followed on the way. `rel` was
    resolved with none in it; a link swapped in since (a container sharing the context dir)
    must not lead the copy out: from an fd outside the copy's chroot, a relative link's `..`
    climbs to the host's own root."""
    from minirun import linux

    rule = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
    return linux.openat2(root_fd, rel or ".", flags, rule)


# -- the copy, inside the image's root -------------------------------------------------------
class FromImage(Record):
    """`COPY --from`: the sources are `words` in the root of another image (a stage or an image),
    found inside the copy's child once that root is mounted."""

    name: str  # what --from names, for messages
    lowers: list[str]  # its layers, relative to the store root, topmost first
    words: list[str]
    scratch: str  # an empty dir of the step's own: the mount point, and the mount's unused upper


def copy_into_image(
    store_root: str,
    lowers: list[str],
    upper: str,
    work: str,
    sources: list[Source],
    dest: str,
    dest_is_dir: bool,
    chown: str,
    instruction: str,
    from_image: FromImage | None = None,
) -> None:
    """Copy `sources` (or what `from_image` names) to `dest` (absolute, in the image) through
    the union of `lowers` (relative to the store root, topmost first) and `upper`. With no
    lowers (FROM scratch) the upper is the whole view and is written directly."""
    from minirun.runtime.overlay import mount_overlay
    from minirun.runtime.privatemounts import in_private_mounts

    mountpoint = os.path.join(store_root, "mnt")
    os.makedirs(mountpoint, exist_ok=True)

    def copy() -> None:
        os.chdir(store_root)  # the lowers are relative to it: the mount's option string stays short
        chosen = sources if from_image is None else _sources_in(from_image, instruction)
        if len(chosen) > 1 and not dest_is_dir:
            raise MinirunError(
                f"When using {instruction} with more than one source file, "
                "the destination must be a directory and end with a /"
            )
        if lowers:
            mount_overlay(mountpoint, lowers, upper, work)
            root = mountpoint
        else:
            root = upper
        fds = {r: os.open(r, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for r in sorted({s.root for s in chosen})}
        fd_dir = os.open("/proc/self/fd", _READ_DIR)  # the chroot leaves /proc behind (open_regular)
        os.chroot(root)
        os.chdir("/")
        os.umask(0o022)
        _Copier(fds, _owner(chown) if chown else None, fd_dir).copy(chosen, dest, dest_is_dir)

    in_private_mounts(copy, f"{instruction} failed")


def _sources_in(image: FromImage, instruction: str) -> list[Source]:
    """The sources of `COPY --from`, in the other image's root, mounted here (in the copy's own
    mount namespace) over an upper nothing writes to; an image with no layers is empty."""
    from minirun.runtime.overlay import mount_overlay

    root = os.path.join(image.scratch, "root")
    os.makedirs(root, exist_ok=True)
    if image.lowers:
        upper, work = os.path.join(image.scratch, "upper"), os.path.join(image.scratch, "work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        mount_overlay(root, image.lowers, upper, work)
    try:
        return collect_sources(root, image.words, instruction, False, image=image.name)
    except MinirunError as exc:  # in_private_mounts says "COPY failed" already
        raise MinirunError(exc.message.removeprefix(f"{instruction} failed: ")) from None


def _owner(spec: str) -> tuple[int, int]:
    """docker's --chown: `user[:group]`, names looked up in the image's /etc/passwd and
    /etc/group (we are chrooted into it), numbers taken as they are; no group means the user
    spec again, so `--chown=10` is 10:10 and `--chown=app` is user app, group app."""
    parts = spec.split(":")
    if len(parts) > 2 or not parts[0]:
        raise MinirunError(f"invalid chown string format: {spec}")
    user = parts[0]
    group = parts[1] if len(parts) == 2 and parts[1] else user
    return _lookup(user, "/etc/passwd", "uid", "user"), _lookup(group, "/etc/group", "gid", "group")


def _lookup(name: str, path: str, what: str, kind: str) -> int:
    if name.isdigit():
        return int(name)
    for line in _user_db(path).splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise MinirunError(
        f"unable to convert uid/gid chown string to host mapping: can't find {what} for {kind} "
        f"{name}: no such {kind}: {name}"
    )


def _user_db(path: str) -> str:
    """The image's /etc/passwd or /etc/group ("" if it cannot be opened), read by the builder
    outside any container (fsutil.read_user_db: no FIFO, no giant)."""
    from minirun.store.fsutil import read_user_db

    try:
        return read_user_db(path)
    except ValueError as exc:
        raise MinirunError(f"unable to convert uid/gid chown string to host mapping: {path} {exc}") from None


_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _Copier:
    """Copies sources into the image (this process is chrooted into its union). Below the
    destination every entry is made by one name in a dir held open, never by a whole path: a tree
    may nest dirs past PATH_MAX (and no /proc is mounted here to shorten a path through)."""

    def __init__(self, root_fds: dict[str, int], owner: tuple[int, int] | None, fd_dir: int | None = None) -> None:
        self.root_fds = root_fds
        self.fd_dir = fd_dir  # this process's /proc/self/fd, opened before the chroot
        self.owner = owner  # None: root's for context files, the archive's own for archives
        self.links: dict[tuple[int, int], str] = {}  # a hardlinked inode -> its first copy's path

    def copy(self, sources: list[Source], dest: str, dest_is_dir: bool) -> None:
        for source in sources:
            owner = self.owner or (None if source.preserve_owner else (0, 0))
            root_fd = self.root_fds[source.root]
            if source.is_dir:
                self._makedirs(dest)
                fd = _open_source(root_fd, source.rel, _READ_DIR)
                try:
                    self._tree(fd, dest, owner, source.preserve_owner, source.rel, source.excludes)
                finally:
                    os.close(fd)
                continue
            if dest_is_dir or os.path.isdir(dest):
                self._makedirs(dest)
                target = posixpath.join(dest, source.name)
            else:
                self._makedirs(posixpath.dirname(dest))
                target = dest
            source_dir, _, source_name = source.rel.rpartition("/")
            source_fd = _open_source(root_fd, source_dir, _READ_DIR)
            parent, _, name = target.rpartition("/")
            try:
                st = os.stat(source_name, dir_fd=source_fd, follow_symlinks=False)
                dir_fd = os.open(parent or "/", _READ_DIR)  # the path as the image resolves it, as docker's
                try:
                    self._file(source_fd, source_name, st, dir_fd, name, target, owner, False)
                finally:
                    os.close(dir_fd)
            finally:
                os.close(source_fd)

    def _makedirs(self, path: str) -> None:
        """Missing parents are made 0755 and given to the --chown owner (root by default); a
        parent that exists is left as it is."""
        current = "/"
        for part in [p for p in path.split("/") if p]:
            current = posixpath.join(current, part)
            if os.path.isdir(current):
                continue
            if os.path.lexists(current):
                raise MinirunError(f"mkdir {current}: not a directory")
            os.mkdir(current, 0o755)
            uid, gid = self.owner or (0, 0)
            os.chown(current, uid, gid)
            os.chmod(current, 0o755)

    def _tree(
        self,
        top: int,
        target_dir: str,
        owner: tuple[int, int] | None,
        xattrs: bool,
        rel: str,
        excludes: ContextFilter | None,
    ) -> None:
        """What the source dir open at `top` (`rel` in the context) holds, into the dir
        `target_dir`; a dir's own metadata after what it holds. Both sides are walked with stacks
        of dirs opened one name at a time (layer/dirchain.py), not by recursion."""
        dest_top = os.open(target_dir, _READ_DIR)  # the path as the image resolves it, as docker's
        source, dest = DirChain(top), DirChain(dest_top)
        # per dir: its entries yet to copy (last first), its path in the image and in the context,
        # and its lstat (for its metadata once it is done)
        known: dict[str, bool] = {}
        stack = [(_stacked(kept_entries(top, rel, excludes, known)), target_dir, rel, None)]
        try:
            while stack:
                entries, target_dir, rel, dir_st = stack[-1]
                if not entries:
                    stack.pop()
                    if dir_st is not None:
                        self._meta(dest.fd(), dir_st, owner, fd=source.fd() if xattrs else None)
                        source.leave()
                        dest.leave()
                    continue
                entry, st = entries.pop()
                name = entry.name
                target = posixpath.join(target_dir, name)
                if stat.S_ISDIR(st.st_mode):
                    if not self._clear(dest.fd(), name, keep_dir=True):
                        os.mkdir(name, 0o700, dir_fd=dest.fd())
                    below = source.enter(name)
                    dest.enter(name)
                    child_rel = _join(rel, name)
                    entries = kept_entries(below, child_rel, excludes, known)
                    stack.append((_stacked(entries), target, child_rel, st))
                else:
                    self._file(source.fd(), name, st, dest.fd(), name, target, owner, xattrs)
        finally:
            source.close()
            dest.close()
            os.close(dest_top)

    def _file(
        self, dir_fd: int, name: str, st: os.stat_result, dest_fd: int, dest: str, target: str, owner, xattrs: bool
    ) -> None:
        """Source `name` in `dir_fd` to `dest` in `dest_fd` (`target`: its path in the image)."""
        mode = st.st_mode
        if is_whiteout(st):
            return  # an overlay whiteout from an extracted archive: nothing to copy
        if stat.S_ISSOCK(mode):
            return  # tar cannot hold sockets; docker skips them too
        self._clear(dest_fd, dest, keep_dir=False)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            _link(self.links[key], dest_fd, dest)
            return
        if stat.S_ISREG(mode):
            self._regular(dir_fd, name, st, dest_fd, dest, owner, xattrs)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=dir_fd), dest, dir_fd=dest_fd)
            uid, gid = owner or (st.st_uid, st.st_gid)
            os.chown(dest, uid, gid, dir_fd=dest_fd, follow_symlinks=False)
            os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dest_fd, follow_symlinks=False)
        else:  # devices and fifos (the overlay is nodev: a device node never opens here)
            os.mknod(dest, mode, st.st_rdev, dir_fd=dest_fd)
            self._meta(dest, st, owner, dir_fd=dest_fd)
        if st.st_nlink > 1:
            self.links[key] = target

    def _regular(
        self, dir_fd: int, name: str, st: os.stat_result, dest_fd: int, dest: str, owner, xattrs: bool
    ) -> None:
        # a context dir a container shares may hold a FIFO, a device or a link by now, where the
        # walk's stat saw a file: never opened to read (_open_context_file)
        src = open_regular(dir_fd, name, self.fd_dir)
        if src is None:
            raise MinirunError(f"{name}: changed while it was being copied")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(dest, flags, 0o600, dir_fd=dest_fd)
            try:
                offset = 0
                while offset < st.st_size:
                    sent = os.sendfile(out, src, offset, min(st.st_size - offset, 1 << 30))
                    if sent == 0:
                        break  # the file shrank while we copied it
                    offset += sent
                self._meta(out, st, owner, fd=src if xattrs else None)
            finally:
                os.close(out)
        finally:
            os.close(src)

    def _meta(
        self, target: str | int, st: os.stat_result, owner, fd: int | None = None, dir_fd: int | None = None
    ) -> None:
        """Owner, mode, xattrs (of the source open at `fd`) and times of `target`: an open fd, or
        a name in `dir_fd`."""
        # chown before chmod: chown clears setuid/setgid bits; capabilities xattrs after chown too
        uid, gid = owner or (st.st_uid, st.st_gid)
        os.chown(target, uid, gid, dir_fd=dir_fd)
        os.chmod(target, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
        if fd is not None:
            for name in os.listxattr(fd):
                if not is_overlay_xattr(name):  # overlay's own xattrs never travel
                    os.setxattr(target, name, os.getxattr(fd, name))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd)

    @staticmethod
    def _clear(dir_fd: int, name: str, keep_dir: bool) -> bool:
        """Make room for a new entry `name` in `dir_fd`: whatever is there goes, except a real dir
        we merge into (then True)."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)
        elif keep_dir:
            return True
        else:
            from minirun.store.fsutil import remove_below

            remove_below(dir_fd, name)
        return False


def _link(path: str, dest_fd: int, dest: str) -> None:
    """A hardlink `dest` in `dest_fd` to `path` (a copy made before, in the image). Past PATH_MAX
    its dir is opened chunk by chunk: the first as the image resolves it, the rest below it with
    no symlink followed (the copy made them all dirs)."""
    parent, _, name = path.rpartition("/")
    cuts = cuts_of(parent) if len(path) >= SHORT else []
    if not cuts:
        os.link(path, dest, dst_dir_fd=dest_fd, follow_symlinks=False)
        return
    from minirun import linux

    fd = os.open(parent[: cuts[0]] or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for start, end in zip(cuts, [*cuts[1:], len(parent)]):
            rule = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
            below = linux.openat2(fd, parent[start + 1 : end], os.O_PATH | os.O_DIRECTORY, rule)
            os.close(fd)
            fd = below
        os.link(name, dest, src_dir_fd=fd, dst_dir_fd=dest_fd, follow_symlinks=False)
    finally:
        os.close(fd)
