"""Work that needs mounts the host must never see (export's read-only union, build's COPY):
done in a forked child that first takes a private mount namespace. Its mounts die with it,
whatever happens, and its error comes back as one line."""

from __future__ import annotations

import os
from collections.abc import Callable

from minirun.childfailure import read_report, send_report
from minirun.errors import MinirunError


def in_private_mounts(work: Callable[[], None], what: str) -> None:
    """Run `work()` in a child with its own, private mount namespace; raise `what: <error>` if it
    fails. The child never returns into the caller."""
    from minirun import linux

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            linux.unshare(linux.CLONE_NEWNS)
            # private first: without it, mounts below a shared / would propagate to the host
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            work()
        except BaseException as exc:
            text = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
            code = 1
            send_report(write_fd, code, text or type(exc).__name__)
        finally:
            os._exit(code)
    os.close(write_fd)
    failure = read_report(read_fd)
    _, status = os.waitpid(pid, 0)
    if failure is not None or os.waitstatus_to_exitcode(status) != 0:
        raise MinirunError(f"{what}: {failure.message if failure else 'the child process failed'}")
