"""A lean, strict reader of tar headers: ustar, GNU long names (`L`/`K`) and PAX (`x`).

tarfile costs ~20 µs of Python per member; this reader a few. It reads only what a layer needs and
is strict about it, because a layer tar is untrusted input: a bad checksum, a non-octal number, a
negative size or id, a malformed PAX record, an extended header without its member, or an input
that ends inside a header all raise BadArchive, at any offset (tarfile quietly ends the archive at
a bad header past the first one). Member data is not read here: whoever copies it refuses an
input that ends inside it.

Anything else -- GNU sparse files (type `S` or PAX `GNU.sparse.*`), PAX global headers (`g`),
Solaris `X` headers, multi-volume and other types -- raises `Unsupported` before anything of that
member is returned: the caller hands the rest of the archive, from `Unsupported.start`, to tarfile
through `open_tarfile`, which keeps tarfile to the same bound on extended headers.

Semantics chosen where formats leave room (as Go's archive/tar, which containerd and docker use):
- PAX `path`/`linkpath` win over GNU `L`/`K` names, which win over the ustar name (+ prefix);
  a PAX record with an empty value deletes it (POSIX), except `SCHILY.xattr.*`: an empty xattr;
- the ustar prefix counts only with the POSIX magic `ustar\\0` (GNU headers use that space for
  other fields); an old-style regular file (type NUL) whose name ends in `/` is a directory;
- header-only types (links, devices, FIFOs, directories) have no data, whatever their size field;
- end of archive: the first all-zero block, or the end of the input exactly where a header would
  start (no end marker, as tarfile and Go accept); an input of zero bytes is not an archive.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import TYPE_CHECKING, Protocol

from minirun.errors import BadArchive

if TYPE_CHECKING:
    import tarfile
    from typing import BinaryIO

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# Extended headers (PAX records, GNU long names) are held in memory: bound them. Go's archive/tar
# allows 1 MiB; Linux xattr values are at most 64 KiB.
MAX_EXTENDED = 1 << 20

REGULAR_TYPES = (b"0", b"\0", b"7")  # 7: contiguous file, a regular file everywhere that matters
HEADER_ONLY_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")
_MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "leave unchanged" to chown: never an owner
_MAX_DEV = (1 << 32) - 1

# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_NO_LOW_BYTES = bytes(range(0x80))
_OCTAL_TEXT = b"01234567 \0"
_NUMBERS = ("mode", "uid", "gid", "size", "mtime", "checksum")


class Unsupported(Exception):
    """A member this reader leaves to tarfile; `start` is the offset of its first header block."""

    def __init__(self, what: str, start: int) -> None:
        super().__init__(what)
        self.start = start


class Source(Protocol):
    def begin_member(self, offset: int) -> None:
        """The headers of a member start at `offset` (a stream may keep them from here on)."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer only at the end of the input); offsets never go
        back, and the reads of one member's headers follow each other without a gap."""
        ...


class TarMember:
    """One member, as a layer needs it. `offset` is where its data starts in the input."""

    __slots__ = (
        "name",
        "type",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime_ns",
        "linkname",
        "devmajor",
        "devminor",
        "offset",
        "xattrs",
        "origin",
    )

    def __init__(
        self,
        name: str,
        type: bytes,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        mtime_ns: int,
        linkname: str,
        devmajor: int,
        devminor: int,
        offset: int,
        xattrs: dict[str, bytes] | None,
        origin: object = None,
    ) -> None:
        self.name, self.type, self.mode, self.uid, self.gid = name, type, mode, uid, gid
        self.size, self.mtime_ns, self.linkname = size, mtime_ns, linkname
        self.devmajor, self.devminor, self.offset = devmajor, devminor, offset
        self.xattrs = xattrs  # every xattr the member carries, None for none; the caller filters
        self.origin = origin  # the tarfile.TarInfo when tarfile read this member

    def __repr__(self) -> str:
        return f"TarMember({self.name!r}, type={self.type!r}, size={self.size})"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstring(field: bytes) -> bytes:
    return field.partition(b"\0")[0]


def _octal(field: bytes, what: str, start: int) -> int:
    """A numeric header field: octal digits, NUL- or space-terminated, maybe space-padded in front;
    or GNU base-256 (first byte 0x80: positive, 0xff: negative, two's complement)."""
    lead = field[0]
    if lead == 0x80:
        return int.from_bytes(field[1:], "big")
    if lead == 0xFF:
        return int.from_bytes(field, "big", signed=True)
    digits = field.partition(b"\0")[0].strip(b" ")
    if not digits:
        return 0
    if digits.isdigit():  # ASCII 0-9 only: no sign, underscore, "0o" or inner space for int()
        try:
            return int(digits, 8)
        except ValueError:  # an 8 or a 9
            pass
    raise BadArchive(f"invalid tar header at offset {start}: {what} field is not a number: {bytes(field)!r}")


