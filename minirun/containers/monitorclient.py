"""Asking the monitors' server (monitorserver.py) for a monitor: the client side, on `run -d`'s
clock, so it imports _socket only. Starts the server when there is none.

A request is monitor.main's argv, the fds it names (the start report's pipe, a first attach
client) passed along (SCM_RIGHTS); the answer is the monitor's pid.
"""

from __future__ import annotations

import os
import sys

FD_MARK = "fd:"  # an argument that names one of the passed fds, by its index
MAX_REQUEST = 1 << 16


def socket_path(store_root: str) -> str:
    """The server's socket for this store as this process would start it. Every MINIRUN_*
    variable is part of the name: MINIRUN_MONITOR_GROUP=NAME, read nowhere else, gives the
    containers started with it a server of their own, so a crash of one server (which takes its
    containers along, monitorserver.py) never reaches another group's."""
    import _blake2

    from minirun.helpers import search_path
    from minirun.hostwide import RUN_DIR

    names = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MINIRUN_"))
    key = "\0".join([store_root, sys.executable, search_path(), *names]).encode()
    return os.path.join(RUN_DIR, "monitors", _blake2.blake2b(key, digest_size=8).hexdigest() + ".sock")


def request(store_root: str, argv: list[str], fds: list[int]) -> int:
    """Have the server fork a monitor that runs monitor.main(argv), where an argument `fd:N`
    stands for fds[N] as the monitor receives it; the monitor's pid. Starts the server if there
    is none, and asks again if the one it reached was closing."""
    import time

    from minirun.errors import MinirunError

    path = socket_path(store_root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is None:
            if not _start_server(store_root, path):
                time.sleep(0.005)  # another client's server is starting, or the last one closing
            continue
        try:
            pid = _ask(sock, argv, fds)
        finally:
            sock.close()
        if pid is not None:
            return pid
    raise MinirunError(f"no monitor server answered on {path}")


def _connect(path: str):
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    return sock


def _ask(sock, argv: list[str], fds: list[int]) -> int | None:
    """One request on a connected socket: the monitor's pid, or None if the server hung up."""
    import _socket
    import _struct

    rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack(f"{len(fds)}i", *fds))] if fds else []
    try:
        sock.sendmsg(["\0".join(argv).encode()], rights)
        answer = sock.recv(64)
    except (ConnectionResetError, BrokenPipeError):
        return None
    return int(answer) if answer else None


def _start_server(store_root: str, path: str) -> bool:
    """Start a server for `path` and wait until it listens: True. False if it found another
    holding the name (which will listen soon, or is closing down)."""
    import subprocess

    from minirun.helpers import helper_argv

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    read_fd, write_fd = os.pipe()
    try:
        subprocess.Popen(
            helper_argv("minirun.containers.monitorserver:serve", store_root, path, str(write_fd)),
            pass_fds=(write_fd,),
            start_new_session=True,
            close_fds=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        os.close(write_fd)
    try:
        return os.read(read_fd, 16) == b"ok"
    finally:
        os.close(read_fd)
