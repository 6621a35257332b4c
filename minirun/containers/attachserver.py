"""The attach side of a detached container's monitor: PID 1's terminal or open stdin kept by the
monitor, and `attach` clients served on a unix socket, `<container dir>/attach.sock` (root's
alone: mode 0600, and a peer that is not root is turned away).

Before PID 1 starts, the monitor (monitor.py) makes a `Stdio`: with -t it asks PID 1 for a pty
and receives its master; with -i and no -t it keeps the write end of a pipe that is PID 1's
stdin, so stdin stays open with nobody attached (docker's "keep STDIN open"); it binds the
socket; and a client that started the container (`start -a`, `run -it`) comes as an fd already
connected, so it misses nothing PID 1 writes. The copier (logcopier.py) then runs a `Hub` in its
poll loop: whatever PID 1 writes goes to the log and to every client; what clients type goes to
the pty or the pipe.

The protocol, both ways: frames of one kind byte, a 4-byte big-endian length and the payload.
Lean as the copier: os and select at import; socket, fcntl and termios load only when a client
connects or a window is resized.
"""

from __future__ import annotations

import os
import select
import sys

TYPE_CHECKING = False  # not typing's: the copier stays as lean as it can
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "attach.sock"
# monitor -> client
STDOUT, STDERR, EXIT = b"1", b"2", b"x"
# client -> monitor
STDIN, CLOSE_STDIN, RESIZE, SIGNAL = b"0", b"c", b"w", b"s"
HEADER = 5
MAX_FRAME = 1 << 20  # a client sending more in one frame is not ours: it goes
# past this much output waiting for one client, PID 1's output is read no further until it drains
# (docker's ~1 MB buffer: a slow client slows the container, it never loses output)
MAX_BACKLOG = 1 << 20
MAX_INPUT = 1 << 16  # typed input the container has not read yet; past it clients are not read
_SIZE_MAX = 0xFFFF


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


class FrameReader:
    """Bytes in, whole frames out; None from feed() on a frame no client of ours would send."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]] | None:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER:
            length = int.from_bytes(self.buffer[1:HEADER], "big")
            if length > MAX_FRAME:
                return None
            if len(self.buffer) < HEADER + length:
                break
            frames.append((self.buffer[:1], self.buffer[HEADER : HEADER + length]))
            self.buffer = self.buffer[HEADER + length :]
        return frames


def socket_path(container_dir: str) -> str:
    return os.path.join(container_dir, SOCKET_NAME)


def short_path(dir_fd: int, name: str) -> str:
    """A unix socket's address through /proc/self/fd: sun_path holds 108 bytes, a store's
    container dir may be longer."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def pack_size(rows: int, cols: int) -> bytes:
    return f"{rows} {cols}".encode()


def unpack_size(payload: bytes) -> tuple[int, int] | None:
    try:
        rows, cols = (int(n) for n in payload.split())
    except ValueError:
        return None
    return (rows, cols) if 0 < rows <= _SIZE_MAX and 0 < cols <= _SIZE_MAX else None


# --- in the monitor, before PID 1 starts -------------------------------------------------------


class Stdio:
    """PID 1's stdin and terminal as the monitor arranges them. `extra`: the monitor's optional
    arguments from spawn_monitor: the fd of a connected first client (-1: none), then the
    terminal's first rows and cols (0 0: the container's HostConfig.ConsoleSize, else 24x80)."""

    def __init__(self, container, extra: list[str]) -> None:
        config = container.config
        self.tty, self.interactive = bool(config.tty), bool(config.interactive)
        self.stdin_once = bool(config.stdin_once)
        self.client = int(extra[0]) if extra else -1
        size = (int(extra[1]), int(extra[2])) if len(extra) >= 3 else (0, 0)
        if not any(size):  # docker sets the size a create request gave whenever either is set
            given = getattr(config, "console_size", None) or []
            size = (given[0], given[1]) if len(given) == 2 and any(given) else (24, 80)
        self.size = size
        self.stdin_r = self.stdin_w = self.master = self.listener = -1
        try:
            if self.interactive and not self.tty:
                self.stdin_r, self.stdin_w = os.pipe()
            self.listener = listen(container.dir)
        except BaseException:
            self.close()
            raise

    def stdin(self, null: int) -> int:
        """The fd PID 1 gets as its stdin: the pipe's read end with -i, else `null`."""
        return self.stdin_r if self.stdin_r >= 0 else null

    def configure(self, plan) -> None:
        if self.tty:
            plan.tty = True
            plan.rows, plan.cols = self.size

    def started(self, started) -> None:
        """Right after the fork: PID 1 holds its end of the pipe; with -t its pty's master
        arrives, before its exec, so before the start error pipe's EOF."""
        if self.stdin_r >= 0:
            os.close(self.stdin_r)
            self.stdin_r = -1
        if self.tty and started.console is not None:
            from minirun.runtime import tty

            master = tty.receive_master(started.console)
            self.master = master if master is not None else -1

    def missing_console(self) -> bool:
        """PID 1 exec'd without sending its master: a terminal nobody could read."""
        return self.tty and self.master < 0

    def copier_arg(self) -> str:
        """What the copier's Hub needs, as one argument; the fds stay open across its exec."""
        for fd in (self.listener, self.client, self.stdin_w, self.master):
            if fd >= 0:
                os.set_inheritable(fd, True)
        flags = int(self.interactive), int(self.stdin_once)
        return " ".join(str(n) for n in (self.listener, self.client, self.stdin_w, self.master, *flags))

    def close(self) -> None:
        for fd in (self.stdin_r, self.stdin_w, self.master, self.listener, self.client):
            if fd >= 0:
                os.close(fd)
        self.stdin_r = self.stdin_w = self.master = self.listener = self.client = -1


