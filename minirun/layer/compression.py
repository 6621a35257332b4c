"""Compressed tars (layers, whole image archives): gzip, zstd, xz or bzip2, told by their magic
bytes, never by a name or media type, and their corrupt streams told from real I/O errors.

The decompressors are imported only when a stream needs one: the lean verbs never pay for them.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from minirun.errors import BadArchive

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
MAGICS = (GZIP_MAGIC, ZSTD_MAGIC, XZ_MAGIC, BZIP2_MAGIC)
MAGIC_SIZE = 6  # enough bytes to tell any of them
# The packages whose exceptions are a decompressor's complaint about its input (zlib.error,
# zstandard.ZstdError, lzma.LZMAError), told by module: the classes need not have been imported.
# ZstdError's module is zstandard.backend_c (or .backend_cffi): the package is what counts.
_DECOMPRESSOR_PACKAGES = ("zlib", "zstandard", "_lzma", "lzma", "zstd")


def is_compressed(head: bytes) -> bool:
    """Whether a stream starting with `head` (MAGIC_SIZE bytes) is compressed."""
    return head.startswith(MAGICS)


def is_compressed_at(fd: int, offset: int) -> bool:
    """Whether the stream at `offset` of file `fd` is compressed (read by pread)."""
    return is_compressed(os.pread(fd, MAGIC_SIZE, offset))


def decompressed(stream: BinaryIO) -> BinaryIO:
    """The stream with gzip, zstd, xz or bzip2 removed, sniffed from its magic bytes."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[type-var]
    magic = buffered.peek(MAGIC_SIZE)[:MAGIC_SIZE]
    if magic.startswith(GZIP_MAGIC):
        import gzip

        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    if magic.startswith(XZ_MAGIC):
        import lzma

        return lzma.LZMAFile(buffered)  # type: ignore[return-value]
    if magic.startswith(BZIP2_MAGIC):
        import bz2

        return bz2.BZ2File(buffered)  # type: ignore[return-value]
    return buffered


def is_decompressor_error(exc: BaseException) -> bool:
    """A decompressor's own exception: the compressed bytes are corrupt."""
    return type(exc).__module__.partition(".")[0] in _DECOMPRESSOR_PACKAGES


def is_bad_data(exc: BaseException) -> bool:
    """Whether `exc`, raised while reading a (possibly decompressed) stream, says its bytes are bad
    rather than that reading them failed: a decompressor's exception, EOFError (a stream cut
    short), ValueError, or an OSError without errno (gzip's BadGzipFile, bz2's "Invalid data
    stream"); real I/O errors carry an errno."""
    if isinstance(exc, OSError):
        return exc.errno is None
    return isinstance(exc, (EOFError, ValueError)) or is_decompressor_error(exc)


def corrupt(exc: BaseException, what: str = "stream") -> BadArchive:
    """The error for a corrupt compressed `what` (stream, archive), from what the reader raised."""
    text = str(exc) or type(exc).__name__
    return BadArchive(f"invalid compressed {what}: {text.splitlines()[0]}")
