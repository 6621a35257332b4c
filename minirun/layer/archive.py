"""Layer tars in: safe extraction into an empty layer dir, OCI whiteouts turned into overlay's form.

The layer dir starts empty and every path in it is created here, so `_Applier` knows the kind of
every entry it made. That is what makes the breakout checks complete without openat2 tricks: a
member may only pass through directories this layer itself created, never through a symlink.

Headers are read by `minirun.layer.tarheaders` (strict, and several times cheaper than tarfile); what
it does not handle (sparse files, PAX global headers, rare types) is left to tarfile from that
member on. Every byte of the tar is read once, and the bytes applied are the bytes hashed for the
diff_id: a regular uncompressed file by pread (headers parsed, contents written, both handed to
a hashing thread), anything else (pipes, compressed streams) in order through `HashingReader`.
Reading twice would let a file rewritten meanwhile store a layer under a digest it does not have.

The creates themselves go to a forked writer when the process may fork one (see
minirun.layer.filewriter) and the caller wants one: the applier decides each one, in order, and
the writer makes it on another core. A regular file is then read in place where a read lease can
be had (minirun.layer.leasedmap): mapped before the fork, parsed here, hashed whole on a thread of
its own and written by the writer straight from the mapping, nothing copied (`_MappedSource`);
the lease shows that the bytes never changed meanwhile. Without a lease (the file is open for
writing elsewhere) it is read in 1 MiB windows into the writer's shared ring (`_RingSource`), each
window hashed here as it arrives. When the writer lags, the applier makes the next file itself.
Either way the checks, the order of the creates and the errors are the applier's. A caller that
wants no writer (its cores are busy) gets the same mapping, written from by the applier.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from minirun.errors import BadArchive
from minirun.layer.compression import (
    MAGIC_SIZE,
    corrupt,
    decompressed,
    is_bad_data,
    is_compressed,
    is_decompressor_error,
)
from minirun.layer.filewriter import NO_CHANGE, FileWriter, WriterFailed, can_fork, set_xattrs
from minirun.layer.longpaths import SHORT, ShortPaths
from minirun.layer.tarheaders import HeaderReader, TarMember, Unsupported, open_tarfile, pax_xattrs
from minirun.layer.whiteouts import (
    WHITEOUT_PREFIX,
    Whiteout,
    is_overlay_xattr,
    make_opaque,
    make_whiteout,
    parse_whiteout,
)
from minirun.records import Record

if TYPE_CHECKING:
    import tarfile

    from minirun.layer.leasedmap import LeasedMap

# Set on a directory, it overrides the modes of everything later created inside (see _DirState).
DEFAULT_ACL_XATTR = "system.posix_acl_default"

_COPY_CHUNK = 1 << 20  # no more than tarheaders.MAX_EXTENDED: TarfileInput refuses larger reads
_STREAM_BUFFER = 1 << 17
_WINDOW = 1 << 20  # bytes of a regular file read at once into a writer's ring
# Member types (tarfile's constants, without importing tarfile on the common path).
_REGTYPE, _AREGTYPE, _CONTTYPE, _SPARSETYPE = b"0", b"\0", b"7", b"S"
_LNKTYPE, _SYMTYPE, _CHRTYPE, _BLKTYPE, _DIRTYPE, _FIFOTYPE = b"1", b"2", b"3", b"4", b"5", b"6"
_FILE_TYPES = (_REGTYPE, _AREGTYPE, _CONTTYPE, _SPARSETYPE)  # S: only ever from tarfile
_NODE_TYPES = (_CHRTYPE, _BLKTYPE, _FIFOTYPE)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class AppliedLayer(Record):
    diff_id: str  # "sha256:<hex>" of the uncompressed tar stream
    size: int  # bytes of content, hardlinks counted once (docker's layer size)
    tar_size: int  # bytes of the uncompressed tar
    DEFAULTS = {"tar_size": 0}


class HashingReader(io.RawIOBase):
    """Reads through to `inner` and hashes every byte: the diff_id is the digest of the whole stream."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
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


