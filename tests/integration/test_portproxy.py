"""The userspace port proxy (minirun/net/portproxy.py) run as minirun runs it, given listening
sockets, in front of an echo server of the test's: under the limits a flood of clients meets (a
client that cannot be served costs that client alone, never the port: the proxy's threads and
descriptors are what a container's clients, or another host's, can exhaust), and answering a
UDP client from the address it sent to."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import threading
import time

import pytest

from minirun.helpers import helper_argv
from minirun.net.portproxy import CGROUP_ARG
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a thread limit binds only a user other than root")


@contextlib.contextmanager
def echo_server():
    """TCP and UDP echo on one port of 127.0.0.1: (port)."""
    while True:  # a free TCP port, until its UDP twin is free too
        tcp = socket.create_server(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
            break
        except OSError:
            tcp.close()
            udp.close()
    done = threading.Event()

    def connection(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve_tcp() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                conn, _ = tcp.accept()
                threading.Thread(target=connection, args=(conn,), daemon=True).start()

    def serve_udp() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                data, peer = udp.recvfrom(4096)
                if peer is not None:  # None: shut down
                    udp.sendto(data, peer)

    for serve in (serve_tcp, serve_udp):
        threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        done.set()
        for sock in (tcp, udp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@contextlib.contextmanager
def proxy(target: int, preexec, host: str = "127.0.0.1", cgroup: str | None = None):
    """The proxy for a TCP and a UDP port of `host` to `target` on 127.0.0.1, started with
    `preexec` run before its exec (and given `cgroup` to join, as portmap gives it), its sockets
    bound as minirun binds them: (tcp port, udp port)."""
    from minirun.net.portmap import _bind_for_proxy

    sockets: list[socket.socket] = []
    for proto in ("tcp", "udp"):
        _bind_for_proxy([host, 0, target, proto], sockets)
    tcp, udp = sockets
    specs = [f"{tcp.fileno()}/tcp/127.0.0.1/{target}", f"{udp.fileno()}/udp/127.0.0.1/{target}"]
    if cgroup is not None:
        specs.insert(0, f"{CGROUP_ARG}{cgroup}")
    process = subprocess.Popen(
        helper_argv("minirun.net.portproxy:main", str(os.getpid()), *specs),
        pass_fds=(tcp.fileno(), udp.fileno()),
        preexec_fn=preexec,
        stderr=subprocess.PIPE,
    )
    ports = (tcp.getsockname()[1], udp.getsockname()[1])
    tcp.close()
    udp.close()
    try:
        yield ports
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def echoed(port: int, timeout: float = 3.0) -> socket.socket | None:
    """A connection through the proxy that echoes, or None (closed, or no answer in time)."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    try:
        conn.sendall(b"ping")
        if conn.recv(16) == b"ping":
            return conn
    except OSError:
        pass
    conn.close()
    return None


def served_again(port: int) -> bool:
    """Whether a new TCP client is echoed within 10 s (the proxy's threads or descriptors freed)."""
    return wait_until(lambda: (conn := echoed(port, timeout=1)) is not None and conn.close() is None, timeout=10)


