"""`run -t`: a pty from the container's own devpts, its master relayed by the CLI.

PID 1 allocates the pty after pivot_root, through the new root's /dev/ptmx (-> pts/ptmx of the
devpts newinstance), so the container sees /dev/pts/0 and none of the host's ptys. It sends the
master to the CLI over an AF_UNIX socketpair (SCM_RIGHTS, runc's console-socket idea), makes the
slave its controlling terminal and its stdio, and execs. The CLI relays stdin -> master (-i only)
and master -> stdout until the master reports EIO: every slave is closed, which happens once PID 1
is gone (its namespace's other processes are killed before the parent hears of the exit).

Imported only with -t (termios, select and socket are not on the lean run path). PID 1 imports
it before pivot_root: termios is an extension module that would not be found afterwards.
"""

from __future__ import annotations

import _socket  # socket.py loads enum and selectors: ~1 MiB that the monitors' server would keep
import errno
import fcntl
import os
import select
import stat
import struct
import termios

from minirun import linux
from minirun.errors import MinirunError
from minirun.runtime import supervise

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    import signal
    import socket
    from typing import Any

    from minirun.runtime.stdiorelay import Sink
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

DEFAULT_SIZE = (24, 80)  # rows, cols: docker's when its stdout is not a terminal
_WINSIZE = "HHHH"
# asm-generic/ioctls.h; not in the termios module
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441


# --- in PID 1 ---------------------------------------------------------------------------------


