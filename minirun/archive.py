"""Layer tars in: safe extraction into an empty layer dir, OCI whiteouts turned into overlay's form.

The layer dir starts empty and every path in it is created here, so `_Applier` knows the kind of
every entry it made. That is what makes the breakout checks complete without openat2 tricks: a
member may only pass through directories this layer itself created, never through a symlink.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from minirun.errors import BadArchive

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay reads these from lower dirs; a crafted one (redirect, metacopy, origin) could make the
# kernel serve a file from outside the layer, so they never come in from a tar.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_COPY_CHUNK = 1 << 20
_SMALL_FILE = 1 << 20  # written in one call; larger files stream through in chunks
_QUEUE_DEPTH = 64  # calls in flight: at most ~64 MiB of file data held in memory
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE)


@dataclass(frozen=True)
class AppliedLayer:
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of content, hardlinks counted once (docker's layer size)


class HashingReader(io.RawIOBase):
    """Reads through to `inner` and hashes every byte: the diff_id is the digest of the whole stream."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.hasher.update(data)
        self.count += n
        return n

    def drain(self) -> None:
        """Hash what the tar reader left unread (padding after the end-of-archive blocks)."""
        while True:
            data = self._inner.read(_COPY_CHUNK)
            if not data:
                return
            self.hasher.update(data)
            self.count += len(data)