def descriptors(soft: int, hard: int):
    """A preexec for proxy(): start it under RLIMIT_NOFILE (soft, hard)."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def udp_echoed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        client.sendto(b"ping", ("127.0.0.1", port))
        try:
            return client.recv(16) == b"ping"
        except OSError:
            return False


@pytest.mark.parametrize("turned_away", ["tcp", "udp"])
def test_a_client_without_a_thread_leaves_the_port_served(turned_away):
    """A thread the proxy cannot start (the host out of tasks, as a flood of connections leaves
    it: two threads each) ended its listener's thread: the port took connections into its
    backlog, or datagrams, and never served one again, for anybody. Here the proxy runs as a
    user of its own with room for one connection's threads: while it is held, a second client
    is turned away, and once it is gone the next client is served."""
    uid = 0x7FFE0000 + os.getpid() % 0x10000  # a user nothing else runs as: RLIMIT_NPROC counts its tasks

    def one_connection_of_room() -> None:  # the main thread, two listeners, one connection's two
        resource.setrlimit(resource.RLIMIT_NPROC, (5, 5))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    with echo_server() as target, proxy(target, one_connection_of_room) as (tcp, udp):
        first = echoed(tcp)
        assert first is not None
        if turned_away == "tcp":
            assert echoed(tcp, timeout=1) is None  # no thread for it: closed (or never served)
            first.close()
            assert served_again(tcp)
        else:
            assert not udp_echoed(udp)  # no thread for its session
            first.close()
            assert wait_until(lambda: udp_echoed(udp), timeout=10)


def test_a_proxy_started_with_few_descriptors_takes_what_the_host_allows():
    """Each proxied TCP connection holds two descriptors; started under a soft RLIMIT_NOFILE of
    1024 (systemd's and a shell's default) the proxy stopped accepting at about 510 clients,
    while the hard limit allowed far more: docker-proxy, a Go program, raises its soft limit to
    the hard one, and so does the proxy. Here the soft limit it starts with is 48."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 60
    if hard != resource.RLIM_INFINITY and hard < 2 * wanted + 64:
        pytest.skip(f"a hard RLIMIT_NOFILE of {hard} leaves no room above the soft one")

    with echo_server() as target, proxy(target, descriptors(48, hard)) as (tcp, _), contextlib.ExitStack() as held:
        for n in range(wanted):
            conn = echoed(tcp)
            assert conn is not None, f"connection {n + 1} of {wanted} was not served"
            held.enter_context(conn)


def test_a_udp_reply_comes_from_the_address_its_client_sent_to():
    """A client's connected UDP socket takes datagrams from the address it sent to alone; the
    proxy's replies went out from the address the route back chose (for a client of 127.0.0.1,
    127.0.0.1), so one that sent to the host's other address never saw them. docker-proxy
    answers from the original destination, and so does the proxy: from 127.0.0.2 here. (Its
    port is published on every address, as `-p PORT` publishes one.)"""
    with echo_server() as target, proxy(target, None, host="0.0.0.0") as (_, udp):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(3)
            client.connect(("127.0.0.2", udp))
            client.send(b"ping")
            assert client.recv(16) == b"ping"


def test_a_flood_of_udp_clients_that_uses_every_descriptor_leaves_the_port_served():
    """A UDP session holds a descriptor (its socket to the container) for UDP_IDLE seconds; a
    client sending from as many source ports as the proxy has descriptors fills them all. The
    next new client was asked whether it is on an --internal network with a socket of its own,
    whose EMFILE ended the port's listener thread: the port took datagrams and never served one
    again, not even a client whose session was open. Such a client must be turned away alone.
    The proxy runs here with a hard RLIMIT_NOFILE of 40 (the flood needs the hard limit's
    worth of source ports, 65535 an address); the control is the first client, echoed before."""

    with echo_server() as target, proxy(target, descriptors(40, 40)) as (_, udp), contextlib.ExitStack() as held:
        first = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        first.settimeout(1)
        first.connect(("127.0.0.1", udp))
        first.send(b"ping")
        assert first.recv(16) == b"ping"  # the control: its session is open
        for _ in range(60):  # more clients than the proxy has descriptors
            flood = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            flood.sendto(b"ping", ("127.0.0.1", udp))

        def first_echoed() -> bool:
            first.send(b"ping")
            try:
                while first.recv(16) != b"ping":
                    pass
                return True
            except OSError:
                return False

        assert wait_until(first_echoed, timeout=10), "the port's listener died"


