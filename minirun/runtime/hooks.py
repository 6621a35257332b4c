"""OCI hooks: running one (the state on its stdin, its timeout), and the ones that run inside the
container, in its PID 1, as runc runs them:

- createContainer: in the container's namespaces once its mounts are made, before pivot_root
  (the runtime's tree still in reach), after the runtime's own prestart and createRuntime hooks:
  PID 1 stops there and tells the runtime over a pair of pipes (Channel), which runs those and
  answers;
- startContainer: after `start` opened the exec fifo, before the user's process is exec'd, as
  that process's user. Its failure reaches `start` through the fifo instead of the byte that
  says "go on".

os, time and errors only: PID 1 loads it before pivot_root hides the host's modules.
"""

from __future__ import annotations

import json
import os
import time

from minirun.errors import MinirunError
from minirun.runtime.channel import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:  # signal.py only wraps _signal's calls in enums (supervise.py)
    import _signal as signal

_OUTPUT_KEPT = 4096
_HOOKS_POINT, _GO_ON, _STOP = b"H", b"K", b"E"


def run(hook: dict[str, Any], state: dict[str, Any], kind: str) -> None:
    """Run one hook to its end, `state` as JSON on its stdin; MinirunError if it fails, exits
    non-zero or outlives its timeout (then it is killed), with the end of its output."""
    path = str(hook.get("path", ""))
    argv = [str(a) for a in hook.get("args") or [path]]
    env = {k: v for k, _, v in (str(e).partition("=") for e in hook.get("env") or []) if k}
    timeout = hook.get("timeout")
    stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
    out_read, out_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            # a hook starts as subprocess would start it: no signal blocked (PID 1 blocks some
            # until its exec), none ignored (Python ignores SIGPIPE and SIGXFSZ)
            for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.dup2(stdin_read, 0)
            os.dup2(out_write, 1)
            os.dup2(out_write, 2)
            os.execve(path, argv, env)
        finally:
            os._exit(127)
    os.close(stdin_read)
    os.close(out_write)
    output = b""
    try:
        try:
            os.write(stdin_write, json.dumps(state).encode())
        except BrokenPipeError:
            pass  # a hook need not read it
        os.close(stdin_write)
        os.set_blocking(out_read, False)
        deadline = time.monotonic() + timeout if isinstance(timeout, int) and timeout > 0 else None
        while True:
            output = (output + _drain(out_read))[-_OUTPUT_KEPT:]
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if deadline is not None and time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise MinirunError(f"{kind} hook {path}: timeout after {timeout} seconds")
            time.sleep(0.005)
        output = (output + _drain(out_read))[-_OUTPUT_KEPT:]
    finally:
        os.close(out_read)
    code = os.waitstatus_to_exitcode(status)
    if code == 127 and not output:
        raise MinirunError(f"{kind} hook {path}: cannot run it (no such file, or not executable)")
    if code != 0:
        text = output.decode(errors="replace").strip()
        raise MinirunError(f"{kind} hook {path}: exit status {code}" + (f": {text[-200:]}" if text else ""))


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


# -- PID 1's side ------------------------------------------------------------------------------


def at_hooks_point(channel: Channel, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """PID 1, its mounts made: wait for the runtime's prestart and createRuntime hooks, then run
    the createContainer ones."""
    os.write(channel.up_write, _HOOKS_POINT)
    answer = os.read(channel.down_read, 65536)
    channel.close_child_side()
    if answer != _GO_ON:
        raise MinirunError(answer[1:].decode(errors="replace") or "the runtime went away during the hooks")
    for hook in hooks:
        run(hook, state, "createContainer")


# -- the runtime's side ------------------------------------------------------------------------


def wait_for_hooks_point(channel: Channel) -> bool:
    """True once PID 1 waits for the runtime's hooks; False if it failed before (its report is
    on the error pipe)."""
    os.close(channel.up_write)
    os.close(channel.down_read)
    return os.read(channel.up_read, 1) == _HOOKS_POINT


def answer_hooks_point(channel: Channel, failure: str = "") -> None:
    """Let PID 1 go on, or (`failure`) fail with that message."""
    try:
        os.write(channel.down_write, _STOP + failure.encode() if failure else _GO_ON)
    except BrokenPipeError:
        pass  # PID 1 is gone: its report says why
    os.close(channel.up_read)
    os.close(channel.down_write)