def apply_layer(
    stream: BinaryIO,
    dest: str | os.PathLike[str],
    length: int | None = None,
    split_path: str | None = None,
    fork_writer: bool = True,
) -> AppliedLayer:
    """Unpack a (possibly compressed) layer tar into the empty directory `dest`.

    `length`: the tar is the next `length` bytes of `stream` (a layer inside a bigger archive),
    not all that is left. `split_path`: where to record the tar's split (tarsplit.py), so the
    exact tar can be rebuilt later.

    Raises BadArchive for a corrupt stream or any member that would land outside `dest`; the
    caller owns `dest` and removes it then.

    The process umask is 0 while any layer is being applied (so that files are created with
    their exact modes, sparing a chmod each), and restored when the last one ends, also on
    error; layers may be applied from several threads at once. Nothing else in minirun creates
    files meanwhile: a layer is applied by a command doing nothing else.

    A process that runs no other thread and may use two CPUs leaves the creates to a forked
    writer (minirun.layer.filewriter), which works beside it on the other core. `fork_writer`
    False keeps them here (a caller whose cores are busy already: load's workers); a plain file
    is still read in place, mapped under its lease.
    """
    if os.listdir(dest):  # the breakout checks rely on knowing every entry: start from nothing
        raise ValueError(f"layer destination {os.fspath(dest)} is not empty")
    from minirun.layer.tarsplit import SplitWriter

    split = SplitWriter(split_path) if split_path else _NoSplit()
    _umask_zero.enter()
    writer = None
    mapped = None
    applier = None
    try:
        plain = _is_plain_file(stream)
        if can_fork():  # after umask 0: the writer inherits it
            if plain:  # mapped before the fork: the writer (or the applier) writes from it
                mapped = _leased_map(stream, length)
            if fork_writer:
                try:
                    writer = FileWriter(source=mapped.view if mapped is not None else None)
                except OSError:  # no process to be had: the creates happen here, as they always could
                    writer = None
        applier = _Applier(os.fspath(dest), writer)
        try:
            try:
                if plain:
                    diff_id, tar_size = _apply_seekable(stream, applier, split, length, mapped)
                else:
                    if length is not None:
                        stream = _Window(stream, length)  # type: ignore[assignment]
                    diff_id, tar_size = _apply_streaming(stream, applier, split)
            except WriterFailed:
                raise
            except Exception:
                # A create queued before this failure may have failed first: that one is reported.
                earlier = writer.reported() if writer is not None else None
                if earlier is not None:
                    raise earlier from None
                raise
        except WriterFailed as failure:
            raise failure.exception() from None
        except BadArchive:
            raise
        except Exception as exc:
            if is_decompressor_error(exc):
                raise corrupt(exc) from exc
            if is_bad_data(exc):  # cut short, or headers the tar readers could not take
                raise BadArchive(f"invalid tar stream: {_describe(exc)}") from exc
            raise
        applier.finish()
        if mapped is not None:
            _check_intact(mapped, stream)  # after the writer's last byte
        recorded = split.close()
    except BaseException:
        split.abort()
        raise
    finally:
        if writer is not None:
            writer.stop()
        if mapped is not None:
            mapped.close()
        if applier is not None:
            applier.close()
        _umask_zero.leave()
    if recorded not in (None, tar_size):
        raise BadArchive(f"layer tar recorded as {recorded} bytes, read {tar_size}")
    return AppliedLayer(diff_id=diff_id, size=applier.size, tar_size=tar_size)


class _UmaskZero:
    """umask 0 while at least one thread applies a layer; the first sets it, the last restores."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0

    def enter(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = os.umask(0)
            self._users += 1

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                os.umask(self._saved)


_umask_zero = _UmaskZero()


class _NoSplit:
    """Stands in for SplitWriter when nobody asked for a split."""

    total = 0

    def raw(self, data: bytes) -> None:
        pass

    def content(self, size: int, path: str) -> None:
        pass

    def close(self) -> None:
        return None

    def abort(self) -> None:
        pass


class _Window(io.RawIOBase):
    """The next `length` bytes of a stream, and then EOF."""

    def __init__(self, inner: BinaryIO, length: int) -> None:
        self._inner = inner
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if not self._left:
            return 0
        data = self._inner.read(min(len(buf), self._left))
        n = len(data)
        buf[:n] = data
        self._left -= n
        return n


def _is_plain_file(stream: BinaryIO) -> bool:
    """A regular, uncompressed file: it can be read twice, at random."""
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return False
        position = stream.tell()
        magic = stream.read(MAGIC_SIZE)
        stream.seek(position)
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    return not is_compressed(magic)


def _leased_map(stream: BinaryIO, length: int | None) -> LeasedMap | None:
    """The rest of a plain file (or its next `length` bytes) mapped under a read lease, or None."""
    from minirun.layer.leasedmap import LeasedMap

    fd = stream.fileno()
    start = stream.tell()
    size = os.fstat(fd).st_size - start if length is None else length
    return LeasedMap.take(fd, start, size)


def _check_intact(mapped: LeasedMap, stream: BinaryIO) -> None:
    if not mapped.intact():
        name = getattr(stream, "name", "the tar")
        if isinstance(name, int):  # opened from a descriptor (os.fdopen): its path is the file's name
            name = os.readlink(f"/proc/self/fd/{name}")
        raise BadArchive(f"{name} was opened for writing while it was read: read it again when it is written")


def _apply_seekable(
    stream: BinaryIO, applier: _Applier, split, length: int | None, mapped: LeasedMap | None = None
) -> tuple[str, int]:
    """A regular file, read at random: headers by pread, contents pread and written. Every byte
    is read once, and that very byte is applied, recorded and hashed (on a thread: hashlib
    releases the GIL on large buffers), so a file rewritten while it is applied can never get
    a layer stored under a digest its contents do not have. Returns the diff_id and the length.

    With `mapped` (the same bytes under a read lease) nothing is copied: the writer writes from
    the mapping, and the lease shows that the file never changed (see minirun.layer.leasedmap)."""
    fd = stream.fileno()
    start = stream.tell()
    end = os.fstat(fd).st_size if length is None else start + length
    source: _FileSource | _RingSource
    hasher: _ThreadedHash | _InlineHash | _MappedHash
    if mapped is not None:
        hasher = _MappedHash(mapped, end - start)
        source = _MappedSource(mapped, stream, end, split, applier.writer, start)
    elif applier.writer is not None:
        # This process has time to hash: a thread of its own would only add GIL handovers.
        inline = _InlineHash()
        hasher = inline
        source = _RingSource(fd, end, split, inline, applier.writer, start)
    else:
        hasher = _ThreadedHash()
        source = _FileSource(fd, end, _Recorder(split, hasher), start)
    try:
        try:
            for member in HeaderReader(source, start):
                applier.apply(member, source)
        except Unsupported as rest:
            with _tarfile_errors():
                with open_tarfile(source.replay_from(rest.start), rest.start) as tar:
                    _apply_with_tarfile(tar, applier)
        source.record_to(end)  # the end blocks and whatever padding follows belong to the tar
    except BaseException:
        if isinstance(hasher, _MappedHash):
            hasher.abandon()
        raise
    finally:
        digest = hasher.finish()
    stream.seek(end)
    return digest, end - start


class _ThreadedHash:
    """sha256 on a thread, fed in order through a bounded queue (the reader never runs far ahead)."""

    _BATCH = 1 << 16  # small pieces (headers) are joined: hashlib keeps the GIL below 2 KiB

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._pending = bytearray()
        self._hasher = hashlib.sha256()
        self._thread = threading.Thread(target=self._run, name="layer-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hasher.update(data)

    def update(self, data: bytes) -> None:
        if len(data) >= self._BATCH:
            self._flush()
            self._queue.put(data)
            return
        self._pending += data
        if len(self._pending) >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()

    def finish(self) -> str:
        self._flush()
        self._queue.put(None)
        self._thread.join()
        return "sha256:" + self._hasher.hexdigest()


class _MappedHash:
    """sha256 of a mapped tar on a thread of its own, start to end, apart from the parsing: the
    bytes stay as they are (the lease), so nothing needs hashing in step. Pieces are large, as
    hashlib lets go of the GIL while it hashes one and the thread waits for it between two."""

    _PIECE = 64 << 20

    def __init__(self, mapped: LeasedMap, size: int) -> None:
        import threading

        self._mapped, self._size = mapped, min(size, len(mapped.view))  # a shorter file fails the parse
        self._hasher = hashlib.sha256()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="layer-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        view = self._mapped.view
        try:
            for at in range(0, self._size, self._PIECE):
                if self._stop or not self._mapped.intact():  # a truncate could follow: read no further
                    return
                self._hasher.update(view[at : min(at + self._PIECE, self._size)])
        except ValueError:  # the view released: only after finish() was cut short (a signal's exit)
            return

    def abandon(self) -> None:
        """The layer failed: the rest of its hash is not needed."""
        self._stop = True

    def finish(self) -> str:
        self._thread.join()
        return "sha256:" + self._hasher.hexdigest()


class _InlineHash:
    """_ThreadedHash's interface, hashing in the calling thread."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self.update = self._hasher.update

    def finish(self) -> str:
        return "sha256:" + self._hasher.hexdigest()


