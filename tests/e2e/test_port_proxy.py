"""Published ports through the userspace proxy (portproxy.py), the fallback where nftables cannot
DNAT, forced here by MINIRUN_PORT_BACKEND=proxy: TCP and UDP from the host to 127.0.0.1, the port
taken while the container runs and free after stop/rm, the proxy a child of the container's owner
that dies with it, and nothing written to nftables.

The UDP echo server in the container is the host's python (busybox's nc has no -u), run from the
host's /usr mounted read-only, through the dynamic loader by path (the image has no /lib64).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from minirun.procs import is_alive
from minirun.runtime import cgroups
from tests.e2e.test_network import SERVE, elements_to, free_port, http_get, nothing_left, seen, start_web  # noqa: F401
from tests.helpers import wait_until

UDP_ECHO = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 9000))\n"
    "while True:\n    data, peer = s.recvfrom(2048); s.sendto(b'echo ' + data, peer)"
)
HOST_PYTHON = [
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "--library-path",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/bin/python3.11",
    "-S",
    "-c",
    UDP_ECHO,
]


@pytest.fixture(autouse=True)
def proxy_backend(monkeypatch):
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2 :].split()[1])


def port_free(port: int, kind=socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:  # as a server would: the proxied connections may sit in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def proxy_gone(settings: dict) -> bool:
    return not is_alive(settings["Proxy"]["pid"], settings["Proxy"]["start"])


def test_detached_container_through_the_proxy(cli, busybox, seen, isolated_store):
    port = free_port()
    web = start_web(cli, "-p", f"127.0.0.1:{port}:80")
    settings = seen(web)
    assert settings["PortBackend"] == "proxy" and elements_to({settings["IPAddress"]}) == []
    proxy = settings["Proxy"]["pid"]
    # the monitor's launcher started it for the monitor (linux.fork_owned): it is the monitor's child
    state = json.loads((isolated_store / "containers" / web / "state.json").read_text())
    assert parent_of(proxy) == state["MonitorPid"] == parent_of(state["Pid"])
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"
    # in the cgroup all proxies share (portproxy.shared_budget), where there is a pids controller
    pids = cgroups.owner("pids")
    if pids is not None:
        shared = pids.at(f"{cgroups.PARENT}/{cgroups.PROXIES}")
        assert wait_until(lambda: str(proxy) in open(f"{shared}/cgroup.procs").read().split())
    assert f"127.0.0.1:{port}->80/tcp" in cli("ps").out.splitlines()[1]
    assert cli("port", "web").out == f"80/tcp -> 127.0.0.1:{port}\n"
    # taken while it runs: by another container (refused before it starts) and for a host process
    second = cli("run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep", "100")
    assert second.code == 125
    assert second.err == f"minirun: error: Bind for 0.0.0.0:{port} failed: port is already allocated\n"
    assert not port_free(port)
    assert cli("stop", "-t", "1", "web").code == 0
    assert wait_until(lambda: proxy_gone(settings) and port_free(port))
    assert cli("port", "web").out == ""
    assert cli("start", "web").code == 0
    again = seen(web)
    assert again["Proxy"]["pid"] != proxy and http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"
    assert cli("rm", "-f", "web").code == 0
    assert proxy_gone(again) and port_free(port) and elements_to({again["IPAddress"]}) == []


def start_foreground(isolated_store, *args: str) -> subprocess.Popen:
    env = dict(os.environ, MINIRUN_ROOT=str(isolated_store))
    return subprocess.Popen(
        [sys.executable, "-m", "minirun", "run", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def running_settings(cli, seen, name: str) -> dict:
    def state():
        result = cli("inspect", name)
        return json.loads(result.out)[0] if result.code == 0 else {}

    assert wait_until(lambda: state().get("State", {}).get("Status") == "running")
    return seen(state()["Id"])


def test_foreground_container_through_the_proxy(cli, busybox, seen, isolated_store):
    port = free_port()
    run = start_foreground(isolated_store, "--name", "fg", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", SERVE)
    try:
        settings = running_settings(cli, seen, "fg")
        assert settings["PortBackend"] == "proxy" and parent_of(settings["Proxy"]["pid"]) == run.pid
        assert http_get(f"http://127.0.0.1:{port}/", timeout=10) is not None
        assert cli("stop", "-t", "1", "fg").code == 0
        assert run.wait(timeout=20) in (137, 143)  # httpd as PID 1 ignores SIGTERM: killed
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert proxy_gone(settings) and port_free(port)


def test_the_proxy_dies_with_its_owner(cli, busybox, seen, isolated_store):
    """A SIGKILLed CLI cannot clean up: PR_SET_PDEATHSIG takes the proxy, and with it the port."""
    port = free_port()
    run = start_foreground(isolated_store, "--name", "orphan", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100")
    try:
        settings = running_settings(cli, seen, "orphan")
        assert not port_free(port)
    finally:
        run.kill()
        run.wait()
    assert wait_until(lambda: proxy_gone(settings) and port_free(port))


def udp_exchange(port: int, payload: bytes, timeout: float = 15.0) -> bytes | None:
    """Send until the echo server in the container is up and answers."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        while time.monotonic() < deadline:
            sock.sendto(payload, ("127.0.0.1", port))
            try:
                return sock.recvfrom(2048)[0]
            except OSError:  # a timeout, or the refusal of a datagram sent before the server bound
                continue
    return None


