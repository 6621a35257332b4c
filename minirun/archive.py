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
from typing import BinaryIO

from minirun.errors import BadArchive

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay reads these from lower dirs; a crafted one (redirect, metacopy, origin) could make the
# kernel serve a file from outside the layer, so they never come in from a tar.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_COPY_CHUNK = 1 << 20
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
    applier = _Applier(os.fspath(dest))
    try:
        if _is_plain_file(stream):
            diff_id = _apply_seekable(stream, applier)
        else:
            reader = HashingReader(decompressed(stream))
            with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
                for member in tar:
                    applier.apply(member, tar)
            reader.drain()
            diff_id = "sha256:" + reader.hasher.hexdigest()
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
    applier.finish()
    return AppliedLayer(diff_id=diff_id, size=applier.size)


def _is_plain_file(stream: BinaryIO) -> bool:
    """A regular, uncompressed file: it can be read twice, at random."""
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return False
        position = stream.tell()
        magic = stream.read(6)
        stream.seek(position)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    return not magic.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh"))


def _apply_seekable(stream: BinaryIO, applier: "_Applier") -> str:
    """A regular file is read twice at once: tarfile seeks through it (no stream buffering, the
    costliest part of tarfile's streaming mode) while a thread hashes it from a second file
    description; hashlib releases the GIL on large buffers, so the hash runs on the other core."""
    import threading

    start = stream.tell()
    digest: list[str] = []
    failure: list[BaseException] = []

    def hash_file() -> None:
        try:
            with open(f"/proc/self/fd/{stream.fileno()}", "rb", buffering=0) as again:
                again.seek(start)
                hasher = hashlib.sha256()
                buffer = bytearray(_COPY_CHUNK)
                view = memoryview(buffer)
                while n := again.readinto(buffer):
                    hasher.update(view[:n])
                digest.append("sha256:" + hasher.hexdigest())
        except BaseException as exc:
            failure.append(exc)

    hashing = threading.Thread(target=hash_file, name="layer-hash", daemon=True)
    hashing.start()
    try:
        with tarfile.open(fileobj=stream, mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
            for member in tar:
                applier.apply(member, tar)
    finally:
        hashing.join()
    if failure:
        raise failure[0]
    return digest[0]


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
                os.mkdir(self._host(prefix), 0o755)
                self.kinds[prefix] = _DIR
            elif kind != _DIR:
                raise BadArchive(f"refusing path through a {kind} in layer: {original!r}")

    def _host(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    # -- members -------------------------------------------------------------------------
    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        path = normalize_member_path(member.name)
        whiteout = parse_whiteout(path)
        if whiteout is not None:
            self._whiteout(whiteout, member)
        elif path == "":
            if not member.isdir():
                raise BadArchive(f"refusing non-directory layer root: {member.name!r}")
            self._set_meta(self.root, member, is_dir=True)
        elif member.type in _FILE_TYPES:
            self._claim(path, _OTHER, member.name)
            self._file(path, member, tar)
        elif member.isdir():
            if not self._claim(path, _DIR, member.name):
                os.mkdir(self._host(path), 0o700)
            self._set_meta(self._host(path), member, is_dir=True)
        elif member.issym():
            self._claim(path, _SYMLINK, member.name)
            os.symlink(member.linkname, self._host(path))
            self._set_meta(self._host(path), member, symlink=True)
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
                os.mkdir(self._host(whiteout.target), 0o755)
            elif kind != _DIR:
                raise BadArchive(f"refusing opaque marker under a {kind}: {member.name!r}")
            os.setxattr(self._host(whiteout.target), OPAQUE_XATTR, b"y", follow_symlinks=False)
            self.opaque.add(whiteout.target)
            return
        self._claim(whiteout.target, _WHITEOUT, member.name)
        host = self._host(whiteout.target)
        os.mknod(host, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        os.chown(host, member.uid, member.gid, follow_symlinks=False)

    def _file(self, path: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        fd = os.open(self._host(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if member.size:
                source = tar.extractfile(member)
                assert source is not None
                remaining = member.size
                while remaining:
                    chunk = source.read(min(_COPY_CHUNK, remaining))
                    if not chunk:
                        raise BadArchive(f"unexpected end of data in {member.name!r}")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    remaining -= len(chunk)
            self._set_meta(fd, member)
        finally:
            os.close(fd)
        self.size += member.size

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        target = normalize_member_path(member.linkname)
        kind = self.kinds.get(target)
        if kind is None or target not in self.explicit:
            raise BadArchive(f"refusing hardlink to a path outside the layer: {member.name!r} -> {member.linkname!r}")
        if kind in (_DIR, _WHITEOUT):
            raise BadArchive(f"refusing hardlink to a {kind}: {member.name!r} -> {member.linkname!r}")
        self._claim(path, kind, member.name)
        os.link(self._host(target), self._host(path), follow_symlinks=False)

    def _node(self, path: str, member: tarfile.TarInfo) -> None:
        host = self._host(path)
        if member.isfifo():
            os.mkfifo(host, 0o600)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(host, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        self._set_meta(host, member)

    def _set_meta(self, target: str | int, member: tarfile.TarInfo, is_dir: bool = False, symlink: bool = False) -> None:
        # chown first: it clears setuid/setgid bits and file capabilities.
        follow = not symlink
        if isinstance(target, int):
            os.fchown(target, member.uid, member.gid)
        else:
            os.chown(target, member.uid, member.gid, follow_symlinks=follow)
        if not symlink:
            if isinstance(target, int):
                os.fchmod(target, stat.S_IMODE(member.mode))
            else:
                os.chmod(target, stat.S_IMODE(member.mode))
        for name, value in member_xattrs(member).items():
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                # EOPNOTSUPP: a namespace this filesystem lacks; EPERM: user.* on a symlink,
                # which Linux forbids (docker skips both)
                if exc.errno not in (95, 1):
                    raise BadArchive(f"cannot set xattr {name} on {member.name!r}: {exc.strerror}") from exc
        mtime_ns = int(member.mtime * 1_000_000_000)
        if is_dir:
            # Creating children would bump a directory's mtime: set it once everything is in.
            self.dir_times.append((target, mtime_ns))  # type: ignore[arg-type]
        else:
            os.utime(target, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)

    def finish(self) -> None:
        for path, mtime_ns in reversed(self.dir_times):
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