class _Recorder:
    """Where the file path's bytes go: all of them to the hash; to the split verbatim, except a
    file's contents, which it records as a reference."""

    def __init__(self, split, hasher: _ThreadedHash | _InlineHash) -> None:
        self.split, self.hasher = split, hasher

    def raw(self, data: bytes) -> None:
        self.split.raw(data)
        self.hasher.update(data)

    def contents(self, data: bytes | memoryview) -> None:
        # A view of the writer's ring only ever goes to an _InlineHash, which is done with it at once.
        self.hasher.update(data)  # type: ignore[arg-type]

    def content(self, size: int, path: str) -> None:
        self.split.content(size, path)


def _apply_streaming(stream: BinaryIO, applier: _Applier, split) -> tuple[str, int]:
    """Pipes and compressed streams: read once, in order, every byte hashed on the way."""
    reader = HashingReader(decompressed(stream))
    source = _StreamSource(io.BufferedReader(reader, _STREAM_BUFFER), split)
    try:
        for member in HeaderReader(source, 0):
            applier.apply(member, source)
    except Unsupported as rest:
        with _tarfile_errors():
            with open_tarfile(source.replay_from(rest.start), rest.start) as tar:
                _apply_with_tarfile(tar, applier)
    source.drain()  # the end blocks and whatever padding follows belong to the tar (and its digest)
    reader.drain()
    return "sha256:" + reader.hasher.hexdigest(), reader.count


class _FileSource:
    """A regular file read at random, each byte once, in order: headers and padding by pread,
    contents pread and written to their file (for small files, cheaper than copy_file_range)."""

    def __init__(self, fd: int, end: int, recorder: _Recorder, start: int) -> None:
        self.fd = fd
        self.end = end
        self.recorder = recorder
        self.recorded = start  # bytes before this offset went to the recorder
        self.member_start = start
        self.member_bytes = bytearray()  # the current member's header blocks, as read

    def begin_member(self, offset: int) -> None:
        self.member_start = offset
        self.member_bytes = bytearray()

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.end - offset))
        if not size:
            return b""
        if offset < self.recorded:
            raise BadArchive(f"invalid tar stream: header at offset {offset} read twice")
        # Padding or skipped data since the last recorded byte comes along in the same pread.
        first = self.recorded
        data = self._pread(first, offset + size - first)
        self.recorder.raw(data)
        self.recorded = first + len(data)
        if offset == self.member_start + len(self.member_bytes):
            self.member_bytes += data[offset - first :]
        return data[offset - first :]

    def _pread(self, offset: int, size: int) -> bytes:
        data = os.pread(self.fd, size, offset)
        while 0 < len(data) < size:  # short only at the end of the file
            more = os.pread(self.fd, size - len(data), offset + len(data))
            if not more:
                break
            data += more
        return data

    def record_to(self, offset: int) -> None:
        """Read (and record) up to `offset`: padding, skipped data, the end blocks."""
        while self.recorded < offset:
            data = os.pread(self.fd, min(_COPY_CHUNK, offset - self.recorded), self.recorded)
            if not data:
                raise BadArchive(f"unexpected end of data at offset {self.recorded}")
            self.recorder.raw(data)
            self.recorded += len(data)

    def copy(self, out: int, member: TarMember, path: str) -> None:
        offset, left = member.offset, member.size
        if offset + left > self.end:
            raise BadArchive(f"unexpected end of data in {member.name!r}")
        self.record_to(offset)
        self.recorder.content(left, path)
        while left:
            data = os.pread(self.fd, min(left, _COPY_CHUNK), offset)
            if not data:  # the file shrank under us
                raise BadArchive(f"unexpected end of data in {member.name!r}")
            _write_all(out, data)
            self.recorder.contents(data)
            offset += len(data)
            left -= len(data)
        self.recorded = offset

    def replay_from(self, start: int) -> BinaryIO:
        """For tarfile, from the unsupported member on: its header blocks as they were read
        (never read twice: those are the bytes hashed), then the rest, recorded as it goes."""
        if start != self.member_start or start + len(self.member_bytes) != self.recorded:
            raise BadArchive(f"invalid tar stream: cannot resume at offset {start}")
        return _Replay(bytes(self.member_bytes), self)  # type: ignore[return-value]

    def readinto(self, buf) -> int:
        """The bytes after the last recorded one (what tarfile reads through replay_from)."""
        view = memoryview(buf)
        count = min(len(view), self.end - self.recorded)
        if count <= 0:
            return 0
        n = os.preadv(self.fd, [view[:count]], self.recorded)
        self.recorder.raw(bytes(view[:n]))
        self.recorded += n
        return n


