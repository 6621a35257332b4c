"""`build -`: what stdin holds, as docker reads it. A tar (plain or gzip, zstd, xz, bzip2) is the
build context; anything else is a Dockerfile with an empty context.

The tar is unpacked by the layer store's applier (the one that takes hostile layers: no path
leaves the directory, links stay inside) into a staged layer dir that no image ever uses and
that goes when the build ends; a build killed halfway leaves debris `system check` removes.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from minirun.build.buildcopy import is_tar_header
from minirun.build.dockerfile import DOCKERFILE_LIMIT
from minirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.layers import StagedLayer


@dataclass
class StdinContext:
    directory: str  # the context COPY reads
    dockerfile_text: str | None  # stdin was a Dockerfile
    staged: StagedLayer | None = None  # the unpacked tar
    empty_dir: str | None = None  # the empty context of a lone Dockerfile


def read_stdin_context(store: Store, stream: BinaryIO) -> StdinContext:
    """The context (or the Dockerfile) `stream` holds."""
    from minirun.layer.compression import MAGIC_SIZE, is_compressed

    head = _read_up_to(stream, tarfile.BLOCKSIZE)
    if is_compressed(head[:MAGIC_SIZE]) or is_tar_header(head):
        whole = io.BufferedReader(_Prefixed(head, stream))
        staged = store.unpack_layer(whole)
        return StdinContext(staged.diff_dir, None, staged=staged)
    rest = stream.read(DOCKERFILE_LIMIT + 1 - len(head))
    if len(head) + len(rest) > DOCKERFILE_LIMIT:
        raise UsageError(f"the Dockerfile on stdin is larger than {DOCKERFILE_LIMIT >> 10} KiB")
    empty = tempfile.mkdtemp(prefix="minirun-build-")
    return StdinContext(empty, (head + rest).decode("utf-8", "surrogateescape"), empty_dir=empty)


def release(store: Store, context: StdinContext) -> None:
    if context.staged is not None:
        store.layers.discard(context.staged)
    if context.empty_dir is not None:
        shutil.rmtree(context.empty_dir, ignore_errors=True)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Prefixed(io.RawIOBase):
    """The bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
