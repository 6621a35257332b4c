"""The client side of attach (`attach`, `start -a -i`, `run -it`): the user's terminal joined to
a container's stdio through its monitor's socket (attachserver.py), docker's way: with -t and
stdin attached the terminal goes raw and the detach keys (ctrl-p ctrl-q, or --detach-keys) leave
the container running; window size changes follow the terminal; signals the client gets are
passed on to PID 1 (--sig-proxy); the container's exit code is the client's.
"""

from __future__ import annotations

import errno
import os
import select
import signal

from minirun.containers import attachserver
from minirun.containers.attachserver import FrameReader, frame
from minirun.errors import Conflict, MinirunError, UsageError
from minirun.runtime.tty import write_all

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
# docker's names of the control keys beyond ctrl-a..ctrl-z
_CONTROL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
_OUTGOING_MAX = 1 << 16  # typed input not yet sent: stdin is not read while this much waits
DETACHED = None  # relay()'s answer when the detach keys were typed
LOST = -1  # relay()'s answer when the monitor closed without an exit code (the record has it)


def parse_detach_keys(text: str) -> bytes:
    """docker's --detach-keys: comma-separated keys, each a single character or `ctrl-` with
    one of a-z @ [ \\ ] ^ _ ("ctrl-p,ctrl-q" is ^P ^Q); "" means docker's default."""
    if not text:
        text = DEFAULT_DETACH_KEYS
    keys = bytearray()
    for key in text.split(","):
        if len(key) == 1 and key.isascii():
            keys.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and "a" <= key[5] <= "z":
            keys.append(ord(key[5]) - ord("a") + 1)
        elif key.startswith("ctrl-") and key[5:] in _CONTROL:
            keys.append(_CONTROL[key[5:]])
        elif key == "ctrl-\\\\":  # the docs spell ctrl-\ with two backslashes
            keys.append(_CONTROL["\\"])
        else:
            raise UsageError(f"invalid detach keys ({text}): unknown key {key!r}")
    return bytes(keys)