class _RingSource:
    """A regular file read for a writer: in windows of _WINDOW bytes straight into its ring, each
    window hashed whole as it arrives, in order. Headers are parsed from the ring and recorded
    verbatim; contents never leave it: the writer writes them from there. Every byte is read
    once, and the bytes hashed are the bytes parsed and written."""

    def __init__(self, fd: int, end: int, split, hasher: _InlineHash, writer: FileWriter, start: int) -> None:
        self.fd, self.end, self.split, self.hasher = fd, end, split, hasher
        self.writer: FileWriter | None = writer  # None once tarfile reads the rest
        self.pos = start  # the bytes before are recorded, or handed to the writer
        self.window = memoryview(b"")  # the file's bytes from window_start, in the ring
        self.window_start = start
        self.window_offset = 0  # the ring offset of window[0]
        self.member_start = start
        self.member_bytes = bytearray()  # the current member's header blocks, as read

    def _load(self) -> None:
        """The next window, from `pos` on."""
        size = min(_WINDOW, self.end - self.pos)
        if size <= 0:
            raise BadArchive(f"unexpected end of data at offset {self.pos}")
        if self.writer is not None:
            room = self.writer.room(size)  # the writer is done with the windows before, or told of them
            self.window_offset = self.writer.room_offset
        else:
            room = memoryview(bytearray(size))
        count = os.preadv(self.fd, [room], self.pos)
        if not count:  # the file shrank under us
            raise BadArchive(f"unexpected end of data at offset {self.pos}")
        if self.writer is not None:
            self.writer.filled(count)
        self.window = room[:count]
        self.window_start = self.pos
        self.hasher.update(self.window)

    def _raw(self, until: int, keep: bool) -> bytes:
        """Record the bytes up to `until` verbatim (headers, padding); returns them if `keep`."""
        kept = []
        while self.pos < until:
            at = self.pos - self.window_start
            if at >= len(self.window):
                self._load()
                at = 0
            piece = self.window[at : at + until - self.pos].tobytes()
            self.split.raw(piece)
            if keep:
                kept.append(piece)
            self.pos += len(piece)
        return b"".join(kept)

    def begin_member(self, offset: int) -> None:
        self.member_start = offset
        self.member_bytes = bytearray()

    def read_at(self, offset: int, size: int) -> bytes:
        first = self.pos - self.window_start
        stop = offset + size - self.window_start
        if self.pos <= offset and stop <= len(self.window):  # the common case: all in this window
            piece = self.window[first:stop].tobytes()  # the padding since the last data, then the header
            self.split.raw(piece)
            data = piece[offset - self.pos :]
            self.pos = offset + size
        else:
            size = max(0, min(size, self.end - offset))
            if not size:
                return b""
            if offset < self.pos:
                raise BadArchive(f"invalid tar stream: header at offset {offset} read twice")
            self._raw(offset, keep=False)  # padding since the last member's data
            data = self._raw(offset + size, keep=True)
        if offset == self.member_start + len(self.member_bytes):
            self.member_bytes += data
        return data

    def record_to(self, offset: int) -> None:
        """Read (and record) up to `offset`: padding, the end blocks."""
        self._raw(offset, keep=False)
        self.window = memoryview(b"")  # the ring goes with the writer

    def fill(self, writer: FileWriter, member: TarMember, path: str) -> None:
        """A file's contents: recorded as a reference, handed to the writer as ring ranges."""
        for at, count in self._contents(member, path):
            writer.write(self.window_offset + at, self.window_offset + at + count)

    def copy(self, out: int, member: TarMember, path: str) -> None:
        """fill(), written to `out` here, from the windows."""
        for at, count in self._contents(member, path):
            _write_all(out, self.window[at : at + count])

    def _contents(self, member: TarMember, path: str) -> Iterator[tuple[int, int]]:
        """A file's contents recorded as a reference, then its parts in the windows, in order:
        (offset in the window, length); the next window loads once the caller has used one."""
        until = member.offset + member.size
        if until > self.end:
            raise BadArchive(f"unexpected end of data in {member.name!r}")
        self._raw(member.offset, keep=False)
        self.split.content(member.size, path)
        while self.pos < until:
            at = self.pos - self.window_start
            if at >= len(self.window):
                self._load()
                at = 0
            count = min(len(self.window) - at, until - self.pos)
            yield at, count
            self.pos += count

    def replay_from(self, start: int) -> BinaryIO:
        """For tarfile, from the unsupported member on: its header blocks as they were read,
        then the rest; from here on windows are read into memory of this process's own (the
        applier lets the writer go), and what is left of this one is copied there."""
        if start != self.member_start or start + len(self.member_bytes) != self.pos:
            raise BadArchive(f"invalid tar stream: cannot resume at offset {start}")
        self.writer = None
        self.window = memoryview(self.window[self.pos - self.window_start :].tobytes())
        self.window_start = self.pos
        return _Replay(bytes(self.member_bytes), self)  # type: ignore[return-value]

    def readinto(self, buf) -> int:
        """The bytes after `pos`, recorded verbatim (what tarfile reads through replay_from)."""
        data = self._raw(min(self.pos + len(buf), self.end), keep=True)
        buf[: len(data)] = data
        return len(data)