def decompressed(stream: BinaryIO) -> BinaryIO:
    """The stream with gzip, zstd, xz or bzip2 removed, sniffed from its magic bytes."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    magic = buffered.peek(6)[:6]
    if magic[:2] == b"\x1f\x8b":
        import gzip

        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)  # type: ignore[return-value]
    if magic[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.LZMAFile(buffered)  # type: ignore[return-value]
    if magic[:3] == b"BZh":
        import bz2

        return bz2.BZ2File(buffered)  # type: ignore[return-value]
    return buffered  # type: ignore[return-value]


def apply_layer(stream: BinaryIO, dest: str | os.PathLike[str]) -> AppliedLayer:
    """Unpack a (possibly compressed) layer tar into the empty directory `dest`.

    Raises BadArchive for a corrupt stream or any member that would land outside `dest`; the
    caller owns `dest` and removes it then.
    """
    if os.listdir(dest):  # the breakout checks rely on knowing every entry: start from nothing
        raise ValueError(f"layer destination {os.fspath(dest)} is not empty")
    reader = HashingReader(decompressed(stream))
    applier = _Applier(os.fspath(dest))
    try:
        try:
            with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
                for member in tar:
                    applier.apply(member, tar)
            reader.drain()
        except BaseException:
            applier.io.abort()  # nothing may still be writing when the caller removes `dest`
            raise
        applier.finish()
    except BadArchive:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and not _is_stream_error(exc):
            raise
        raise BadArchive(f"invalid tar stream: {_describe(exc)}") from exc
    except Exception as exc:  # zlib.error, zstandard.ZstdError, lzma.LZMAError: corrupt compression
        if type(exc).__module__ in ("zlib", "zstandard", "_lzma", "lzma", "zstd"):
            raise BadArchive(f"invalid compressed stream: {_describe(exc)}") from exc
        raise
    return AppliedLayer(diff_id="sha256:" + reader.hasher.hexdigest(), size=applier.size)


def _is_stream_error(exc: OSError) -> bool:
    # gzip raises BadGzipFile (an OSError) for a corrupt stream; real I/O errors carry an errno.
    return exc.errno is None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def normalize_member_path(name: str) -> str:
    """`./a//b/` -> `a/b`; refuses absolute names and `..` (they would leave the layer)."""
    if name.startswith("/"):
        raise BadArchive(f"refusing absolute path in layer: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadArchive(f"refusing path with '..' in layer: {name!r}")
    return "/".join(parts)


@dataclass(frozen=True)
class Whiteout:
    """What an OCI whiteout member means for overlay: hide `target`, or make `target` opaque."""

    target: str
    opaque: bool


def parse_whiteout(path: str) -> Whiteout | None:
    """Map an OCI whiteout path to overlay's meaning; None for an ordinary path.

    `.wh..wh..opq` -> its directory is opaque; `.wh.NAME` -> NAME is hidden. Other `.wh..wh.*`
    names are aufs bookkeeping and ignored (docker does the same): returned as opaque=False with
    an empty target.
    """
    parent, _, base = path.rpartition("/")
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == WHITEOUT_OPAQUE:
        return Whiteout(target=parent, opaque=True)
    if base.startswith(WHITEOUT_META_PREFIX):
        return Whiteout(target="", opaque=False)
    hidden = base[len(WHITEOUT_PREFIX):]
    if hidden in ("", ".", ".."):
        raise BadArchive(f"refusing malformed whiteout in layer: {path!r}")
    return Whiteout(target=f"{parent}/{hidden}" if parent else hidden, opaque=False)


def member_xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    """The xattrs a member carries (PAX `SCHILY.xattr.*`, libarchive's `LIBARCHIVE.xattr.*`), minus overlay's."""
    found: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name, raw = key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            import base64
            from urllib.parse import unquote

            name = unquote(key[len("LIBARCHIVE.xattr."):])
            raw = base64.b64decode(value + "=" * (-len(value) % 4))
        else:
            continue
        if not name.startswith(FORBIDDEN_XATTR_PREFIXES):
            found[name] = raw
    return found


# The kinds of entry a layer dir holds, as _Applier records them.
_DIR, _OTHER, _SYMLINK, _WHITEOUT = "dir", "other", "symlink", "whiteout"


class _Applier:
    def __init__(self, root: str) -> None:
        self.root = root
        self.io = _Writer()
        self.big = _BigFile()
        self.kinds: dict[str, str] = {"": _DIR}
        self.explicit: set[str] = set()  # paths named by a member (implicit parents are not)
        self.opaque: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []
        self.size = 0

    # -- checks --------------------------------------------------------------------------
    def _claim(self, path: str, kind: str, original: str) -> bool:
        """Record `path` as created by this member; returns True when it already exists as an
        implicit directory (a dir member after its children, which only updates metadata)."""
        self._ensure_parents(path, original)
        existing = self.kinds.get(path)
        if existing is not None:
            if existing == _DIR and kind == _DIR and path not in self.explicit:
                self.explicit.add(path)
                return True
            raise BadArchive(f"refusing duplicate path in layer: {original!r}")
        self.kinds[path] = kind
        self.explicit.add(path)
        return False

    def _ensure_parents(self, path: str, original: str) -> None:
        parent = path.rpartition("/")[0]
        if self.kinds.get(parent) == _DIR:
            return
        prefix = ""
        for part in parent.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            kind = self.kinds.get(prefix)
            if kind is None:
                self.io(os.mkdir, self._host(prefix), 0o755)
                self.kinds[prefix] = _DIR
            elif kind != _DIR:
                raise BadArchive(f"refusing path through a {kind} in layer: {original!r}")

    def _host(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    # -- members -------------------------------------------------------------------------
    # Checks and bookkeeping happen here, in order; every filesystem call goes through
    # self.io, which runs it on the writer thread (see _Writer).
    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        path = normalize_member_path(member.name)
        whiteout = parse_whiteout(path)
        if whiteout is not None:
            self._whiteout(whiteout, member)
        elif path == "":
            if not member.isdir():
                raise BadArchive(f"refusing non-directory layer root: {member.name!r}")
            self._meta(self.root, member, is_dir=True)
        elif member.type in _FILE_TYPES:
            self._claim(path, _OTHER, member.name)
            self._file(path, member, tar)
        elif member.isdir():
            if not self._claim(path, _DIR, member.name):
                self.io(os.mkdir, self._host(path), 0o700)
            self._meta(self._host(path), member, is_dir=True)
        elif member.issym():
            self._claim(path, _SYMLINK, member.name)
            self.io(os.symlink, member.linkname, self._host(path))
            self._meta(self._host(path), member, symlink=True)
            self.size += len(os.fsencode(member.linkname))
        elif member.islnk():
            self._hardlink(path, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._claim(path, _OTHER, member.name)
            self._node(path, member)
        else:
            raise BadArchive(f"refusing unsupported member type {member.type!r}: {member.name!r}")

    def _whiteout(self, whiteout: Whiteout, member: tarfile.TarInfo) -> None:
        if not whiteout.target and not whiteout.opaque:
            return  # aufs metadata
        if whiteout.opaque:
            if whiteout.target in self.opaque:
                raise BadArchive(f"refusing duplicate opaque marker in layer: {member.name!r}")
            kind = self.kinds.get(whiteout.target)
            if kind is None:
                self._claim(whiteout.target, _DIR, member.name)
                self.explicit.discard(whiteout.target)  # the dir's own member may still follow
                self.io(os.mkdir, self._host(whiteout.target), 0o755)
            elif kind != _DIR:
                raise BadArchive(f"refusing opaque marker under a {kind}: {member.name!r}")
            self.io(_set_xattr, self._host(whiteout.target), OPAQUE_XATTR, b"y", member.name)
            self.opaque.add(whiteout.target)
            return
        self._claim(whiteout.target, _WHITEOUT, member.name)
        self.io(_make_whiteout, self._host(whiteout.target), member.uid, member.gid)

    def _file(self, path: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        host, meta = self._host(path), _Meta.of(member)
        source = tar.extractfile(member) if member.size else None
        if member.size <= _SMALL_FILE:
            data = source.read(member.size) if source is not None else b""
            if len(data) != member.size:
                raise BadArchive(f"unexpected end of data in {member.name!r}")
            self.io(_write_file, host, [data], meta)
        else:  # streamed in chunks, so a large file never sits whole in memory
            self.io(self.big.open, host)
            remaining = member.size
            while remaining:
                chunk = source.read(min(_COPY_CHUNK, remaining))  # type: ignore[union-attr]
                if not chunk:
                    raise BadArchive(f"unexpected end of data in {member.name!r}")
                self.io(self.big.write, chunk)
                remaining -= len(chunk)
            self.io(self.big.close, meta)
        self.size += member.size

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        target = normalize_member_path(member.linkname)
        kind = self.kinds.get(target)
        if kind is None or target not in self.explicit:
            raise BadArchive(f"refusing hardlink to a path outside the layer: {member.name!r} -> {member.linkname!r}")
        if kind in (_DIR, _WHITEOUT):
            raise BadArchive(f"refusing hardlink to a {kind}: {member.name!r} -> {member.linkname!r}")
        self._claim(path, kind, member.name)
        self.io(_hardlink, self._host(target), self._host(path))

    def _node(self, path: str, member: tarfile.TarInfo) -> None:
        host = self._host(path)
        if member.isfifo():
            self.io(os.mkfifo, host, 0o600)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            self.io(os.mknod, host, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        self._meta(host, member)

    def _meta(self, target: str, member: tarfile.TarInfo, is_dir: bool = False, symlink: bool = False) -> None:
        meta = _Meta.of(member)
        if is_dir:
            # Creating children would bump a directory's mtime: set it once everything is in.
            self.dir_times.append((target, meta.mtime_ns))
            meta = meta._replace(mtime_ns=None)
        self.io(_apply_meta, target, meta, symlink)

    def finish(self) -> None:
        self.io.close()
        for path, mtime_ns in reversed(self.dir_times):
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


class _Meta(NamedTuple):
    uid: int
    gid: int
    mode: int
    xattrs: dict
    mtime_ns: int | None
    name: str

    @classmethod
    def of(cls, member: tarfile.TarInfo) -> "_Meta":
        return cls(member.uid, member.gid, stat.S_IMODE(member.mode), member_xattrs(member),
                   int(member.mtime * 1_000_000_000), member.name)


# -- the filesystem calls, run on the writer thread -------------------------------------------

def _apply_meta(target: str | int, meta: _Meta, symlink: bool = False) -> None:
    # chown first: it clears setuid/setgid bits and file capabilities.
    follow = not symlink
    if isinstance(target, int):
        os.fchown(target, meta.uid, meta.gid)
        os.fchmod(target, meta.mode)
    else:
        os.chown(target, meta.uid, meta.gid, follow_symlinks=follow)
        if not symlink:
            os.chmod(target, meta.mode)
    for name, value in meta.xattrs.items():
        _set_xattr(target, name, value, meta.name, follow)
    if meta.mtime_ns is not None:
        os.utime(target, ns=(meta.mtime_ns, meta.mtime_ns), follow_symlinks=follow)


def _set_xattr(target: str | int, name: str, value: bytes, member_name: str, follow: bool = False) -> None:
    try:
        os.setxattr(target, name, value, follow_symlinks=follow if not isinstance(target, int) else True)
    except OSError as exc:
        # EOPNOTSUPP: a namespace this filesystem lacks; EPERM: user.* on a symlink,
        # which Linux forbids (docker skips both)
        if exc.errno not in (95, 1):
            raise BadArchive(f"cannot set xattr {name} on {member_name!r}: {exc.strerror}") from exc


def _make_whiteout(host: str, uid: int, gid: int) -> None:
    os.mknod(host, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.chown(host, uid, gid, follow_symlinks=False)


def _hardlink(target: str, path: str) -> None:
    os.link(target, path, follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_file(host: str, chunks: list[bytes], meta: _Meta) -> None:
    fd = os.open(host, _CREATE_FLAGS, 0o600)
    try:
        for chunk in chunks:
            _write_all(fd, chunk)
        _apply_meta(fd, meta)
    finally:
        os.close(fd)


class _BigFile:
    """The one large file being written, chunk by chunk (ops run in order, so one at a time)."""

    fd = -1

    def open(self, host: str) -> None:
        self.fd = os.open(host, _CREATE_FLAGS, 0o600)

    def write(self, chunk: bytes) -> None:
        _write_all(self.fd, chunk)

    def close(self, meta: _Meta) -> None:
        try:
            _apply_meta(self.fd, meta)
        finally:
            os.close(self.fd)
            self.fd = -1


class _Writer:
    """Runs filesystem calls in order on a second thread. They release the GIL, so the kernel's
    part of an unpack (inode creation dominates: ~1 ms a file on ext4 here) overlaps the tar
    parsing in the caller's thread instead of following it. The first error stops the work and
    is raised to the caller at its next call or at close()."""

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: "queue.Queue" = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="layer-writer", daemon=True)
        self._thread.start()

    def __call__(self, fn, *args) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as exc:
                    self._error = exc

    def abort(self) -> None:
        """Stop after the call in progress; queued calls are dropped, errors ignored."""
        if self._error is None:
            self._error = BadArchive("aborted")
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
            except Exception:  # queue.Full: the thread is still draining
                continue
            self._thread.join()

    def close(self) -> None:
        """Wait for every queued call; raise the first error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