def setup_console(sock: socket.socket, rows: int, cols: int, uid: int, bind_console: bool = True) -> None:
    """Allocate the pty in the container's devpts, hand the master to the CLI, make the slave the
    controlling terminal and fds 0-2. Runs after pivot_root, with privileges still held.
    `bind_console=False` for exec: an exec must not mount anything in the container."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise MinirunError(f"open /dev/ptmx: {exc.strerror}") from None
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        # TIOCGPTPEER: the slave from the master itself, no path lookup an image could redirect
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack(_WINSIZE, rows, cols, 0, 0))
        # runc's fixStdioPermissions: the user owns its terminal (the gid stays devpts' tty group)
        os.fchown(slave, uid, -1)
        if bind_console:
            _bind_console(slave)
        sock.sendmsg([b"pty"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))])
    except OSError as exc:
        raise MinirunError(f"setting up the pty: {exc.strerror or exc}") from None
    finally:
        os.close(master)
    sock.close()
    # PID 1 called setsid(): it is a session leader without a terminal, so this one becomes it
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)  # also with -t and no -i: docker's stdin is the pty then too
    if slave > 2:
        os.close(slave)


def _bind_console(slave: int) -> None:
    """runc's /dev/console: the container's own pty, never the host's console. Bound from the
    slave's fd onto the fd of the file made for it: an OCI bundle's /dev/pts may be a dir a
    running container writes, and /dev/pts/N looked up by name a link to a /proc/sys file, then
    bound writable where the container can write it (runc CVE-2025-52565)."""
    fd = _console_mount_point()
    try:
        # fd to fd, no path: the container's /proc may be a bundle's dir too, not procfs
        clone = linux.open_tree(slave, "", linux.OPEN_TREE_CLONE | linux.AT_EMPTY_PATH)
        try:
            flags = linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH
            linux.move_mount(clone, "", fd, "", flags)
        finally:
            os.close(clone)
    finally:
        os.close(fd)


def _console_mount_point() -> int:
    """/dev/console made, or the root's own opened O_PATH: a mount point needs no open(2) of its
    contents, and a FIFO there (a root whose /dev is no filesystem of the container's) would have
    kept a write-only open waiting for a reader for good, and a tty taken it as ours."""
    made = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open("/dev/console", made, 0o600)
    except FileExistsError:
        pass
    fd = os.open("/dev/console", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        os.close(fd)
        raise MinirunError("/dev/console in the root is a directory or a link, not a file to bind the console on")
    return fd


# --- in the CLI -------------------------------------------------------------------------------


def window_size(fd: int = 1) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`; docker's 24x80 when it is none (or reports 0x0)."""
    try:
        rows, cols, _, _ = struct.unpack(_WINSIZE, fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    except OSError:
        return DEFAULT_SIZE
    return (rows, cols) if rows and cols else DEFAULT_SIZE


def receive_master(sock: socket.socket) -> int | None:
    """The master PID 1 sends, or None when PID 1 failed before sending (its error explains)."""
    import array

    fds = array.array("i")
    try:
        # socket.recv_fds would drop MSG_CMSG_CLOEXEC (3.11 ignores its flags)
        _, ancdata, _, _ = sock.recvmsg(16, _socket.CMSG_LEN(fds.itemsize), _socket.MSG_CMSG_CLOEXEC)
    finally:
        sock.close()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    return fds[0] if fds else None


def attach(pid: int, master: int, interactive: bool, lines: Sink | None = None) -> int:
    """Relay the pty until PID 1 is gone; return its exit code (docker's 128+N on signal N).
    What the pty says also goes to `lines` (stdiorelay.Sink, keyed by `master`), if any: the
    container's log, one stream, as docker logs a container with a terminal.

    With -i the CLI's terminal goes raw (Ctrl-C, Ctrl-D reach the container as bytes, as in
    docker); without -i it stays as it is and Ctrl-C is a SIGINT the CLI forwards.
    """

    stdin_raw = interactive and os.isatty(0)
    previous = supervise.forward_signals(pid, also={signal.SIGWINCH: lambda *_: _resize(master)})
    saved = None
    try:
        _resize(master)  # a resize between measuring and the handler would be lost otherwise
        if stdin_raw:
            saved = termios.tcgetattr(0)
            termios.tcsetattr(0, termios.TCSANOW, make_raw(saved))
        _relay(master, interactive, lines)
        if lines is not None:
            lines.end(master)
    except BaseException:
        supervise.kill(pid)  # nobody would drain its output any more: never leave it blocked
        raise
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            supervise.restore_handlers(previous)
    return supervise.exit_code_of(status)


def make_raw(mode: list[Any]) -> list[int | list[bytes | int]]:
    """cfmakeraw(3), as docker's term.MakeRaw: no echo, no line editing, no signals, no output
    processing (the container's pty already turns \\n into \\r\\n). `mode` is what
    termios.tcgetattr returns (typeshed's list[Any]: six ints, then the control characters)."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = mode
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc = list(cc)
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


def _resize(master: int) -> None:
    """SIGWINCH: the CLI's terminal size onto the container's pty (the kernel then signals the
    container's foreground process group)."""
    rows, cols = window_size(1)
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack(_WINSIZE, rows, cols, 0, 0))
    except OSError:
        pass  # the master is closing: nothing left to resize


def _relay(master: int, interactive: bool, lines: Sink | None) -> None:
    # Non-blocking master: typed input the container does not read yet waits in `pending`
    # instead of blocking the CLI, which must keep draining the container's output.
    os.set_blocking(master, False)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    if interactive:
        poller.register(0, select.POLLIN)
    pending = b""
    output_ok = True
    while True:
        for fd, events in poller.poll():
            if fd == master:
                if events & select.POLLOUT and pending:
                    pending = _write_some(master, pending)
                if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = os.read(master, 65536)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if exc.errno == errno.EIO:  # no slave left open: the container is gone
                            return
                        raise
                    if not data:
                        return
                    if lines is not None:
                        lines.add(master, data)
                    if output_ok:
                        # a closed or hung-up stdout must not stop the draining: PID 1 would block
                        output_ok = write_all(1, data)
            else:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    data = b""  # the terminal hung up (SIGHUP is forwarded)
                if not data:
                    poller.unregister(0)
                    continue
                pending = _write_some(master, pending + data)
        poller.modify(master, select.POLLIN | (select.POLLOUT if pending else 0))


def _write_some(fd: int, data: bytes) -> bytes:
    try:
        return data[os.write(fd, data) :]
    except BlockingIOError:
        return data
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""  # the container is going away; its EIO on read ends the relay
        raise


def write_all(fd: int, data: bytes) -> bool:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # someone made our shared stdout non-blocking: wait, keep order
            select.select([], [fd], [])
        except OSError:
            return False
    return True