class _MappedSource(_RingSource):
    """_RingSource over the tar itself, mapped: a window is the next _WINDOW bytes of the mapping,
    with the lease checked each time (no copy, no ring to recycle; _MappedHash hashes)."""

    def __init__(self, mapped: LeasedMap, stream: BinaryIO, end: int, split, writer, start: int) -> None:
        super().__init__(mapped.fd, end, split, None, writer, start)  # type: ignore[arg-type]
        self.mapped, self.stream, self.base = mapped, stream, start

    def _load(self) -> None:
        self.window_offset = self.pos - self.base
        size = min(_WINDOW, self.end - self.pos, len(self.mapped.view) - self.window_offset)
        if size <= 0:
            raise BadArchive(f"unexpected end of data at offset {self.pos}")
        _check_intact(self.mapped, self.stream)
        self.window = self.mapped.view[self.window_offset : self.window_offset + size]
        self.window_start = self.pos

    def replay_from(self, start: int) -> BinaryIO:
        if start != self.member_start or start + len(self.member_bytes) != self.pos:
            raise BadArchive(f"invalid tar stream: cannot resume at offset {start}")
        self.writer = None  # the mapping stays: no copy needed
        return _Replay(bytes(self.member_bytes), self)  # type: ignore[return-value]


class _StreamSource:
    """A stream read once, in order. It keeps the header blocks of the member being read, so
    that tarfile can be handed the stream from that member's first block on (`replay_from`)."""

    def __init__(self, raw: io.BufferedReader, split) -> None:
        self.raw = raw
        self.split = split  # every byte read goes to it: verbatim, or as a file's contents
        self.pos = 0
        self.member_start = 0
        self.member_blocks: list[bytes] = []

    def _skip_to(self, offset: int) -> None:
        """Read up to `offset` (data the applier did not take, padding); stops at the end."""
        while self.pos < offset:
            skipped = self.raw.read(min(offset - self.pos, _COPY_CHUNK))
            if not skipped:
                return
            self.split.raw(skipped)
            self.pos += len(skipped)

    def drain(self) -> None:
        """Read to the end: what follows the last member is part of the tar too."""
        while chunk := self.raw.read(_COPY_CHUNK):
            self.split.raw(chunk)
            self.pos += len(chunk)

    def begin_member(self, offset: int) -> None:
        self._skip_to(offset)
        self.member_start = offset
        self.member_blocks = []

    def read_at(self, offset: int, size: int) -> bytes:
        self._skip_to(offset)
        if self.pos != offset:
            return b""
        data = self.raw.read(size)
        self.pos += len(data)
        self.member_blocks.append(data)
        self.split.raw(data)
        return data

    def copy(self, out: int, member: TarMember, path: str) -> None:
        self._skip_to(member.offset)
        left = member.size if self.pos == member.offset else -1
        if left > 0:
            self.split.content(left, path)
        while left > 0:
            chunk = self.raw.read(min(_COPY_CHUNK, left))
            if not chunk:
                break
            _write_all(out, chunk)
            self.pos += len(chunk)
            left -= len(chunk)
        if left:
            raise BadArchive(f"unexpected end of data in {member.name!r}")

    def fill(self, writer: FileWriter, member: TarMember, path: str) -> None:
        """copy(), into the writer's ring (hashed on the way in, by HashingReader)."""
        self._skip_to(member.offset)
        left = member.size if self.pos == member.offset else -1
        if left > 0:
            self.split.content(left, path)
        while left > 0:
            room = writer.room(left)
            count = self.raw.readinto(room)
            if not count:
                break
            writer.filled(count)
            writer.write(writer.room_offset, writer.room_offset + count)
            self.pos += count
            left -= count
        if left:
            raise BadArchive(f"unexpected end of data in {member.name!r}")

    def replay_from(self, start: int) -> BinaryIO:
        assert start == self.member_start, (start, self.member_start)
        # The head was recorded when it was read; the rest is recorded verbatim as tarfile reads it.
        return _Replay(b"".join(self.member_blocks), _Recorded(self.raw, self.split))  # type: ignore[return-value]