@pytest.mark.parametrize("limit", [40, 41])
def test_a_tcp_flood_that_uses_every_descriptor_leaves_the_port_served(limit):
    """A TCP connection holds two descriptors. Where one is left when a client is accepted (the
    limit's parity decides), the internal-network check's own socket met EMFILE and ended the
    port's listener thread: once the flood was gone, nobody was served again. Both parities
    here; the control is a client served before the flood."""

    with echo_server() as target, proxy(target, descriptors(limit, limit)) as (tcp, _):
        conn = echoed(tcp)
        assert conn is not None  # the control
        conn.close()
        with contextlib.ExitStack() as held:
            for _ in range(limit):  # more than the proxy can serve: the last are never accepted
                try:
                    held.enter_context(socket.create_connection(("127.0.0.1", tcp), timeout=1))
                except OSError:
                    break
            time.sleep(1)  # the proxy accepts what it can
        assert served_again(tcp)


def _proxy_threads() -> int:
    """How many threads the proxies (this process's children) run together."""
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            for pid in children.read().split():
                with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"portproxy" in cmdline.read():
                        with open(f"/proc/{pid}/status") as status:
                            found += [int(line.split()[1]) for line in status if line.startswith("Threads:")]
    assert found, "no proxy"
    return sum(found)


def test_one_client_gets_no_more_of_the_hosts_tasks_than_the_proxys_budget(monkeypatch):
    """A UDP session is a thread for UDP_IDLE seconds, a TCP connection two: a task each, of the
    host's pid_max (32768 on many hosts) that every process shares, and root's RLIMIT_NPROC
    does not count them. One client sending from thousands of source ports (a container of any
    network, another host) held a task per port: with the hard RLIMIT_NOFILE systemd gives
    (524288), nothing stopped it short of the host's last pid, and then no process on the
    host could fork. docker-proxy's goroutines cost no task. The proxy's threads are now
    bounded (portproxy.thread_budget(), a budget of 50 here); past it a client is turned away.
    The control: the first clients, each of its own source port, are echoed (a session each)."""
    budget = 50
    monkeypatch.setenv("MINIRUN_PROXY_THREADS", str(budget))
    with echo_server() as target, proxy(target, None) as (_, udp), contextlib.ExitStack() as held:
        for _ in range(20):  # the control
            client = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            client.settimeout(3)
            client.connect(("127.0.0.1", udp))
            client.send(b"ping")
            assert client.recv(16) == b"ping"
        for _ in range(4 * budget):
            flood = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            flood.sendto(b"ping", ("127.0.0.1", udp))
        time.sleep(1)
        threads = _proxy_threads()
        assert threads <= budget + 3, f"{threads} threads for one client (budget {budget})"  # + main, listeners
        assert not udp_echoed(udp)  # past the budget: turned away


def test_all_proxies_together_get_no_more_of_the_hosts_tasks_than_their_shared_budget(monkeypatch):
    """Each proxy's threads were bounded (the test above), but not all proxies' together: a
    client flooding eight published ports (eight containers', each with its proxy) took the
    host's tasks all the same. The proxies now join one cgroup (containers.network.proxy_cgroup)
    whose pids.max is four proxies' budgets: 100 here, with a budget of 25 each. Five flooded
    proxies outside it (the control: as before) hold five budgets between them; in it, no more
    than the shared 100 (and the main and listener threads, which move in past it)."""
    from minirun.containers.network import proxy_cgroup

    budget, flooded = 25, 5
    monkeypatch.setenv("MINIRUN_PROXY_THREADS", str(budget))
    shared = proxy_cgroup()
    if shared is None:
        pytest.skip("no pids controller to bound the proxies with")
    with open(f"{shared}/pids.max") as limit:
        assert limit.read().strip() == str(4 * budget)
    for cgroup in (None, shared):
        with echo_server() as target, contextlib.ExitStack() as held:
            udps = [held.enter_context(proxy(target, None, cgroup=cgroup))[1] for _ in range(flooded)]
            for udp in udps:
                for _ in range(2 * budget):
                    flood = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    flood.sendto(b"ping", ("127.0.0.1", udp))
            time.sleep(1.5)
            threads = _proxy_threads()
            if cgroup is None:
                assert threads >= flooded * budget, f"the control: {threads} threads in {flooded} proxies"
            else:
                assert threads <= 4 * budget + 3 * flooded, f"{threads} threads in {flooded} proxies"
