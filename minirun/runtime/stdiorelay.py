"""A container's stdio is never a host inode: a foreground `run` or `exec` without -t hands the
process a pipe for each of the CLI's 0-2 that is not a pipe or a socket (a file, a terminal,
/dev/null), and copies between them until the process exits, as docker's and podman's shims do.

An fd of a host file or terminal is the inode itself: the container's root (CAP_FOWNER,
CAP_DAC_OVERRIDE) may chmod or chown it through /proc/self/fd/N (`run ... >/dev/null` then
`chmod 000 /proc/self/fd/1` changed the host's /dev/null; `run ... >out` then chmod 4755 made a
root-owned setuid file of the container's writing), reopen it and read what it held before, or
read the terminal's input. A pipe or a socket gives none of that: those pass as they are.

With a log (a foreground `run` whose log driver keeps one), PID 1's stdout and stderr always go
through pipes of their own, whatever the CLI's are, so that what it writes is logged as it goes,
as docker's shim logs it whether or not a client is attached; each stream's bytes reach the CLI's
fd unchanged and in order. A destination that is gone (EPIPE: the reader of the CLI's pipe closed
it) closes that stream's pipe, so PID 1 gets its EPIPE or SIGPIPE as if it had the CLI's pipe.
"""

from __future__ import annotations

import errno
import os
import select  # (not in wait(): after the fork its import writes copy-on-write pages)
import stat

from minirun.runtime import supervise

_CHUNK = 65536

TYPE_CHECKING = False  # typing costs ~6 ms on the path the start benchmark times
if TYPE_CHECKING:
    from typing import Protocol

    class Sink(Protocol):
        """Where logged output goes (containers/logfile.Lines): chunks of a stream by key, then its end."""

        def add(self, key: int, chunk: bytes) -> None: ...

        def end(self, key: int) -> None: ...


