"""The monitors' server: one process per store (and set of host-wide names) that forks the monitor
of every detached container (monitor.py), where each used to be an interpreter of its own.

Why: a monitor lives as long as its container, and a fresh `python -S` dirties ~2.3 MiB of its
own before it does anything (~2.8 MiB as a log copier). Forked from a server that has imported
everything a monitor runs, with gc.freeze() so that the collector never writes to those objects,
a monitor shares the interpreter's pages with the server and every other monitor, copy-on-write,
and owns only what it writes: ~1.3 MiB, since the start, which touches much more, runs in a
throwaway launcher (monitor.py). scripts/bench_ps_monitor.py measures it.

What a crash costs: a monitor's, its own container, as before; the server's, nothing that runs:
each monitor is a process of its own (its own session, no parent-death signal), and the next
detached start finds no server and starts one.

The server lives while it has monitors and IDLE_SECONDS after the last one. It listens on a
root-only unix socket in the run dir named after the store, this interpreter and checkout, and
the MINIRUN_* environment (monitorclient.socket_path), so two stores or two test sessions never
share one.

The client side is monitorclient.py.
"""

from __future__ import annotations

import os

from minirun.containers.monitorclient import FD_MARK, MAX_REQUEST

IDLE_SECONDS = 2.0

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
    try:
        os.unlink(path)  # still under the lock: a new server binds only after this
    except FileNotFoundError:
        pass  # its run dir was removed (a test session's, a benchmark's)
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
        data, ancillary, _, _ = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(4 * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if peer[1] != 0 or not data:  # the socket is root's already; a second lock on the door
            return
        argv = [str(fds[int(a[len(FD_MARK) :])]) if a.startswith(FD_MARK) else a for a in data.decode().split("\0")]
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