class _Recorded(io.RawIOBase):
    """Reads through to `inner`, handing every byte to the split verbatim."""

    def __init__(self, inner: io.BufferedReader, split) -> None:
        self._inner = inner
        self._split = split

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self._inner.readinto(buf)
        if n:
            self._split.raw(bytes(memoryview(buf)[:n]))
        return n


class _Replay(io.RawIOBase):
    """`head`, then the rest of `tail` (anything with readinto)."""

    def __init__(self, head: bytes, tail) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._tail.readinto(buf)


class _TarfileSource:
    """Contents of members tarfile read (their `origin`)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar

    def copy(self, out: int, member: TarMember, path: str) -> None:
        source = self.tar.extractfile(member.origin)  # type: ignore[arg-type]
        assert source is not None
        remaining = member.size
        while remaining:
            chunk = source.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                raise BadArchive(f"unexpected end of data in {member.name!r}")
            _write_all(out, chunk)
            remaining -= len(chunk)


def _apply_with_tarfile(tar: tarfile.TarFile, applier: _Applier) -> None:
    applier.write_here()  # the rare tail tarfile reads: no ring for it
    source = _TarfileSource(tar)
    while (info := tar.next()) is not None:
        applier.apply(_from_tarinfo(info), source)
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member it read: a long tail would pile up


def _from_tarinfo(info: tarfile.TarInfo) -> TarMember:
    for name in (info.name, info.linkname):
        if "\0" in name:  # tarfile takes one from a PAX record; the header reader refuses it (as Go's)
            raise BadArchive(f"invalid tar header at offset {info.offset}: a NUL byte in {name[:100]!r}")
    return TarMember(
        info.name,
        info.type,
        info.mode,
        info.uid,
        info.gid,
        info.size,
        int(info.mtime * 1_000_000_000),
        info.linkname,
        info.devmajor,
        info.devminor,
        info.offset_data,
        pax_xattrs(dict(info.pax_headers)) if info.pax_headers else None,
        origin=info,
    )


@contextlib.contextmanager
def _tarfile_errors() -> Iterator[None]:
    """tarfile's own errors as BadArchive."""
    import tarfile

    try:
        yield
    except tarfile.TarError as exc:
        raise BadArchive(f"invalid tar stream: {_describe(exc)}") from exc


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def normalize_member_path(name: str) -> str:
    """`./a//b/` -> `a/b`; refuses absolute names and `..` (they would leave the layer)."""
    if name.startswith("/"):
        raise BadArchive(f"refusing absolute path in layer: {name!r}")
    parts = name.split("/")
    if "" not in parts and "." not in parts and ".." not in parts:
        return name  # already clean: the common case
    parts = [p for p in parts if p not in ("", ".")]
    if ".." in parts:
        raise BadArchive(f"refusing path with '..' in layer: {name!r}")
    return "/".join(parts)


def member_xattrs(member: tarfile.TarInfo | TarMember) -> dict[str, bytes]:
    """The xattrs a member carries (PAX `SCHILY.xattr.*`, libarchive's `LIBARCHIVE.xattr.*`), minus overlay's."""
    found = member.xattrs if isinstance(member, TarMember) else pax_xattrs(dict(member.pax_headers))
    return {k: v for k, v in (found or {}).items() if not is_overlay_xattr(k)}


# The kinds of entry a layer dir holds, as _Applier records them.
_DIR, _OTHER, _SYMLINK, _WHITEOUT = "dir", "other", "symlink", "whiteout"


class _DirState:
    """What the kernel will do to an entry created in a directory, as far as it is sure (umask 0):

    exact: the entry gets the mode asked for -- unless a default ACL may be on the directory;
    ours:  the entry's group is our egid -- the directory's group is ours, so neither a setgid
           directory nor a `grpid` mount gives it another one;
    sgid:  a new subdirectory may inherit the setgid bit.
    Whatever is not sure costs the chown or chmod that makes it so."""

    __slots__ = ("exact", "ours", "sgid")  # one per directory: a plain class, made fast

    def __init__(self, exact: bool, ours: bool, sgid: bool) -> None:
        self.exact = exact
        self.ours = ours
        self.sgid = sgid


