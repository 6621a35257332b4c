"""Starting a detached container: a monitor process per container (monitor.py), forked by the
monitors' server (monitorserver.py) in a session of its own, so it carries none of the CLI's
imports. The CLI waits on a pipe until PID 1 has exec'd or failed."""

from __future__ import annotations

import os

from minirun.childfailure import parse_report
from minirun.containers import monitorclient
from minirun.errors import MinirunError


def spawn_monitor(
    store_root: str,
    container_id: str,
    on_spawned=None,
    attach_fd: int = -1,
    console_size: tuple[int, int] = (0, 0),
    extra: tuple[str, ...] = (),
) -> None:
    """Start the monitor of `container_id` and return once its PID 1 runs; raise its error else.
    `on_spawned()` runs as soon as the monitor exists (it owns the container from then on).
    `attach_fd`: a connected socket the monitor serves as its first attach client (attachserver.py);
    `console_size`: the rows and cols of the container's terminal (-t) at its start; (0, 0): the
    container's own (HostConfig.ConsoleSize of an API request), else 24x80.
    `extra`: a restart's arguments (restartpolicy.restart_args), which answers once it claimed it."""
    read_fd, write_fd = os.pipe()
    fds = [write_fd] if attach_fd < 0 else [write_fd, attach_fd]
    attach = "-1" if attach_fd < 0 else "fd:1"
    # monitor.main's argv; "fd:N" is fds[N] as the monitor receives it
    argv = [store_root, container_id, "fd:0", attach, *(str(n) for n in console_size), *extra]
    try:
        monitorclient.request(store_root, argv, fds)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    if on_spawned is not None:
        on_spawned()
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    answer = b"".join(chunks)
    if answer == b"ok":  # the monitor's word for success: its PID 1 runs
        return
    if not answer:
        raise MinirunError("the container's monitor died before the container started")
    raise parse_report(answer)
