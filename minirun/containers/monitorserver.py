"""The monitors' server: one process per store (and set of host-wide names) that forks the monitor
of every detached container (monitor.py), where each used to be an interpreter of its own.

Why: a monitor lives as long as its container, and a fresh `python -S` dirties ~2.3 MiB of its
own before it does anything (~2.8 MiB as a log copier). Forked from a server that has imported
everything a monitor runs, with gc.freeze() so that the collector never writes to those objects,
a monitor shares the interpreter's pages with the server and every other monitor, copy-on-write,
and owns only what it writes (scripts/bench_ps_monitor.py measures it).

What a crash costs: a monitor's, its own container, as before; the server's, nothing that runs:
each monitor is a process of its own (its own session, no parent-death signal), and the next
detached start finds no server and starts one.

The server lives while it has monitors and IDLE_SECONDS after the last one. It listens on a
root-only unix socket in the run dir named after the store, this interpreter and checkout, and
the MINIRUN_* environment, so two stores or two test sessions never share one. A request is
monitor.main's argv, with the fds it names (the start report's pipe, a first attach client)
passed along (SCM_RIGHTS); the answer is the monitor's pid.

The client side (request) imports _socket only: it is on `run -d`'s clock.
"""

from __future__ import annotations

import os
import sys

IDLE_SECONDS = 2.0
_FD_MARK = "fd:"  # an argument that names one of the passed fds, by its index
_MAX_REQUEST = 1 << 16


def socket_path(store_root: str) -> str:
    """The server's socket for this store as this process would start it."""
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


# What a monitor runs, imported once by the server so that every monitor shares it. Not the
# network's modules: containers/network.py loads pyroute2 only for a container that has a network,
# and a server that never needs it should not carry it.
PRELOAD = (
    "minirun.containers.monitor",
    "minirun.containers.plan",
    "minirun.containers.health",
    "minirun.containers.healthconfig",
    "minirun.containers.logconfig",
    "minirun.runtime.launch",
    "minirun.runtime.cgroups",
    "minirun.runtime.rootfs",
    "minirun.runtime.security",
    "minirun.runtime.seccomp",
    "minirun.runtime.devices",
    "minirun.runtime.tty",
    "minirun.store.initlayer",
)


def serve(argv: list[str]) -> int:
    """The server (a `python -S` helper, argv: store root, socket path, the fd to say `ok` on
    once it listens). Exits at once, saying nothing, if another server holds the name."""
    import fcntl
    import gc
    import select
    import signal
    import socket
    import time

    _, path, ready_fd = argv[0], argv[1], int(argv[2])
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    for name in PRELOAD:
        __import__(name)
    os.chdir("/")  # the monitors must not keep a client's directory busy
    try:
        os.unlink(path)  # a crashed server's
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    umask = os.umask(0o077)  # root's alone: whoever can ask starts containers
    try:
        listener.bind(path)
    finally:
        os.umask(umask)
    listener.listen(64)
    # the kernel reaps the monitors; each sets SIGCHLD back to the default for its own PID 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    gc.freeze()  # everything so far stays shared: the collector never touches it again
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    monitors: dict[int, int] = {}  # pidfd -> pid
    idle_since = time.monotonic()
    while True:
        timeout = None
        if not monitors:
            timeout = IDLE_SECONDS - (time.monotonic() - idle_since)
            if timeout <= 0:
                break
        for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000) + 1):
            if fd == listener.fileno():
                _serve_one(listener, poller, monitors)
            else:  # a monitor exited
                poller.unregister(fd)
                os.close(fd)
                del monitors[fd]
                if not monitors:
                    idle_since = time.monotonic()
    os.unlink(path)  # still under the lock: a new server binds only after this
    listener.close()
    return 0


def _serve_one(listener, poller, monitors: dict[int, int]) -> None:
    """Accept one request and fork its monitor; a request that cannot be read is dropped (its
    client sees the connection close and says so)."""
    import array
    import select
    import socket
    import struct

    conn, _ = listener.accept()
    fds = array.array("i")
    try:
        peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        data, ancillary, _, _ = conn.recvmsg(_MAX_REQUEST, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if peer[1] != 0 or not data:  # the socket is root's already; a second lock on the door
            return
        argv = [str(fds[int(a[len(_FD_MARK) :])]) if a.startswith(_FD_MARK) else a for a in data.decode().split("\0")]
        pid = os.fork()
        if pid == 0:
            _become_monitor(argv, fds, listener, conn)
        pidfd = os.pidfd_open(pid)
        os.set_inheritable(pidfd, False)
        monitors[pidfd] = pid
        poller.register(pidfd, select.POLLIN)
        conn.send(str(pid).encode())
    except (OSError, ValueError, IndexError):
        pass
    finally:
        conn.close()
        for fd in fds:
            os.close(fd)  # the monitor has them: its client must see EOF when it closes its own


def _become_monitor(argv: list[str], fds, listener, conn) -> None:
    """In the forked child: shed the server's fds (its lock above all: a monitor must not keep a
    new server out), take a session of its own, run the monitor, never return to the loop."""
    import signal

    code = 1
    try:
        from minirun.linux import close_fds

        listener.detach()  # closed below, with every fd of the server's but the request's
        conn.detach()
        close_fds(keep=fds)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        from minirun.containers import monitor

        code = monitor.main(argv)
    finally:
        os._exit(code)