def _careful_numbers(block: bytes, at: int) -> tuple[int, ...]:
    """mode, uid, gid, size, mtime and checksum of a header, one field at a time (checksum first:
    a block of garbage is reported as such, not as a bad number)."""
    chksum = _octal(block[148:156], "checksum", at)
    if not _checksum_ok(block, chksum):
        raise BadArchive(f"invalid tar header at offset {at}: bad checksum")
    fields = (block[100:108], block[108:116], block[116:124], block[124:136], block[136:148])
    return (*(_octal(field, what, at) for field, what in zip(fields, _NUMBERS)), chksum)


def _byte_sum(piece: bytes) -> int:
    """The sum of the bytes of `piece`, at most 256 of them. Adler-32 started from 0 keeps that sum
    modulo 65521 in its low 16 bits: exact while it stays below, as 256 * 255 = 65280 does. (A
    loop over the bytes costs ten times more, and this runs for every header.)"""
    return zlib.adler32(piece, 0) & 0xFFFF


def _checksum_ok(block: bytes, stored: int) -> bool:
    # The checksum counts its own field (148:156) as eight spaces: 8 * 0x20 = 256.
    unsigned = _byte_sum(block[:148]) + 256 + _byte_sum(block[156:412]) + _byte_sum(block[412:])
    if stored == unsigned:
        return True
    # Some old tars summed signed chars: every byte >= 0x80 then counts 256 less.
    high = len(block[:148].translate(None, _NO_LOW_BYTES)) + len(block[156:].translate(None, _NO_LOW_BYTES))
    return stored == unsigned - 256 * high


_NAMES = (b"path", b"linkpath", b"uname", b"gname")  # records whose value is a name: no NUL in it


def _pax_records(data: bytes, start: int) -> dict[bytes, bytes]:
    """`LEN KEY=VALUE\\n` records; NUL padding after the last one is allowed."""
    records: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end and data[pos] != 0:
        space = data.find(b" ", pos, pos + 21)
        length_field = data[pos:space]
        if space < 0 or not length_field.isdigit():
            raise BadArchive(f"invalid PAX header at offset {start}: bad record length")
        record_end = pos + int(length_field)
        if record_end > end or record_end < space + 4 or data[record_end - 1] != 0x0A:
            raise BadArchive(f"invalid PAX header at offset {start}: bad record framing")
        key, equals, value = data[space + 1 : record_end - 1].partition(b"=")
        if not key or not equals:
            raise BadArchive(f"invalid PAX header at offset {start}: record without a keyword")
        if b"\0" in key or (key in _NAMES and b"\0" in value):  # as Go's archive/tar, docker's reader
            raise BadArchive(f"invalid PAX header at offset {start}: a NUL byte in record {key[:100]!r}")
        records[key] = value
        pos = record_end
    if data[pos:].strip(b"\0"):
        raise BadArchive(f"invalid PAX header at offset {start}: data after the NUL padding")
    return records


def _pax_decimal(value: bytes, key: bytes, start: int) -> int:
    if not value.isdigit():
        raise BadArchive(f"invalid PAX header at offset {start}: {key.decode('ascii', 'replace')} is not a number")
    return int(value)


def _pax_time_ns(value: bytes, start: int) -> int:
    """`[-]SECONDS[.FRACTION]` to integer nanoseconds, exactly (digits past the 9th are dropped)."""
    negative = value.startswith(b"-")
    seconds, dot, fraction = (value[1:] if negative else value).partition(b".")
    if not seconds.isdigit() or (dot and fraction and not fraction.isdigit()):
        raise BadArchive(f"invalid PAX header at offset {start}: mtime is not a time: {value[:40]!r}")
    ns = int(seconds) * 1_000_000_000 + int((fraction[:9] or b"0").ljust(9, b"0"))
    return -ns if negative else ns