class EscapeMatcher:
    """Typed bytes in, bytes for the container out, until the detach sequence is typed: a prefix
    of it is held back, and passed on as typed if the next key does not continue it (docker's
    escape proxy)."""

    def __init__(self, keys: bytes) -> None:
        self.keys, self.held = keys, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(what the container gets now, whether the sequence is complete)."""
        out = bytearray()
        for byte in data:
            key = bytes((byte,))
            if not self.keys.startswith(self.held + key):
                out += self.held  # not the keys after all: typed as it was
                self.held = b""
                if not self.keys.startswith(key):  # this key may start them anew
                    out += key
                    continue
            self.held += key
            if self.held == self.keys:
                self.held = b""
                return bytes(out), True
        return bytes(out), False


def connect(container) -> int:
    """A connected, non-blocking socket fd to the container's monitor; Conflict when the
    container does not run (docker's words)."""
    import socket

    stopped = Conflict("You cannot attach to a stopped container, start it first")
    if container.state.get("Status") != "running":
        raise stopped
    dir_fd = os.open(container.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(attachserver.short_path(dir_fd, attachserver.SOCKET_NAME))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise stopped from None  # its monitor is gone (or predates attach)
    except OSError as exc:
        sock.close()
        raise MinirunError(f"attach to {container.id[:12]}: {exc.strerror or exc}") from None
    finally:
        os.close(dir_fd)
    sock.setblocking(False)
    return sock.detach()


def console_size(tty: bool) -> tuple[int, int]:
    """The container terminal's first size: the client's terminal's (docker measures stdout)."""
    if not tty:
        return (24, 80)
    from minirun.runtime.tty import window_size

    return window_size(1)


def relay(sock: int, *, tty: bool, stdin: bool, keys: bytes, sig_proxy: bool, nudge: bool = False) -> int | None:
    """Join the terminal (fds 0-2) to the connected `sock` until the container exits (its exit
    code) or the detach keys are typed (DETACHED). `stdin`: typed input goes to the container;
    with `tty` too, the terminal is raw meanwhile and the detach keys count. `nudge`: a size one
    bigger first, as docker's attach does, so a shell that already printed its prompt gets a
    SIGWINCH and redraws it. The socket is closed on return."""
    from minirun.runtime import supervise

    watched = [signal.SIGWINCH, *supervise.FORWARDED_SIGNALS]
    # the handlers only wake the loop: the signal numbers arrive on the wakeup pipe, in order
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in watched}
    previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
    saved = None
    try:
        if stdin and tty and os.isatty(0):
            import termios

            from minirun.runtime.tty import make_raw

            saved = termios.tcgetattr(0)
            termios.tcsetattr(0, termios.TCSANOW, make_raw(saved))
        session = _Session(sock, keys if (stdin and tty) else b"", sig_proxy)
        if tty and os.isatty(1):
            session.resize(nudge)
        return session.run(wake_r, stdin)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fd in (wake_r, wake_w, sock):
            os.close(fd)


class _Session:
    """One attach's loop: frames from the monitor to fds 1 and 2, stdin and signals to it."""

    def __init__(self, sock: int, keys: bytes, sig_proxy: bool) -> None:
        self.sock, self.sig_proxy = sock, sig_proxy
        self.outgoing = bytearray()
        self.reader = FrameReader()
        self.matcher = EscapeMatcher(keys) if keys else None
        self.output_ok = {1: True, 2: True}

    def resize(self, nudge: bool = False) -> None:
        from minirun.runtime.tty import window_size

        rows, cols = window_size(1)
        if nudge:
            self.outgoing += frame(attachserver.RESIZE, attachserver.pack_size(rows + 1, cols + 1))
        self.outgoing += frame(attachserver.RESIZE, attachserver.pack_size(rows, cols))

    def run(self, wake_r: int, stdin: bool) -> int | None:
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        reading_stdin = stdin
        while True:
            poller.register(self.sock, select.POLLIN | (select.POLLOUT if self.outgoing else 0))
            if reading_stdin and len(self.outgoing) < _OUTGOING_MAX:
                poller.register(0, select.POLLIN)
            else:
                _forget(poller, 0)
            for fd, events in poller.poll():
                if fd == wake_r:
                    self._signals(wake_r)
                elif fd == 0:
                    data = _read(0)
                    if not data:  # EOF: the container's too, if it is StdinOnce
                        reading_stdin = False
                        self.outgoing += frame(attachserver.CLOSE_STDIN)
                        continue
                    if self.matcher is not None:
                        data, detached = self.matcher.feed(data)
                        if detached:
                            self._flush_now()
                            return DETACHED
                    if data:
                        self.outgoing += frame(attachserver.STDIN, data)
                else:
                    if events & select.POLLOUT:
                        self._send()
                    if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        code = self._receive()
                        if code is not None:
                            return code

    def _signals(self, wake_r: int) -> None:
        try:
            numbers = os.read(wake_r, 256)
        except BlockingIOError:
            return
        for sig in numbers:
            if sig == signal.SIGWINCH:
                self.resize()
            elif self.sig_proxy:
                self.outgoing += frame(attachserver.SIGNAL, str(sig).encode())
            elif sig == signal.SIGINT:
                raise KeyboardInterrupt  # as without a handler, but with the terminal restored
            else:
                raise SystemExit(128 + sig)

    def _receive(self) -> int | None:
        """An exit code once the monitor sends it (or LOST if it closes first), else None."""
        try:
            data = _read(self.sock)
        except BlockingIOError:
            return None
        frames = self.reader.feed(data) if data else None
        if frames is None:  # closed, or not our protocol
            return LOST
        for kind, payload in frames:
            if kind == attachserver.EXIT:
                return int(payload)
            fd = 2 if kind == attachserver.STDERR else 1
            if self.output_ok[fd]:
                # a closed stdout must not stop the draining: the container would block
                self.output_ok[fd] = write_all(fd, payload)
        return None

    def _send(self) -> None:
        try:
            del self.outgoing[: os.write(self.sock, self.outgoing)]
        except BlockingIOError:
            pass
        except OSError:
            self.outgoing.clear()  # the monitor is gone: its EOF ends the loop

    def _flush_now(self) -> None:
        """What was typed before the detach keys, sent before we go (a short wait at most)."""
        deadline = 50
        while self.outgoing and deadline:
            if not select.select([], [self.sock], [], 0.01)[1]:
                deadline -= 1
                continue
            self._send()


def _forget(poller: select.poll, fd: int) -> None:
    try:
        poller.unregister(fd)
    except KeyError:
        pass


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ECONNRESET, errno.EBADF):
            return b""  # the terminal hung up, or the monitor went away
        raise


