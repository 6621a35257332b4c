"""A job process's body (jobs.py): its stdout as it was started, and docker's JSON messages on it,
one a line, whole even when transfer threads report at once."""

from __future__ import annotations

import json
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_channel: BinaryIO | None = None
_lock = threading.Lock()


def open_channel(fd: int) -> None:
    global _channel
    _channel = open(fd, "wb", buffering=1 << 16)


def channel() -> BinaryIO:
    assert _channel is not None, "open_channel first"
    return _channel


def message(document: dict) -> None:
    line = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    with _lock:
        channel().write(line)
        channel().flush()


def flush() -> None:
    try:
        if _channel is not None:
            _channel.flush()
    except OSError:
        pass