def test_udp_through_the_proxy(cli, busybox, seen):
    port = free_port()
    result = cli(
        "run", "-d", "--name", "echo", "-p", f"127.0.0.1:{port}:9000/udp", "-v", "/usr:/usr:ro", "busybox", *HOST_PYTHON
    )
    assert result.code == 0, result.err
    settings = seen(result.out.strip())
    assert udp_exchange(port, b"one") == b"echo one"
    assert udp_exchange(port, b"two") == b"echo two"  # a second client: its own session, its own replies
    assert cli("port", "echo").out == f"9000/udp -> 127.0.0.1:{port}\n"
    assert not port_free(port, socket.SOCK_DGRAM)
    assert cli("rm", "-f", "echo").code == 0
    assert proxy_gone(settings) and port_free(port, socket.SOCK_DGRAM)


def test_a_port_a_host_process_holds_is_refused_before_the_start(cli, busybox, seen):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        result = cli("run", "--name", "late", "-p", f"127.0.0.1:{taken}:53/udp", "busybox", "echo", "started")
    assert result.code == 125 and result.out == ""
    assert result.err == f"minirun: error: Bind for 127.0.0.1:{taken} failed: port is already allocated\n"


def test_a_port_dnated_by_another_container_is_refused(cli, busybox, seen, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "nft")
    web = start_web(cli, "-p", f"127.0.0.1:{port}:80")
    assert seen(web)["PortBackend"] == "nft"
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")
    second = cli("run", "--rm", "-p", f"{port}:80", "busybox", "true")
    assert second.code == 125 and "port is already allocated" in second.err


def test_without_the_variable_nftables_is_used_where_it_works(cli, busybox, seen, monkeypatch):
    monkeypatch.delenv("MINIRUN_PORT_BACKEND")
    port = free_port()
    web = start_web(cli, "-p", f"127.0.0.1:{port}:80")
    settings = seen(web)
    assert settings["PortBackend"] == "nft" and "Proxy" not in settings
    assert elements_to({settings["IPAddress"]}) != []


def test_a_bad_backend_name_is_refused(cli, busybox, seen, monkeypatch):
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "iptables")
    result = cli("run", "--rm", "-p", "127.0.0.1:8080:80", "busybox", "true")
    assert result.code == 125
    assert result.err == "minirun: error: invalid MINIRUN_PORT_BACKEND: 'iptables' (supported: nft, proxy)\n"
    assert cli("ps", "-a", "-q").out == ""


# From inside a container: a datagram from each of `count` sockets of its own (a source port
# each, so a session and a thread each in the proxy) to every port given, the sockets held open.
FLOOD = (
    "import socket, sys, time\n"
    "gateway, count, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3:]\n"
    "held = []\n"
    "for port in ports:\n"
    "    for _ in range(count):\n"
    "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', (gateway, int(port)))\n"
    "        held.append(s)\n"
    "print('sent', flush=True); time.sleep(60)"
)


def test_a_container_flooding_every_published_port_gets_no_more_than_the_proxies_budget(
    cli, busybox, seen, monkeypatch
):
    """A container sends from many source ports to the UDP ports five other containers publish,
    through the host's bridge address: each datagram of a new source port is a session of the
    proxy, a thread. Each proxy stops at its budget (8 here), and all of them together at the
    shared cgroup's pids.max, four budgets (32), main and listener threads counted. Without the
    cgroup the flood held five budgets and the proxies' own ten threads: 50."""
    if cgroups.owner("pids") is None:
        pytest.skip("no pids controller to bound the proxies with")
    budget, victims = 8, 5
    monkeypatch.setenv("MINIRUN_PROXY_THREADS", str(budget))
    ports, proxies = [], []
    for i in range(victims):
        started = cli("run", "-d", "--name", f"victim{i}", "-p", "9000/udp", "busybox", "sleep", "300")
        assert started.code == 0, started.err
        settings = seen(started.out.strip())
        ports.append(cli("port", f"victim{i}", "9000/udp").out.strip().rsplit(":", 1)[1])
        proxies.append(settings["Proxy"]["pid"])
    gateway = settings["Gateway"]
    flood = [*HOST_PYTHON[:-1], FLOOD, gateway, str(2 * budget), *ports]  # (the host's python: -S -c FLOOD)
    attacker = cli("run", "-d", "--name", "flooder", "-v", "/usr:/usr:ro", "busybox", *flood)
    assert attacker.code == 0, attacker.err
    assert wait_until(lambda: "sent" in cli("logs", "flooder").out, timeout=20)
    # the flood fills what it may (a thread or so a proxy may still be starting), then no more
    assert wait_until(lambda: sum(_threads(pid) for pid in proxies) >= 4 * budget - victims, timeout=10)
    time.sleep(0.5)
    threads = sum(_threads(pid) for pid in proxies)
    assert threads <= 4 * budget, f"{threads} threads in {victims} proxies (budget {budget} each)"
    for name in ("flooder", *(f"victim{i}" for i in range(victims))):
        assert cli("rm", "-f", name).code == 0


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
