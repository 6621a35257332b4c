"""The long-lived half of a container's monitor: copy PID 1's output to the log, wait for its
exit, record it. monitor.py execs into this once the container runs, in the same process (still
PID 1's parent), so what stays resident is a bare `python -S` with os, select and time: about
8 MB instead of the ~17 MB the start-up code's imports cost. No json module either: the log
lines are encoded by hand and the exit is written into a state template made by monitor.py.
"""
from __future__ import annotations

import os
import select
import sys
import time

MAX_LINE = 16 * 1024  # docker's json-file splits longer lines
CODE_MARK, TIME_MARK = '"@@EXIT_CODE@@"', "@@FINISHED_AT@@"
_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)} | {0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


def now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def entry(line: bytes, stream: str, stamp: str) -> bytes:
    text = line.decode("utf-8", "replace").translate(_ESCAPES)
    return f'{{"log": "{text}", "stream": "{stream}", "time": "{stamp}"}}\n'.encode("utf-8", "surrogatepass")


def copy_output(log_path: str, streams: dict[int, str]) -> None:
    """Until both pipes close (PID 1 and everything in its namespace are gone)."""
    pending = {fd: b"" for fd in streams}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        while pending:
            for fd, _ in poller.poll():
                chunk = os.read(fd, 65536)
                stamp = now()
                if not chunk:
                    poller.unregister(fd)
                    rest = pending.pop(fd)
                    if rest:
                        os.write(log, entry(rest, streams[fd], stamp))
                    os.close(fd)
                    continue
                lines = (pending[fd] + chunk).split(b"\n")
                pending[fd] = lines.pop()
                complete = [line + b"\n" for line in lines]
                while len(pending[fd]) >= MAX_LINE:
                    complete.append(pending[fd][:MAX_LINE])
                    pending[fd] = pending[fd][MAX_LINE:]
                if complete:
                    os.write(log, b"".join(entry(line, streams[fd], stamp) for line in complete))
    finally:
        os.close(log)


def exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)


def write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_container(container_dir: str, lock_path: str) -> None:
    """--rm: the same order as Containers.remove, under the store lock."""
    import fcntl

    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            os.unlink(os.path.join(container_dir, "config.json"))
        except FileNotFoundError:
            pass
        for top, dirs, files in os.walk(container_dir, topdown=False):
            for name in files:
                os.unlink(os.path.join(top, name))
            for name in dirs:
                path = os.path.join(top, name)
                os.unlink(path) if os.path.islink(path) else os.rmdir(path)
        os.rmdir(container_dir)
    finally:
        os.close(lock)


def main(argv: list[str]) -> int:
    container_dir, lock_path, pid, out_fd, err_fd, auto_remove, template, cgroup_paths = argv
    copy_output(os.path.join(container_dir, "container.log"), {int(out_fd): "stdout", int(err_fd): "stderr"})
    _, status = os.waitpid(int(pid), 0)
    from minirun.runtime import cgroups  # os only, as this module

    paths = cgroup_paths.split("\n") if cgroup_paths else []
    state = template.replace(CODE_MARK, str(exit_code(status))).replace(TIME_MARK, now())
    if cgroups.oom_killed(paths):
        state = state.replace('"OOMKilled": false', '"OOMKilled": true', 1)
    try:
        write_atomically(os.path.join(container_dir, "state.json"), state.encode())
    finally:
        # PID 1 is reaped: its PID namespace, and so the cgroups, are empty. They go even when the
        # record cannot be written (its dir removed, a full disk): nobody else would remove them.
        cgroups.remove(paths)
    if auto_remove == "1":
        remove_container(container_dir, lock_path)
    return 0


def pack_args(args: list[str], after_exit: list[str]) -> int:
    """An inheritable memfd holding main's arguments and, if any, network.after_exit's: the
    monitor hands them over through it, so no state or settings show on a command line."""
    fd = os.memfd_create("minirun-monitor", 0)
    data = "\0".join([str(len(args)), *args, *after_exit]).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def boot(args_fd: int) -> int:
    """The copier's entry point: its arguments from the memfd, then the network's exit hook."""
    chunks = []
    while chunk := os.read(args_fd, 1 << 16):
        chunks.append(chunk)
    os.close(args_fd)
    count, *items = b"".join(chunks).decode().split("\0")
    code = main(items[:int(count)])
    if items[int(count):]:
        from minirun.runtime.network import after_exit

        after_exit(*items[int(count):])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
