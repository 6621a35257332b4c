"""A container's log as docker's json-file driver writes it: entries stamped and escaped by hand
(no json), rotated and compressed. Written by the monitor's copier (logcopier.py) and by a
foreground `run`'s relay, which needs this alone of the copier's module."""

from __future__ import annotations

import os

from minirun.timestamps import rfc3339_now

MAX_LINE = 16 * 1024  # docker's json-file splits longer lines
LOG_NAME = "container.log"
DROPPED_KEY = "LogBytesDropped"  # in state.json: output the disk would not take
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)} | {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


def entry(line: bytes, stream: str, stamp: str) -> bytes:
    text = line.decode("utf-8", "replace").translate(_ESCAPES)
    return f'{{"log": "{text}", "stream": "{stream}", "time": "{stamp}"}}\n'.encode("utf-8", "surrogatepass")


class LogFile:
    """The container's log, rotated as docker's json-file driver rotates it: past `max_size`
    bytes (0: never) the file becomes `<log>.1` (older ones move up to `<log>.<max_file - 1>`,
    the oldest goes), each compressed to `.gz` by a forked child when `compress` says. A write the
    disk refuses (ENOSPC, EIO) is dropped and counted, never fatal: the container goes on."""

    def __init__(self, path: str, max_size: int, max_file: int, compress: bool) -> None:
        self.path, self.max_size, self.max_file, self.compress = path, max_size, max_file, compress
        self.dropped = 0  # bytes of entries the disk would not take
        self.compressor = 0  # pid of the child compressing <log>.1
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self.size = os.fstat(self.fd).st_size
        except OSError:
            self.fd = -1  # tried again at the next write

    def write_entries(self, entries: list[bytes]) -> None:
        """Entries in as few writes as the size limit allows: the file rotates between two
        entries, never inside one, and never holds more than max_size (one bigger entry aside)."""
        batch: list[bytes] = []
        batch_size = 0
        for item in entries:
            if self.max_size and batch and self.size + batch_size + len(item) > self.max_size:
                self.write(b"".join(batch))
                batch, batch_size = [], 0
            batch.append(item)
            batch_size += len(item)
        if batch:
            self.write(b"".join(batch))

    def write(self, data: bytes) -> None:
        if self.max_size and self.size and self.size + len(data) > self.max_size:
            self._rotate()
        if self.fd < 0:
            self._open()
        view = memoryview(data)
        try:
            if self.fd < 0:
                raise OSError("no log file")
            while view:
                n = os.write(self.fd, view)
                self.size += n
                view = view[n:]
        except OSError:
            self.dropped += len(view)

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        self.wait_compressor()  # it may still be reading <log>.1
        try:
            if self.max_file > 1:
                for i in range(self.max_file - 1, 0, -1):
                    for suffix in (".gz", ""):
                        older = f"{self.path}.{i}{suffix}"
                        if os.path.exists(older):
                            if i == self.max_file - 1:
                                os.unlink(older)
                            else:
                                os.replace(older, f"{self.path}.{i + 1}{suffix}")
                os.replace(self.path, f"{self.path}.1")
                if self.compress:
                    self._compress(f"{self.path}.1")
            else:
                os.unlink(self.path)
        except OSError:
            pass  # a rotation that cannot happen now leaves the file growing until one can
        self._open()

    def _compress(self, path: str) -> None:
        pid = os.fork()
        if pid:
            self.compressor = pid
            return
        try:  # the child: zlib loads here only, the copier stays small
            import zlib

            from minirun.linux import close_fds  # ctypes: the server has it loaded

            close_fds()  # the server's fds, other containers' among them

            packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip format
            tmp = f"{path}.gz.tmp"
            with (
                open(path, "rb") as src,
                os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), "wb") as dst,
            ):
                while chunk := src.read(1 << 20):
                    dst.write(packer.compress(chunk))
                dst.write(packer.flush())
            os.replace(tmp, f"{path}.gz")
            os.unlink(path)
            os._exit(0)
        except BaseException:
            os._exit(1)  # the plain file stays: still readable by `logs`

    def wait_compressor(self) -> None:
        if self.compressor:
            try:
                os.waitpid(self.compressor, 0)
            except ChildProcessError:
                pass
            self.compressor = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.wait_compressor()


class Lines:
    """PID 1's output streams into `log` as docker's json-file entries: each complete line (one
    longer than MAX_LINE split) written as it comes, stamped with the time its chunk was read;
    what is left without a newline when the stream ends, last. The one writer of the log's
    entries: the monitor's copier (copy_output) and a foreground `run`'s relay
    (runtime/stdiorelay.py) both write through it. `streams`: a key (an fd) -> its stream name."""

    __slots__ = ("log", "streams", "pending")

    def __init__(self, log: LogFile, streams: dict[int, str]) -> None:
        self.log, self.streams = log, streams
        self.pending = dict.fromkeys(streams, b"")

    def add(self, key: int, chunk: bytes) -> None:
        stamp = rfc3339_now()
        parts = (self.pending[key] + chunk).split(b"\n")
        rest = parts.pop()
        complete = [line + b"\n" for line in parts]
        while len(rest) >= MAX_LINE:
            complete.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.pending[key] = rest
        if complete:
            stream = self.streams[key]
            self.log.write_entries([entry(line, stream, stamp) for line in complete])

    def end(self, key: int) -> None:
        rest = self.pending.pop(key, b"")
        if rest:
            self.log.write(entry(rest, self.streams[key], rfc3339_now()))
