"""The monitors' server: one process per store (and set of host-wide names) that monitors every
detached container of the store, each in a thread of its own (monitor.py), where each used to be a
process of its own.

Why: a monitor lives as long as its container. A monitor process, even one forked from a server
that had imported everything (gc.freeze, copy-on-write), owned ~1.3 MiB it wrote to (the
interpreter's refcounts, its heap) and ~2 MiB PSS in all. A thread owns its stack and the few
objects of its copy loop: ~0.1 MiB. The start, which touches megabytes, still runs in a throwaway
launcher forked by the thread, and what follows PID 1's exit in a forked finisher
(logcopier.run), so the server itself never grows with them. scripts/bench_ps_monitor.py
measures it.

What a crash costs: an exception in one monitor's thread, that container alone (its thread ends,
its PID 1's parent-death signal follows the thread, and the exit is recorded as the monitor's
failure); the server process's death (a kill -9, a crash of the interpreter), every detached
container of its store: each PID 1 dies with its parent thread, and the next reader of each record
finds it dead (liveness.py) and says so. The next detached start starts a new server. (Each was a
process of its own before: a crash cost its own container. docker's daemon without live-restore
makes the same trade.)

The server lives while it has monitors and IDLE_SECONDS after the last one. It listens on a
root-only unix socket in the run dir named after the store, this interpreter and checkout, and
the MINIRUN_* environment (monitorclient.socket_path), so two stores or two test sessions never
share one. Every fd it holds is close-on-exec, and every child it forks closes the fds that are
not its own container's first (a launcher, a finisher, a health probe, a log compressor).

The client side is monitorclient.py.
"""

from __future__ import annotations

import os

from minirun.containers.monitorclient import FD_MARK, MAX_REQUEST

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:  # signal.py loads enum, which the server would keep
    import _signal as signal

IDLE_SECONDS = 2.0
MAX_WAITING = 64  # connections whose request has not come yet (the listener's backlog is as many)

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
    # not socket.py, signal.py, threading.py: they load enum, selectors, collections, ~1 MiB the
    # server would carry for as long as it monitors anything
    import _socket as socket
    import fcntl
    import gc
    import select
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
    listener.setblocking(False)  # a client that gave up between the poll and the accept: EAGAIN
    # A terminal hang-up or Ctrl-C aimed at the CLI that started us must not end the containers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # _signal's (see the module's imports)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    gc.freeze()  # what the launchers and finishers are forked with: the collector leaves it be
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    ended_r, ended_w = os.pipe2(os.O_CLOEXEC)  # a byte from each monitor thread as it ends
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    poller.register(ended_r, select.POLLIN)
    monitors = 0
    idle_since = time.monotonic()
    # Connections whose request has not come yet, by fd. Each is read once poll says its request
    # is there (a SEQPACKET message comes whole) or its client is gone: a client that connects
    # and says nothing (stopped, wedged, hostile) holds its own connection, never the server.
    waiting: dict[int, Any] = {}
    while True:
        timeout = None
        if not monitors:
            timeout = IDLE_SECONDS - (time.monotonic() - idle_since)
            if timeout <= 0:
                break
        ready = [fd for fd, _ in poller.poll(None if timeout is None else int(timeout * 1000) + 1)]
        for fd in ready:
            if fd in waiting:
                poller.unregister(fd)
                monitors += _serve_one(waiting.pop(fd), ended_w)
            elif fd == ended_r:
                monitors -= len(os.read(ended_r, 4096))
                if not monitors:
                    idle_since = time.monotonic()
        if listener.fileno() in ready:  # last: a connection it drops has no event left in `ready`
            _accept(listener, poller, waiting)
    for conn in waiting.values():  # their clients see the close and ask the next server
        conn.close()
    try:
        os.unlink(path)  # still under the lock: a new server binds only after this
    except FileNotFoundError:
        pass  # its run dir was removed (a test session's, a benchmark's)
    listener.close()
    return 0


def _accept(listener, poller, waiting: dict[int, Any]) -> None:
    """Take every connection the listener holds into `waiting`, polled for its request. Past
    MAX_WAITING (or out of fds) the oldest goes: our clients send their request as they connect."""
    import _socket as socket
    import select

    def drop_oldest() -> None:
        oldest = next(iter(waiting))
        poller.unregister(oldest)
        waiting.pop(oldest).close()

    while True:
        try:
            fd = listener._accept()[0]
        except BlockingIOError:
            return  # none left
        except ConnectionAbortedError:
            continue  # one that gave up before we got to it
        except OSError:  # EMFILE and the like: never the server's end
            if not waiting:
                return
            drop_oldest()
            continue
        if len(waiting) >= MAX_WAITING:
            drop_oldest()
        conn = socket.socket(fileno=fd)
        conn.setblocking(False)
        waiting[fd] = conn
        poller.register(fd, select.POLLIN)


def _serve_one(conn, ended_w: int) -> int:
    """Read one connection's request, which poll says is there (or its client gone), and start
    its monitor's thread: 1, or 0 for a request that cannot be read, which is dropped (its
    client sees the connection close and says so)."""
    import _socket as socket
    import _thread
    import array
    import struct

    fds = array.array("i")
    started = False
    try:
        peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        space = socket.CMSG_SPACE(4 * fds.itemsize)
        data, ancillary, _, _ = conn.recvmsg(MAX_REQUEST, space, socket.MSG_CMSG_CLOEXEC)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if peer[1] != 0 or not data:  # the socket is root's already; a second lock on the door
            return 0
        argv = [str(fds[int(a[len(FD_MARK) :])]) if a.startswith(FD_MARK) else a for a in data.decode().split("\0")]
        _thread.start_new_thread(_monitor, (argv, ended_w))
        started = True
        conn.send(str(os.getpid()).encode())
    except (OSError, ValueError, IndexError):
        pass
    finally:
        conn.close()
        if not started:
            for fd in fds:
                os.close(fd)  # a monitor's are its own to close (its client waits for their EOF)
    return int(started)


def _monitor(argv: list[str], ended_w: int) -> None:
    """A monitor thread's life; whatever it raises ends its container alone, recorded."""
    from minirun.containers import monitor

    try:
        monitor.main(argv)
    except BaseException as exc:  # noqa: BLE001 - one container's failure, never the server's
        monitor.failed(argv, exc)
    finally:
        os.write(ended_w, b"x")