def pax_xattrs(records: dict[bytes, bytes] | dict[str, str]) -> dict[str, bytes] | None:
    """The xattrs in PAX records: `SCHILY.xattr.NAME=raw value` and libarchive's
    `LIBARCHIVE.xattr.URL-ENCODED-NAME=base64 value`. Takes raw records (bytes) or tarfile's
    decoded `pax_headers` (str, surrogate-escaped)."""
    found: dict[str, bytes] = {}
    for key, value in records.items():
        k = _text(key) if isinstance(key, bytes) else key
        if "\0" in k:  # (only tarfile's records get here with one: _pax_records refuses it)
            raise BadArchive(f"invalid PAX header: a NUL byte in record {k[:100]!r}")
        if k.startswith("SCHILY.xattr."):
            found[k[13:]] = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        elif k.startswith("LIBARCHIVE.xattr."):
            import base64
            from urllib.parse import unquote

            text = _text(value) if isinstance(value, bytes) else value
            try:
                raw = base64.b64decode(text + "=" * (-len(text) % 4))
            except ValueError as exc:  # binascii.Error
                raise BadArchive(f"invalid base64 value for PAX record {k[:100]!r}") from exc
            found[unquote(k[17:], errors="surrogateescape")] = raw
    return found or None


class HeaderReader:
    """Iterates the members of a tar from a `Source`, starting at `start`.

    The caller reads a member's data (size bytes at member.offset) from the source before asking
    for the next member, or not at all: the reader only ever moves forward.
    """

    def __init__(self, source: Source, start: int = 0) -> None:
        self.source = source
        self.start = start
        self.pos = start  # where the next header block starts

    def __iter__(self) -> HeaderReader:
        return self

    def __next__(self) -> TarMember:
        member = self.next()
        if member is None:
            raise StopIteration
        return member

    def _extended(self, start: int, offset: int, size: int, kind: str) -> bytes:
        if size > MAX_EXTENDED:
            raise BadArchive(f"refusing {kind} of {size} bytes at offset {start} (limit {MAX_EXTENDED})")
        data = self.source.read_at(offset, size + (-size % BLOCK))  # with its padding: no gap
        if len(data) < size:
            raise BadArchive(f"unexpected end of data in the {kind} at offset {start}")
        return data[:size]

    def next(self) -> TarMember | None:
        """The next member, or None at the end of the archive."""
        start = self.pos
        self.source.begin_member(start)
        read_at = self.source.read_at
        pax: dict[bytes, bytes] | None = None
        long_name = long_link = None
        type_ = b""
        while True:
            at = self.pos
            block = read_at(at, BLOCK)
            if len(block) != BLOCK or block == _ZERO_BLOCK:
                if block and len(block) != BLOCK:
                    raise BadArchive(f"truncated tar header at offset {at}")
                if at != start:
                    raise BadArchive(f"archive ends after an extended header at offset {start}")
                if not block and at == self.start:
                    raise BadArchive("empty file: not a tar archive")
                return None
            (
                name,
                mode,
                uid,
                gid,
                size,
                mtime,
                chksum,
                type_,
                linkname,
                magic,
                _version,
                _uname,
                _gname,
                devmajor,
                devminor,
                prefix,
            ) = _USTAR.unpack(block)
            if block[100:156].translate(None, _OCTAL_TEXT):  # not plain octal text: the careful way
                mode_n, uid_n, gid_n, size_n, mtime_n, chksum_n = _careful_numbers(block, at)
            else:
                try:  # int() takes surrounding spaces, no sign nor "_" (filtered out above) nor inner space
                    mode_n, uid_n, gid_n, size_n, mtime_n, chksum_n = (
                        int(mode.partition(b"\0")[0], 8),
                        int(uid.partition(b"\0")[0], 8),
                        int(gid.partition(b"\0")[0], 8),
                        int(size.partition(b"\0")[0], 8),
                        int(mtime.partition(b"\0")[0], 8),
                        int(chksum.partition(b"\0")[0], 8),
                    )
                except ValueError:  # an empty field, an inner space, an 8 or a 9
                    mode_n, uid_n, gid_n, size_n, mtime_n, chksum_n = _careful_numbers(block, at)
            if not _checksum_ok(block, chksum_n):
                raise BadArchive(f"invalid tar header at offset {at}: bad checksum")
            if size_n < 0:
                raise BadArchive(f"invalid tar header at offset {at}: negative size")
            data_at = at + BLOCK
            if type_ in (b"x", b"L", b"K"):
                kinds = {b"x": "PAX header", b"L": "GNU long name", b"K": "GNU long link name"}
                kind = kinds[type_]
                data = self._extended(at, data_at, size_n, kind)
                self.pos = data_at + (-size_n % BLOCK) + size_n
                if (
                    (type_ == b"x" and pax is not None)
                    or (type_ == b"L" and long_name is not None)
                    or (type_ == b"K" and long_link is not None)
                ):
                    raise BadArchive(f"refusing a second {kind} for one member at offset {at}")
                if type_ == b"x":
                    pax = _pax_records(data, at)
                elif type_ == b"L":
                    long_name = _cstring(data)
                else:
                    long_link = _cstring(data)
                continue
            if type_ not in REGULAR_TYPES and type_ not in HEADER_ONLY_TYPES:
                raise Unsupported(f"member type {type_!r}", start)
            break

        raw_name = long_name if long_name is not None else name.partition(b"\0")[0]
        if long_name is None and magic == b"ustar\0" and prefix[0]:
            raw_name = prefix.partition(b"\0")[0] + b"/" + raw_name
        raw_link = long_link if long_link is not None else linkname.partition(b"\0")[0]
        mtime_ns = mtime_n * 1_000_000_000
        xattrs = None
        if pax is not None:
            for key in pax:
                if key.startswith(b"GNU.sparse."):
                    raise Unsupported("a GNU sparse file", start)
            value = pax.get(b"path")
            if value:
                raw_name = value
            value = pax.get(b"linkpath")
            if value:
                raw_link = value
            value = pax.get(b"size")
            if value:
                size_n = _pax_decimal(value, b"size", start)
            value = pax.get(b"uid")
            if value:
                uid_n = _pax_decimal(value, b"uid", start)
            value = pax.get(b"gid")
            if value:
                gid_n = _pax_decimal(value, b"gid", start)
            value = pax.get(b"mtime")
            if value:
                mtime_ns = _pax_time_ns(value, start)
            xattrs = pax_xattrs(pax)
        if not (0 <= uid_n <= _MAX_ID and 0 <= gid_n <= _MAX_ID):
            raise BadArchive(f"invalid tar header at offset {at}: owner {uid_n}:{gid_n} out of range")
        if mode_n < 0:
            raise BadArchive(f"invalid tar header at offset {at}: negative mode")
        major_n = minor_n = 0
        if type_ == b"3" or type_ == b"4":
            major_n, minor_n = _octal(devmajor, "devmajor", at), _octal(devminor, "devminor", at)
            if not (0 <= major_n <= _MAX_DEV and 0 <= minor_n <= _MAX_DEV):
                raise BadArchive(f"invalid tar header at offset {at}: device number out of range")
        if type_ == b"\0" and raw_name.endswith(b"/"):
            type_ = b"5"
        if type_ in HEADER_ONLY_TYPES:
            size_n = 0
        data_at = at + BLOCK
        self.pos = data_at + (-size_n % BLOCK) + size_n
        return TarMember(
            _text(raw_name),
            type_,
            mode_n,
            uid_n,
            gid_n,
            size_n,
            mtime_ns,
            _text(raw_link),
            major_n,
            minor_n,
            data_at,
            xattrs,
        )