def _host_inode(fd: int) -> tuple[int, int] | None:
    """(st_dev, st_ino) of `fd` if the process must not have it, None for a pipe or a socket
    (or a closed fd)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return None
    return st.st_dev, st.st_ino


class Relay:
    """Pipes in place of the CLI's 0 (with -i), 1 and 2 where they are host inodes; `child` is
    what the process gets as its 0, 1, 2. With `logged`, a pipe of its own for each of 1 and 2
    whatever it is; what comes through them also goes to `lines` once set (a Sink, keyed by
    the read ends streams() names)."""

    def __init__(self, interactive: bool, logged: bool = False) -> None:
        self.child = [0, 1, 2]
        self._outputs: dict[int, int] = {}  # a pipe's read end -> the CLI's fd it goes to
        self._input: tuple[int, int] | None = None  # (the CLI's 0, the pipe's write end)
        self._child_side: list[int] = []
        self.lines: Sink | None = None
        shared: dict[tuple[int, int], int] = {}
        for fd in (0, 1, 2) if interactive else (1, 2):
            inode = _host_inode(fd)
            if fd and logged:  # a stream of its own: the log tells stdout from stderr
                inode = (-1, fd)
            if inode is None:
                continue
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            if fd == 0:
                self.child[0] = read_end
                self._input = (0, write_end)
                self._child_side.append(read_end)
            elif inode in shared:  # 2>&1: one pipe keeps the order of what the two streams say
                os.close(read_end)
                os.close(write_end)
                self.child[fd] = shared[inode]
            else:
                self.child[fd] = shared[inode] = write_end
                self._outputs[read_end] = fd
                self._child_side.append(write_end)
        self.needed = bool(self._child_side)

    def streams(self) -> dict[int, str]:
        """The output pipes' read ends -> "stdout" or "stderr": the keys `lines` gets."""
        return {pipe: "stdout" if fd == 1 else "stderr" for pipe, fd in self._outputs.items()}

    def copy_in_child(self) -> int:
        """Fork a process that copies the outputs until every writer has gone, for a process whose
        waiting is someone else's (a build's RUN); returns its pid. The child's ends stay here:
        once the process is done, close_child_side() lets the copier see EOF and end."""
        pid = os.fork()
        if pid == 0:  # the copier: never returns
            status = 0
            try:
                for fd in self._child_side:
                    os.close(fd)
                for fd in self._outputs:
                    os.set_blocking(fd, False)
                while self._outputs:
                    for fd in select.select(list(self._outputs), [], [])[0]:
                        self._copy_out(fd)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        for fd in self._outputs:  # the copier's now
            os.close(fd)
        self._outputs = {}
        return pid

    def close_child_side(self) -> None:
        """Once the process is forked: only its copies of the child's ends may remain, so that
        its exit (and its children's) reads as EOF."""
        for fd in self._child_side:
            os.close(fd)
        self._child_side = []

    def close(self) -> None:
        self.close_child_side()
        for fd in list(self._outputs):
            self._close_output(fd)  # the log gets a last line without its newline
        if self._input is not None:
            os.close(self._input[1])
            self._input = None

    def wait(self, pid: int) -> int:
        """Copy until `pid` exits, forwarding signals to it; its exit code as
        supervise.wait_for_exit gives it. What its output pipes hold then is copied too; a
        process it left behind that still writes there is not waited for."""
        self.close_child_side()
        pidfd = os.pidfd_open(pid)
        previous = supervise.forward_signals(pid)
        pending = b""
        try:
            for fd in self._outputs:
                os.set_blocking(fd, False)
            if self._input is not None:
                os.set_blocking(self._input[1], False)
            exited = False
            while not exited:
                reads, writes = [pidfd, *self._outputs], []
                if self._input is not None and pending:
                    writes.append(self._input[1])
                elif self._input is not None:
                    reads.append(self._input[0])
                readable, writable, _ = select.select(reads, writes, [])
                exited = pidfd in readable
                for fd in [fd for fd in readable if fd in self._outputs]:
                    self._copy_out(fd)
                if self._input is not None:
                    if self._input[0] in readable:
                        pending = self._read_input()
                    elif writable:
                        pending = self._write_input(pending)
            for fd in list(self._outputs):
                self._copy_out(fd)
            _, status = os.waitpid(pid, 0)
        except BaseException:
            supervise.kill(pid)  # nobody would drain its output any more: never leave it blocked
            os.waitpid(pid, 0)
            raise
        finally:
            os.close(pidfd)
            supervise.restore_handlers(previous)
            self.close()
        return supervise.exit_code_of(status)

    def _copy_out(self, fd: int) -> None:
        """What the pipe `fd` holds now, to its destination; EOF closes it."""
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            if not data:
                self._close_output(fd)
                return
            if self.lines is not None:
                self.lines.add(fd, data)
            if not _write_all(self._outputs[fd], data):
                self._close_output(fd)  # PID 1's next write gets the EPIPE the CLI's pipe gave
                return

    def _close_output(self, fd: int) -> None:
        os.close(fd)
        del self._outputs[fd]
        if self.lines is not None:
            self.lines.end(fd)

    def _read_input(self) -> bytes:
        assert self._input is not None
        data = os.read(self._input[0], _CHUNK)
        if not data:  # EOF: the process's stdin ends too
            os.close(self._input[1])
            self._input = None
        return data

    def _write_input(self, pending: bytes) -> bytes:
        assert self._input is not None
        try:
            return pending[os.write(self._input[1], pending) :]
        except BlockingIOError:
            return pending
        except BrokenPipeError:  # the process closed its stdin: the rest has nowhere to go
            os.close(self._input[1])
            self._input = None
            return b""


def _write_all(fd: int, data: bytes) -> bool:
    """To the CLI's own stdout or stderr; a destination that refuses it (EIO, ENOSPC, EBADF) drops
    the rest, as the process's own write would have failed. False for EPIPE: its reader is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # someone made our shared stdout non-blocking: wait, keep order
            select.select([], [fd], [])
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return False
            if exc.errno in (errno.EIO, errno.ENOSPC, errno.EBADF):
                return True
            raise
    return True
