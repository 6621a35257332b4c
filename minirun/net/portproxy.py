"""The userspace proxy for published ports, where nftables cannot DNAT (no `nft`, a kernel
without nf_tables, or MINIRUN_PORT_BACKEND=proxy): docker's docker-proxy, one process for all
of a container's ports.

portmap.py binds the host sockets in the container's owner (the foreground CLI, or the monitor,
which later execs into the log copier) before PID 1 starts, so a taken port is refused the same
way as with nftables; it then starts this as that owner's child, handing the sockets over. We die
with the owner (PR_SET_PDEATHSIG: a SIGKILLed CLI leaves no proxy holding its ports), and the
owner kills us when PID 1 exits. A proxy for ports that followed a running container's default
route to another network (`network connect`/`disconnect`) has no owner that lives as long as the
container: it gets a pidfd of the container's PID 1 instead, and ends when that exits.

Started as a `python -S` helper (minirun.helpers) whose main() gets: owner pid (or `@FD`, the
pidfd), then one `FD/PROTO/TARGET_IP/TARGET_PORT` per socket. Stdlib and threads only: a thread
per listener, two per TCP connection, one per UDP client (a session, dropped after UDP_IDLE
seconds without traffic either way). A client no thread can start for is turned away, and so is
one past the proxy's thread budget (thread_budget(): a thread is a task of the host's, and one
client sending from thousands of source ports would take them all). All proxies together are
bounded too: they share one cgroup whose pids.max is shared_budget(), half the host's tasks
(the caller's, named by a `cgroup=PATH` argument before the sockets'). The descriptor limit is
the hard one: what a flood of clients exhausts costs them, not the port.

A client on an --internal network is turned away: with nftables its packets for a published
port are DNATed and then dropped by the internal network's wall (nftables.py), as docker's
are; here they would reach the host's socket, so the proxy asks whether the client's address
lies on an internal bridge, another minirun's too (another MINIRUN_BRIDGE_PREFIX, whose walls
drop what its internal networks send to a port nftables DNATs). (The address is the client's
own: the walls drop a packet that comes in by a bridge with a source address not routed back
through it; but for 0.0.0.0/8, which they pass to a broadcast or local multicast address, as
DHCP sends: a datagram "from" there, to 255.255.255.255 or 224.0.0.1, reached a UDP port from
any network. Such a client, which no reply can reach either, is turned away too.)

A UDP session is kept to the bridge its client came in by: a datagram of the same address and
port by another bridge (its network removed and made again --internal, with the same subnet) is
a new client, asked anew, and a reply goes out by that bridge alone (from the address its
client sent to, as docker-proxy answers), so none reaches the address's next holder.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time

from minirun import hostwide

TYPE_CHECKING = False  # not typing's: portmap imports this module, and typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable

BUFFER = 65536
CONNECT_TIMEOUT = 5.0
UDP_IDLE = 90.0  # docker-proxy's UDP conntrack timeout
_SIOCGIFADDR, _SIOCGIFNETMASK = 0x8915, 0x891B
IP_PKTINFO = 8  # <linux/in.h>; the socket module of Python 3.11 does not name it
_PKTINFO = struct.Struct("i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr


def main(argv: list[str]) -> int:
    import resource

    # Two descriptors a connection: the soft limit a shell or systemd hands down (1024) would stop
    # the accepts at ~510 clients. docker-proxy, a Go program, gets its hard limit as we take it.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    global _slots
    _slots = threading.BoundedSemaphore(thread_budget())  # before any listener takes one
    watched = int(argv[0][1:]) if argv[0].startswith("@") else -1
    if watched < 0:
        import signal

        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != int(argv[0]):  # the owner died before the line above: nobody would kill us
            return 1
    specs = argv[1:]
    cgroup = specs.pop(0)[len(CGROUP_ARG) :] if specs and specs[0].startswith(CGROUP_ARG) else ""
    for spec in specs:
        fd, proto, ip, port = spec.split("/")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        listener = socket.socket(socket.AF_INET, kind, fileno=int(fd))
        serve = _serve_tcp if proto == "tcp" else _serve_udp
        threading.Thread(target=serve, args=(listener, (ip, int(port))), daemon=True).start()
    if cgroup:
        _join_shared_budget(cgroup)
    if watched < 0:
        threading.Event().wait()  # until the owner's SIGKILL
    import select

    select.select([watched], [], [])  # readable once PID 1 has exited
    return 0


def _join_shared_budget(cgroup: str) -> None:
    """Into the cgroup every proxy shares (cgroups.shared_task_limit: its pids.max is
    shared_budget()), every thread of ours with us: the semaphore bounds one proxy's client
    threads, this bounds all proxies' together, which eight flooded proxies would otherwise take
    the host's tasks with. After the listeners start: the kernel never refuses a task that moves
    in, only one made inside, so a proxy that starts while the others hold the budget still
    serves its ports (its clients get a thread while the budget has one, as theirs do). Where
    the cgroup cannot be joined, the semaphore alone bounds us."""
    try:
        with open(f"{cgroup}/cgroup.procs", "w") as procs:
            procs.write(str(os.getpid()))
    except OSError:
        pass


def on_internal_network(address: str) -> bool:
    """Whether a client of `address` may be on an --internal network: the address is on the
    subnet of an internal bridge (asked of the kernel each time: networks come and go while the
    proxy runs), or in 0.0.0.0/8, which tells nothing of where it is (see above). Where the
    kernel cannot be asked (no descriptor left for the probe: a flood of clients took them all),
    it may: the client is turned away, and the listener that asked goes on."""
    try:
        peer = struct.unpack("!I", socket.inet_aton(address))[0]
    except OSError:
        return False
    if peer >> 24 == 0:
        return True
    try:
        return _on_internal_bridge(peer)
    except OSError:
        return True


def _on_internal_bridge(peer: int) -> bool:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            if not hostwide.is_internal_bridge(name):
                continue
            request = struct.pack("16s16x", name.encode())
            try:
                own = struct.unpack_from("!I", fcntl.ioctl(probe, _SIOCGIFADDR, request), 20)[0]
                mask = struct.unpack_from("!I", fcntl.ioctl(probe, _SIOCGIFNETMASK, request), 20)[0]
            except OSError:  # gone meanwhile, or no address yet
                continue
            if peer & mask == own & mask:
                return True
    return False


def thread_budget() -> int:
    """How many threads the proxy runs for its clients at most: an eighth of the host's tasks
    (pid_max, threads-max), at least 64, or MINIRUN_PROXY_THREADS. Each is a task every process
    on the host shares and root's RLIMIT_NPROC does not count; unbounded, one client sending
    from thousands of source ports (a thread a UDP session) took the host's last pid."""
    given = os.environ.get("MINIRUN_PROXY_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    tasks = []
    for knob in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"):
        try:
            with open(knob) as value:
                tasks.append(int(value.read()))
        except (OSError, ValueError):
            pass
    return max(64, min(tasks, default=32768) // 8)


def shared_budget() -> int:
    """How many tasks all proxies take together (the pids.max of the cgroup they share): four
    proxies' budgets, half the host's. A flood of one proxy leaves the others their clients, and
    floods of all leave the host half its tasks."""
    return 4 * thread_budget()


CGROUP_ARG = "cgroup="  # the argument before the sockets' that names the cgroup to join (portmap)
_slots = threading.BoundedSemaphore(64)  # main() sizes it by thread_budget() before any listener runs


def _started(target: Callable[..., object], *args: object) -> threading.Thread | None:
    """A thread running `target(*args)`, or None where none can start (the budget spent, the
    host out of tasks or memory, as a flood of clients may leave it): that costs its client
    alone, never the listener that asked for it."""
    slots = _slots
    if not slots.acquire(blocking=False):
        return None

    def run() -> None:
        try:
            target(*args)
        finally:
            slots.release()

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
    except (RuntimeError, MemoryError):
        slots.release()
        return None
    return thread


# -- TCP: accept, connect to the container, copy both ways -----------------------------------------


def _serve_tcp(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, peer = listener.accept()
        except OSError:
            time.sleep(0.05)  # EMFILE and friends: let connections finish rather than spin
            continue
        if on_internal_network(peer[0]) or _started(_connection, client, target) is None:
            client.close()


def _connection(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()  # nothing listens in the container (yet): the client sees the close
        return
    upstream.settimeout(None)
    back = _started(_pump, upstream, client)
    if back is not None:
        _pump(client, upstream)
        back.join()
    client.close()
    upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until EOF, then pass the EOF on (half-close: the other direction may go on)."""
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, sink):  # a reset: wake the other direction's recv too
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- UDP: a connected socket per client address ---------------------------------------------------


class _Session:
    def __init__(self, target: tuple[str, int], ifindex: int, local: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(target)
        self.sock.settimeout(UDP_IDLE)
        self.ifindex = ifindex  # the interface the client's datagrams come in by
        self.local = local  # the address they were sent to: the replies' source
        self.last = time.monotonic()
        self.ended = False

    def end(self) -> None:
        """Stop the replies: its thread's recv returns at once and it closes the socket."""
        self.ended = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _serve_udp(listener: socket.socket, target: tuple[str, int]) -> None:
    # Each datagram comes with its interface and destination: portmap asks for them (IP_PKTINFO)
    # when it binds the socket, so that one queued before the proxy runs has them too.
    sessions: dict[tuple[str, int], _Session] = {}
    lock = threading.Lock()
    while True:
        try:
            data, ancillary, _, client = listener.recvmsg(BUFFER, socket.CMSG_SPACE(_PKTINFO.size))
        except OSError:
            continue
        ifindex, local, _ = next(
            (_PKTINFO.unpack_from(d) for lvl, kind, d in ancillary if kind == IP_PKTINFO), (0, bytes(4), None)
        )
        with lock:
            session = sessions.get(client)
            if session is not None and session.ifindex != ifindex:  # the same address, another bridge
                del sessions[client]
                session.end()
                session = None
            if session is None:
                if on_internal_network(client[0]):
                    continue
                try:
                    session = _Session(target, ifindex, local)
                except OSError:
                    continue
                if _started(_replies, listener, client, session, sessions, lock) is None:
                    session.sock.close()
                    continue
                sessions[client] = session
            session.last = time.monotonic()
        try:
            session.sock.send(data)
        except OSError:
            pass  # ECONNREFUSED from an earlier datagram, a full buffer: UDP may drop


def _replies(
    listener: socket.socket,
    client: tuple[str, int],
    session: _Session,
    sessions: dict[tuple[str, int], _Session],
    lock: threading.Lock,
) -> None:
    # Out by the client's own interface (gone: ENODEV, the session ends), from the address it sent
    # to, as docker-proxy answers: a client's connected socket takes replies from that one alone.
    by_interface = [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(session.ifindex, session.local, bytes(4)))]
    while True:
        try:
            data = session.sock.recv(BUFFER)
        except TimeoutError:
            with lock:
                if time.monotonic() - session.last < UDP_IDLE:
                    continue  # the client spoke meanwhile
                if sessions.get(client) is session:
                    del sessions[client]
            break
        except OSError:
            continue  # ECONNREFUSED: nothing listened in the container for one datagram
        if session.ended:  # end(): the recv returned at once
            break
        session.last = time.monotonic()
        try:
            listener.sendmsg([data], by_interface, 0, client)
        except OSError as error:
            # its interface gone, or the address it sent to (no source for a reply any more)
            if error.errno in (errno.ENODEV, errno.ENXIO, errno.EINVAL, errno.EADDRNOTAVAIL):
                with lock:
                    if sessions.get(client) is session:
                        del sessions[client]
                break
    session.sock.close()
