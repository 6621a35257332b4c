"""A started PID 1 seen from its parent: the signals passed on to it, the wait, and docker's exit
code. Shared by the foreground run, `run -t`'s relay and exec."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    # what signal.signal takes and gives back: a function, SIG_DFL, SIG_IGN, or None (not set from Python)
    Handler = Callable[[int, FrameType | None], object] | int | None
    import signal
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

# What the parent passes on to PID 1; start() blocks them before the fork so none is lost.
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def wait_for_exit(pid: int) -> int:
    """Wait for PID 1, forwarding the signals minirun receives; docker's exit code (128+N when
    killed by signal N)."""
    previous = forward_signals(pid)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        restore_handlers(previous)
    return exit_code_of(status)


def forward_signals(pid: int, also: dict[int, Handler] | None = None) -> dict[int, Handler]:
    """Send FORWARDED_SIGNALS on to PID 1 (plus handlers of `also`), then unblock what start()
    blocked. Returns the handlers to give back to restore_handlers."""
    handlers: dict[int, Handler] = {sig: (lambda signum, _frame: _forward(pid, signum)) for sig in FORWARDED_SIGNALS}
    handlers.update(also or {})
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    return previous


def restore_handlers(previous: dict[int, Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def kill(pid: int) -> None:
    _forward(pid, signal.SIGKILL)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def exit_code_of(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def default_dispositions() -> None:
    """Every signal back to its default action, in a child about to exec a container's process:
    an ignored signal stays ignored across exec, and Python ignores SIGPIPE and SIGXFSZ (a
    monitor also SIGINT and SIGHUP), which a container's processes must get as docker's do
    (`yes | head -1` ends by SIGPIPE; a shell cannot even trap a signal ignored at its start)."""
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # the C library's own real-time signals
