"""Starting a detached container: a monitor process per container (monitor.py), in a new session,
as a fresh `python -S` whose sys.path holds only minirun and its site-packages, so it carries
none of the CLI's imports. The CLI waits on a pipe until PID 1 has exec'd or failed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

from minirun.errors import EXIT_RUNTIME, MinirunError

_BOOT = "import sys; sys.path[:0] = sys.argv[1].split(':'); from minirun.containers.monitor import main; sys.exit(main(sys.argv[2:]))"


def _search_path() -> str:
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [package_parent] + [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    return ":".join(dict.fromkeys(paths))


def spawn_monitor(store_root: str, container_id: str, on_spawned=None) -> None:
    """Start the monitor of `container_id` and return once its PID 1 runs; raise its error else.
    `on_spawned()` runs as soon as the monitor exists (it owns the container from then on)."""
    read_fd, write_fd = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-S", "-c", _BOOT, _search_path(), store_root, container_id, str(write_fd)],
            pass_fds=(write_fd,),
            start_new_session=True,
            close_fds=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        os.close(write_fd)
    if on_spawned is not None:
        on_spawned()
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    answer = b"".join(chunks).decode(errors="replace")
    if answer == "ok":
        return
    if not answer:
        raise MinirunError("the container's monitor died before the container started")
    code, _, message = answer.partition("\n")
    raise MinirunError(message, exit_code=int(code) if code.isdigit() else EXIT_RUNTIME)
