"""docker's stream formats and the hijacked connection.

Without a terminal, output is multiplexed: each chunk behind an 8-byte header (the stream: 0
stdin, 1 stdout, 2 stderr; three zero bytes; the length, big-endian), so a client tells stdout
from stderr on one connection. With a terminal (Tty) the bytes go as they are.

Attach and exec start take the connection over (`hijack`): docker's clients ask with
`Connection: Upgrade` and `Upgrade: tcp`, get `101 UPGRADED`, and then both sides speak raw:
the container's output one way, its stdin the other, until the client's half-close ends stdin."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

STDIN, STDOUT, STDERR = 0, 1, 2
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


def frame(stream: int, payload: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def unframe(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole frames from the front of `data`, and what is left (a frame not yet whole)."""
    frames = []
    while len(data) >= 8:
        length = int.from_bytes(data[4:8], "big")
        if len(data) < 8 + length:
            break
        frames.append((data[0], data[8 : 8 + length]))
        data = data[8 + length :]
    return frames, data


class Output:
    """What a handler writes to its client: framed unless the stream is a terminal's."""

    def __init__(self, response: web.StreamResponse, tty: bool) -> None:
        self.response, self.tty = response, tty

    async def write(self, stream: int, data: bytes) -> None:
        if data:
            await self.response.write(data if self.tty else frame(stream, data))


class _Input:
    """The client's bytes after the upgrade (aiohttp's protocol feeds its payload parser, this):
    b"" at the client's half-close (its stdin's EOF)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self.queue.put_nowait(data)
        return False, b""

    def feed_eof(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(b"")

    async def read(self) -> bytes:
        return await self.queue.get()


class _Relay(asyncio.Protocol):
    def __init__(self, original: asyncio.BaseProtocol, input_: _Input) -> None:
        self.original, self.input = original, input_

    def data_received(self, data: bytes) -> None:
        self.input.feed_data(data)

    def eof_received(self) -> bool:
        self.input.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.input.feed_eof()
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()


class Hijacked:
    """A taken-over connection: `response` to write to, `input` to read the client's bytes."""

    def __init__(self, response: web.StreamResponse, input_: _Input) -> None:
        self.response, self.input = response, input_

    async def close(self) -> None:
        try:
            await self.response.write_eof()
        except (ConnectionError, RuntimeError):
            pass


async def hijack(request: web.Request, content_type: str) -> Hijacked:
    """Answer `101 UPGRADED` (or 200 for a client that did not ask to upgrade) and take the
    connection over: nothing after this is HTTP."""
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    headers = {"Content-Type": content_type}
    if upgrade:
        headers.update(Connection="Upgrade", Upgrade="tcp")
    response = web.StreamResponse(status=101 if upgrade else 200, headers=headers)
    # raw bytes follow, with no length and no chunks (aiohttp's websocket response does the same)
    response._length_check = False
    response.force_close()  # no next request on this connection
    await response.prepare(request)
    input_ = _Input()
    transport = request.transport
    assert transport is not None
    # the bytes the client sends from now on are the container's stdin: they go to `input_`, and
    # the client's half-close is its stdin's EOF, not the end (asyncio closes a transport whose
    # protocol's eof_received answers false); aiohttp's protocol keeps the rest (flow control, the
    # connection's loss)
    transport.set_protocol(_Relay(request.protocol, input_))
    return Hijacked(response, input_)


async def items(entries, stopped: threading.Event):
    """A blocking generator's items, read by a thread (a followed log waits in it for the next
    line); `stopped` ends it early. Handed over one by one: a follow's line is sent as it comes."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=1024)
    done = object()

    def put(item) -> None:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def pump() -> None:
        try:
            for item in entries:
                if stopped.is_set():
                    return
                put(item)
        except BaseException as exc:  # noqa: BLE001  (the handler raises it)
            put(exc)
        finally:
            if not stopped.is_set():
                put(done)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        item = await queue.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