# -- the rest, by tarfile ----------------------------------------------------------------------


class TarfileInput(io.RawIOBase):
    """What tarfile reads once the header reader gave up: forward only (a step back within the
    last block is served again from memory, as tarfile's next() takes one), and never a single
    read above MAX_EXTENDED. In its random-access mode tarfile asks for an extended header in
    one read, so a crafted header that claims gigabytes is refused here, not loaded into memory.
    (Whoever copies contents out of tarfile reads them in pieces of at most MAX_EXTENDED.)"""

    def __init__(self, raw: BinaryIO, start: int) -> None:
        self._raw = raw
        self._pos = start
        self._behind = b""  # the last bytes read, for a step back
        self._again = b""  # bytes stepped back over, served before new ones

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise io.UnsupportedOperation("seek from the end")
        if pos < self._pos:
            step = self._pos - pos
            if step > len(self._behind):
                raise BadArchive(f"invalid tar stream: cannot go back to offset {pos}")
            self._again = self._behind[-step:] + self._again
            self._behind = self._behind[:-step]
            self._pos = pos
        while self._pos < pos:
            if not self.read(min(pos - self._pos, MAX_EXTENDED)):
                break
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_EXTENDED:
            raise BadArchive(
                f"refusing a tar member header of {size} bytes at offset {self._pos} (limit {MAX_EXTENDED})"
            )
        data, self._again = self._again[:size], self._again[size:]
        while len(data) < size:
            more = self._raw.read(size - len(data))
            if not more:
                break
            data += more
        self._pos += len(data)
        self._behind = (self._behind + data)[-2 * BLOCK :]
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def open_tarfile(raw: BinaryIO, start: int) -> tarfile.TarFile:
    """tarfile over `raw`, whose next byte is at offset `start` (`Unsupported.start`), reading
    through TarfileInput. Names that are not UTF-8 survive as surrogate escapes."""
    import tarfile

    return tarfile.open(
        fileobj=TarfileInput(raw, start),
        mode="r:",
        encoding="utf-8",
        errors="surrogateescape",
    )