def listen(container_dir: str) -> int:
    """The listening socket, root's alone (a previous run's socket file is replaced)."""
    import socket

    dir_fd = os.open(container_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.unlink(SOCKET_NAME, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # bind creates the file: 0600 from its first moment
            try:
                sock.bind(short_path(dir_fd, SOCKET_NAME))
            finally:
                os.umask(old_umask)
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock.detach()
    finally:
        os.close(dir_fd)


# --- in the copier, while PID 1 runs -----------------------------------------------------------


class _Client:
    __slots__ = ("out", "reader")

    def __init__(self) -> None:
        self.out = bytearray()
        self.reader = FrameReader()


class Hub:
    """The clients, the listening socket and PID 1's input, served from the copier's poll loop
    (logcopier.copy_output): register() once, then handle() for the fds owns() says are its own,
    send() for every chunk PID 1 writes, update() after each round; finish() once PID 1's exit
    is recorded."""

    def __init__(self, arg: str, pid: int) -> None:
        listener, client, stdin_w, master, interactive, stdin_once = (int(n) for n in arg.split())
        self.pid, self.listener, self.master, self.stdin_once = pid, listener, master, bool(stdin_once)
        # the copier reads the master and closes it once PID 1 is gone; resizes and typed input
        # go through a copy of our own, so never to whatever reuses that fd's number
        self.console = os.dup(master) if master >= 0 else -1
        self.input = (self.console if interactive else -1) if master >= 0 else stdin_w
        if self.input >= 0:
            os.set_blocking(self.input, False)  # a container that does not read must not stop us
        self.pending_input = bytearray()
        self.closing_input = False
        self.input_polled = False
        self.clients: dict[int, _Client] = {}
        self.poller: select.poll | None = None
        self._accepting: Any = None  # a socket.socket around `listener`, made at the first connection
        self._first = client

    def streams(self) -> dict[int, str]:
        """PID 1's output besides its pipes: the pty's master (a terminal has one stream)."""
        return {self.master: "stdout"} if self.master >= 0 else {}

    def register(self, poller: select.poll) -> None:
        self.poller = poller
        poller.register(self.listener, select.POLLIN)
        if self._first >= 0:
            os.set_blocking(self._first, False)
            self._add(self._first)
            self._first = -1  # a client now, closed as one

    def owns(self, fd: int) -> bool:
        return fd == self.listener or fd == self.input or fd in self.clients

    def handle(self, fd: int, events: int) -> None:
        if fd == self.listener:
            self._accept()
        elif fd == self.input:
            if events & select.POLLOUT:
                self._write_input()
            elif events & (select.POLLERR | select.POLLHUP):
                self._drop_input()  # the pipe's reader is gone: PID 1 closed its stdin
        elif fd in self.clients:
            if events & select.POLLOUT:
                self._flush(fd)
            if fd in self.clients and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._receive(fd)

    def send(self, stream: str, chunk: bytes) -> None:
        data = frame(STDOUT if stream == "stdout" else STDERR, chunk)
        for fd in list(self.clients):
            self.clients[fd].out += data
            self._flush(fd)

    def backlogged(self) -> bool:
        return any(len(client.out) > MAX_BACKLOG for client in self.clients.values())

    def update(self) -> None:
        """Each fd's events for the next poll: clients are read while typed input has room."""
        assert self.poller is not None
        reading = select.POLLIN if len(self.pending_input) < MAX_INPUT else 0
        for fd, client in self.clients.items():
            self.poller.modify(fd, reading | (select.POLLOUT if client.out else 0))
        wanted = self.input >= 0 and bool(self.pending_input)
        if wanted != self.input_polled:
            if wanted:
                self.poller.register(self.input, select.POLLOUT)
            else:
                self.poller.unregister(self.input)
            self.input_polled = wanted

    def finish(self, code: int, timeout: float = 5.0) -> None:
        """PID 1's exit is recorded: every client gets what is still on its way and the exit
        code, within `timeout` (a client that stopped reading does not hold the copier), and
        everything closes."""
        import time

        self._close_listener()
        self._drop_input()
        if self.console >= 0:
            os.close(self.console)
            self.console = -1
        for client in self.clients.values():
            client.out += frame(EXIT, str(code).encode())
        deadline = time.monotonic() + timeout
        poller = select.poll()
        for fd in list(self.clients):
            self._flush(fd)
            if fd in self.clients:
                poller.register(fd, select.POLLOUT)
        while self.clients and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                self._flush(fd)
                if fd not in self.clients:
                    poller.unregister(fd)
        for fd in list(self.clients):
            self._drop(fd)

    def fds(self) -> list[int]:
        """Every fd the hub holds (for a forked finisher that closes all others)."""
        return [fd for fd in (self.listener, self.input, self.console, self._first, *self.clients) if fd >= 0]

    def release(self) -> None:
        """Close this process's copies of every fd, telling no one: the monitor's, once the
        finisher it forked holds its own (logcopier.run) and will finish()."""
        self._close_listener()
        self._drop_input()
        for fd in (self.console, self._first, *self.clients):
            if fd >= 0:
                os.close(fd)
        self.console = self._first = -1
        self.clients.clear()

    def _accept(self) -> None:
        import _socket  # socket.py loads enum and selectors, which the monitors' server would keep

        if self._accepting is None:
            self._accepting = _socket.socket(fileno=self.listener)
        while True:
            try:
                fd, _ = self._accepting._accept()  # accept4 with SOCK_CLOEXEC
            except OSError:  # none left (EAGAIN), or one that gave up before we got to it
                return
            conn = _socket.socket(fileno=fd)
            # the socket file is root's 0600 already; a peer that is not root (or us) is not one
            credentials = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            if int.from_bytes(credentials[4:8], sys.byteorder) not in (0, os.geteuid()):
                conn.close()
                continue
            conn.setblocking(False)
            self._add(conn.detach())

    def _add(self, fd: int) -> None:
        assert self.poller is not None
        self.clients[fd] = _Client()
        self.poller.register(fd, select.POLLIN)

    def _receive(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        frames = self.clients[fd].reader.feed(data) if data else None
        if frames is None:  # gone (a detach is just that), or not speaking our protocol
            self._drop(fd)
            return
        for kind, payload in frames:
            self._dispatch(kind, payload)

    def _dispatch(self, kind: bytes, payload: bytes) -> None:
        if kind == STDIN:
            if self.input >= 0 and not self.closing_input:
                self.pending_input += payload
                self._write_input()
        elif kind == CLOSE_STDIN:
            # docker's StdinOnce (run -i, create -i): the first attached client's EOF is the
            # container's; a terminal has no EOF of its own (^D is a byte)
            if self.stdin_once and self.master < 0 and self.input >= 0:
                self.closing_input = True
                if not self.pending_input:
                    self._drop_input()
        elif kind == RESIZE:
            size = unpack_size(payload)
            if size is not None and self.console >= 0:
                self._resize(*size)
        elif kind == SIGNAL and payload.isdigit() and 0 < int(payload) < 65:
            try:
                os.kill(self.pid, int(payload))  # our own child, not reaped yet: never a reused pid
            except ProcessLookupError:
                pass

    def _resize(self, rows: int, cols: int) -> None:
        import fcntl
        import termios

        size = b"".join(n.to_bytes(2, sys.byteorder) for n in (rows, cols, 0, 0))  # struct winsize
        try:
            fcntl.ioctl(self.console, termios.TIOCSWINSZ, size)
        except OSError:
            pass  # the terminal is going away with PID 1

    def _flush(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            while client.out:
                del client.out[: os.write(fd, client.out)]
        except BlockingIOError:
            pass
        except OSError:  # the client went away
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        del self.clients[fd]
        if self.poller is not None:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        os.close(fd)

    def _write_input(self) -> None:
        try:
            while self.pending_input:
                del self.pending_input[: os.write(self.input, self.pending_input)]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: PID 1 closed its stdin; EIO: its terminal is going away
            self._drop_input()
            return
        if self.closing_input:
            self._drop_input()

    def _drop_input(self) -> None:
        self.pending_input.clear()
        if self.input >= 0:
            if self.input_polled and self.poller is not None:
                self.poller.unregister(self.input)
            self.input_polled = False
            if self.input != self.console:
                os.close(self.input)
            self.input = -1

    def _close_listener(self) -> None:
        if self.listener < 0:
            return
        if self.poller is not None:
            self.poller.unregister(self.listener)
        if self._accepting is not None:
            self._accepting.close()
        else:
            os.close(self.listener)
        self.listener = -1