# --- the verbs' part ----------------------------------------------------------------------------


def attach(containers, container, *, stdin: bool = True, sig_proxy: bool = True, keys: bytes = b"") -> int:
    """`attach`: to a running container's stdio; stdin only if the container keeps it open (-i)."""
    from minirun.containers.lifecycle import refuse_dead
    from minirun.containers.liveness import refresh

    container = refresh(containers, container)
    refuse_dead(container)
    if container.state.get("Paused"):
        raise Conflict("You cannot attach to a paused container, unpause it first")
    _check_terminal(container.config.tty, stdin)  # docker checks before it drops stdin for a non -i
    stdin = stdin and bool(container.config.interactive)
    sock = connect(container)
    return _attached(containers, container, sock, stdin, sig_proxy, keys, nudge=True)


def start_attached(containers, container, *, stdin: bool, keys: bytes = b"") -> int:
    """`start -a` / `start -ai`: attached before PID 1 starts (a socket the monitor gets at its
    start), so nothing it writes is missed; a running container is attached to as it runs."""
    import socket

    from minirun.containers import lifecycle
    from minirun.containers.liveness import is_running, refresh

    container = refresh(containers, container)
    if is_running(container):
        return attach(containers, container, stdin=stdin, keys=keys)
    stdin = stdin and bool(container.config.interactive)
    _check_terminal(container.config.tty, stdin)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            size = console_size(container.config.tty)
            lifecycle.start(containers, container, attach_fd=theirs.fileno(), console_size=size)
        finally:
            theirs.close()
    except BaseException:
        ours.close()
        raise
    ours.setblocking(False)
    return _attached(containers, container, ours.detach(), stdin, True, keys)


def run_attached(containers, container, on_spawned, keys: bytes, sig_proxy: bool) -> int:
    """`run -it`: the container under a monitor of its own, as `run -d` has, with this client
    attached from the start; so the detach keys can leave it running."""
    import socket

    from minirun.containers.detach import spawn_monitor
    from minirun.containers.removal import discard

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            size = console_size(container.config.tty)
            spawn_monitor(containers.store.root, container.id, on_spawned, attach_fd=theirs.fileno(), console_size=size)
        finally:
            theirs.close()
    except BaseException:
        ours.close()
        if container.config.auto_remove:
            discard(containers, container)  # the monitor may have removed it already
        raise
    ours.setblocking(False)
    return _attached(containers, container, ours.detach(), True, sig_proxy, keys)


def _check_terminal(tty: bool, stdin: bool) -> None:
    if tty and stdin and not os.isatty(0):
        # docker's check: a terminal's input must come from a terminal (raw mode, the detach keys)
        raise UsageError("the input device is not a TTY")


def _attached(containers, container, sock: int, stdin: bool, sig_proxy: bool, keys: bytes, nudge: bool = False) -> int:
    import sys

    from minirun.containers.container import record_event

    record_event(containers.store.root, container, "attach")
    code = relay(
        sock,
        tty=bool(container.config.tty),
        stdin=stdin,
        keys=keys or parse_detach_keys(""),
        sig_proxy=sig_proxy,
        nudge=nudge,
    )
    if code is DETACHED:
        sys.stderr.write("read escape sequence\n")  # docker's words
        record_event(containers.store.root, container, "detach")
        return 0
    if code == LOST:  # the monitor went without a word: the record says (liveness.refresh)
        from minirun.containers.lifecycle import wait_for_exit

        return int(wait_for_exit(containers, container, 10).state.get("ExitCode") or 0)
    return code