class _Applier:
    """Checks every member and decides what to create; creates it, or has `writer` create it."""

    def __init__(self, root: str, writer: FileWriter | None = None) -> None:
        self.root = root
        self.writer = writer
        self._paths = ShortPaths(root)
        self.kinds: dict[str, str] = {"": _DIR}
        self.explicit: set[str] = set()  # paths named by a member (implicit parents are not)
        self.opaque: set[str] = set()
        self.dir_times: list[tuple[str, int]] = []
        self.size = 0
        self.euid, self.egid = os.geteuid(), os.getegid()
        st = os.stat(root)
        self.dirs: dict[str, _DirState] = {
            "": _DirState(
                exact=not _may_have_default_acl(root), ours=st.st_gid == self.egid, sgid=bool(st.st_mode & stat.S_ISGID)
            )
        }

    # -- checks --------------------------------------------------------------------------
    def _claim(self, path: str, kind: str, original: str) -> tuple[_DirState, bool]:
        """Record `path` as created by this member; returns the state of its parent dir, and True
        when `path` already exists as an implicit directory (a dir member after its children,
        which only updates metadata)."""
        parent = self._ensure_parents(path, original)
        existing = self.kinds.get(path)
        if existing is not None:
            if existing == _DIR and kind == _DIR and path not in self.explicit:
                self.explicit.add(path)
                return parent, True
            raise BadArchive(f"refusing duplicate path in layer: {original!r}")
        self.kinds[path] = kind
        self.explicit.add(path)
        return parent, False

    def _ensure_parents(self, path: str, original: str) -> _DirState:
        parent = path.rpartition("/")[0]
        if self.kinds.get(parent) == _DIR:
            return self.dirs[parent]
        prefix = ""
        state = self.dirs[""]
        for part in parent.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            kind = self.kinds.get(prefix)
            if kind is None:
                self._mkdir_implicit(prefix, state)
            elif kind != _DIR:
                raise BadArchive(f"refusing path through a {kind} in layer: {original!r}")
            state = self.dirs[prefix]
        return state

    def _mkdir_implicit(self, path: str, parent: _DirState) -> None:
        os.mkdir(self._host(path), 0o755)
        self.kinds[path] = _DIR
        self.dirs[path] = parent  # same ACL, group and setgid doubts as its parent

    def _host(self, path: str) -> str:
        """`path` as calls take it, past PATH_MAX too (layer/longpaths.py): such a path is valid in
        this process only, so what follows is created here, not by the writer."""
        if len(path) + len(self.root) >= SHORT and self.writer is not None:
            self.write_here()
        return self._paths(path)

    # -- members -------------------------------------------------------------------------
    def apply(self, member: TarMember, source) -> None:
        path = normalize_member_path(member.name)
        whiteout = parse_whiteout(path) if WHITEOUT_PREFIX in path else None
        type_ = member.type
        if whiteout is not None:
            self._whiteout(whiteout, member)
        elif path == "":
            if type_ != _DIRTYPE:
                raise BadArchive(f"refusing non-directory layer root: {member.name!r}")
            self._settle()
            self._dir_meta(self.root, "", member, self.dirs[""], chown=True, chmod=True)
        elif type_ in _FILE_TYPES:
            parent, _ = self._claim(path, _OTHER, member.name)
            self._file(path, member, source, parent)
        elif type_ == _DIRTYPE:
            parent, existed = self._claim(path, _DIR, member.name)
            host = self._host(path)
            if existed:  # an implicit dir: its mode and owner are 0755 and whatever the kernel gave
                self._settle()
                self._dir_meta(host, path, member, self.dirs[path], chown=True, chmod=True)
            else:
                mode = member.mode & 0o7777
                os.mkdir(host, mode & 0o1777 if parent.exact else 0o700)
                self._dir_meta(
                    host,
                    path,
                    member,
                    parent,
                    chown=self._chown_needed(member, parent),
                    chmod=not parent.exact or parent.sgid or bool(mode & 0o7000),
                )
        elif type_ == _SYMTYPE:
            parent, _ = self._claim(path, _SYMLINK, member.name)
            self._symlink(self._host(path), member, parent)
            self.size += len(os.fsencode(member.linkname))
        elif type_ == _LNKTYPE:
            self._hardlink(path, member)
        elif type_ in _NODE_TYPES:
            parent, _ = self._claim(path, _OTHER, member.name)
            self._node(path, member, parent)
        else:
            raise BadArchive(f"refusing unsupported member type {type_!r}: {member.name!r}")

    def _chown_needed(self, member: TarMember, parent: _DirState) -> bool:
        # A new entry is ours (euid) and, in an `ours` dir, in our group (egid).
        return not (parent.ours and member.uid == self.euid and member.gid == self.egid)

    def _whiteout(self, whiteout: Whiteout, member: TarMember) -> None:
        if not whiteout.target and not whiteout.opaque:
            return  # aufs metadata
        if whiteout.opaque:
            if whiteout.target in self.opaque:
                raise BadArchive(f"refusing duplicate opaque marker in layer: {member.name!r}")
            kind = self.kinds.get(whiteout.target)
            if kind is None:
                parent, _ = self._claim(whiteout.target, _DIR, member.name)
                self.explicit.discard(whiteout.target)  # the dir's own member may still follow
                os.mkdir(self._host(whiteout.target), 0o755)
                self.dirs[whiteout.target] = parent
            elif kind != _DIR:
                raise BadArchive(f"refusing opaque marker under a {kind}: {member.name!r}")
            make_opaque(self._host(whiteout.target))
            self.opaque.add(whiteout.target)
            return
        parent, _ = self._claim(whiteout.target, _WHITEOUT, member.name)
        host = self._host(whiteout.target)
        make_whiteout(host)
        if self._chown_needed(member, parent):
            os.chown(host, member.uid, member.gid, follow_symlinks=False)

    def _file(self, path: str, member: TarMember, source, parent: _DirState) -> None:
        mode = member.mode & 0o7777
        host = self._host(path)
        writer = self.writer
        # Created here instead when the writer has plenty to do: its creates come before later
        # members', and this one depends on none of them (its directory is made; a hardlink to
        # it is queued after it exists).
        if writer is not None and not writer.lagging():
            writer.open(host, mode & 0o777 if parent.exact else 0o600)
            if member.size:
                source.fill(writer, member, path)
            writer.close(
                NO_CHANGE if parent.ours and member.uid == self.euid and member.gid == self.egid else member.uid,
                member.gid,
                mode if not parent.exact or mode & 0o7000 else NO_CHANGE,
                self._xattrs(member),
                member.mtime_ns,
            )
            self.size += member.size
            return
        fd = os.open(host, _OPEN_FLAGS, mode & 0o777 if parent.exact else 0o600)
        try:
            if member.size:
                source.copy(fd, member, path)
            # chown first: it clears setuid/setgid bits and file capabilities.
            if not (parent.ours and member.uid == self.euid and member.gid == self.egid):  # _chown_needed
                os.fchown(fd, member.uid, member.gid)
            if not parent.exact or mode & 0o7000:
                os.fchmod(fd, mode)
            if member.xattrs:
                self._set_xattrs(fd, member, follow=True)
            os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))
        finally:
            os.close(fd)
        self.size += member.size

    def _hardlink(self, path: str, member: TarMember) -> None:
        target = normalize_member_path(member.linkname)
        kind = self.kinds.get(target)
        if kind is None or target not in self.explicit:
            raise BadArchive(f"refusing hardlink to a path outside the layer: {member.name!r} -> {member.linkname!r}")
        if kind in (_DIR, _WHITEOUT):
            raise BadArchive(f"refusing hardlink to a {kind}: {member.name!r} -> {member.linkname!r}")
        self._claim(path, kind, member.name)
        if max(len(target), len(path)) + len(self.root) >= SHORT:
            self.write_here()  # two long paths: each made valid in turn, by a dir opened here
            with _opened_dir(self._host(target.rpartition("/")[0])) as target_dir:
                with _opened_dir(self._host(path.rpartition("/")[0])) as dir_fd:
                    os.link(
                        target.rpartition("/")[2],
                        path.rpartition("/")[2],
                        src_dir_fd=target_dir,
                        dst_dir_fd=dir_fd,
                        follow_symlinks=False,
                    )
        elif self.writer is not None:  # after the create of its target, in the writer's order
            self.writer.link(self._host(target), self._host(path))
        else:
            os.link(self._host(target), self._host(path), follow_symlinks=False)

    def _symlink(self, host: str, member: TarMember, parent: _DirState) -> None:
        chown = self._chown_needed(member, parent)
        if self.writer is not None and not self.writer.lagging():
            uid = member.uid if chown else NO_CHANGE
            self.writer.symlink(host, member.linkname, uid, member.gid, self._xattrs(member), member.mtime_ns)
            return
        os.symlink(member.linkname, host)
        if chown:
            os.chown(host, member.uid, member.gid, follow_symlinks=False)
        if member.xattrs:
            self._set_xattrs(host, member, follow=False)
        os.utime(host, ns=(member.mtime_ns, member.mtime_ns), follow_symlinks=False)

    def _node(self, path: str, member: TarMember, parent: _DirState) -> None:
        host = self._host(path)
        mode = member.mode & 0o7777
        create_mode = mode & 0o777 if parent.exact else 0o600
        if member.type == _FIFOTYPE:
            os.mkfifo(host, create_mode)
        else:
            kind = stat.S_IFCHR if member.type == _CHRTYPE else stat.S_IFBLK
            os.mknod(host, kind | create_mode, os.makedev(member.devmajor, member.devminor))
        if self._chown_needed(member, parent):
            os.chown(host, member.uid, member.gid, follow_symlinks=False)
        if not parent.exact or mode & 0o7000:
            os.chmod(host, mode)
        if member.xattrs:
            self._set_xattrs(host, member, follow=False)
        os.utime(host, ns=(member.mtime_ns, member.mtime_ns), follow_symlinks=False)

    def _dir_meta(self, host: str, path: str, member: TarMember, parent: _DirState, chown: bool, chmod: bool) -> None:
        """Owner, mode and xattrs of a directory now, its mtime at the end (creating its children
        would bump it); records what the kernel will do to entries created in it."""
        mode = member.mode & 0o7777
        if chown:
            os.chown(host, member.uid, member.gid, follow_symlinks=False)
        if chmod:
            os.chmod(host, mode)
        acl = False
        if member.xattrs:
            self._set_xattrs(host, member, follow=False)
            acl = DEFAULT_ACL_XATTR in member.xattrs
        self.dirs[path] = _DirState(
            exact=parent.exact and not acl, ours=member.gid == self.egid, sgid=bool(mode & stat.S_ISGID)
        )
        self.dir_times.append((path, member.mtime_ns))

    def _xattrs(self, member: TarMember) -> tuple[str, dict[str, bytes]] | None:
        """The member's xattrs to set (overlay's own never), with its name for messages."""
        if not member.xattrs:
            return None
        wanted = {k: v for k, v in member.xattrs.items() if not is_overlay_xattr(k)}
        return (member.name, wanted) if wanted else None

    def _set_xattrs(self, target: str | int, member: TarMember, follow: bool) -> None:
        wanted = self._xattrs(member)
        if wanted is not None:
            set_xattrs(target, wanted[1], follow, member.name)

    def _settle(self) -> None:
        """Wait for the writer: what comes next changes what its queued creates would meet (the
        group, setgid bit or default ACL of a directory that already has entries)."""
        if self.writer is not None:
            self.writer.settle()

    def write_here(self) -> None:
        """Create what follows in this process: the writer finishes its queue and goes."""
        if self.writer is not None:
            self.writer.finish()
            self.writer = None

    def finish(self) -> None:
        if self.writer is not None:
            try:
                self.writer.finish()
            except WriterFailed as failure:
                raise failure.exception() from None
        for path, mtime_ns in reversed(self.dir_times):
            os.utime(self._paths(path), ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def close(self) -> None:
        """Close the dirs held open for long paths."""
        self._paths.close()


@contextlib.contextmanager
def _opened_dir(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _may_have_default_acl(path: str) -> bool:
    try:
        os.getxattr(path, DEFAULT_ACL_XATTR)
    except OSError as exc:
        return exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP)
    return True
