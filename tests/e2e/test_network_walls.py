"""The network walls docker puts up, attacked from inside containers (tests/probes/netattack.c:
hand-made frames, as a container's root may send them with docker's CAP_NET_RAW, which podman's
default and ours drop: the first test) and from "another
host" (a network namespace with a veth to the host): the host's loopback stays the host's, user
networks do not reach each other, a port published on 127.0.0.1 is not reachable from elsewhere,
and forged IPv6 router advertisements configure neither the host nor another container. Each test
also shows its probe getting through where the wall has a door (a published port), so a probe that
reaches nothing never passes for a wall. The last two: DNAT elements follow their container only,
neither left to the next holder of its address nor taken from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading

import pytest

from minirun import linux
from minirun.net import networks, nftables, portmap
from tests import sessions
from tests.e2e.test_network import seen  # noqa: F401
from tests.helpers import build_probe, minirun_in, wait_until

SERVE = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
# the bridge's MAC, as a container learns it: the probe sends its frames there
GATEWAY_MAC = (
    "gw=$(ip route | awk '/default/ {print $3}'); ping -c 1 -W 1 $gw >/dev/null; "
    "mac=$(awk -v gw=$gw '$1 == gw {print $4}' /proc/net/arp); "
)


@pytest.fixture(scope="session")
def attack_dir(tmp_path_factory) -> str:
    return build_probe(tmp_path_factory.mktemp("netprobes"), "netattack")


@pytest.fixture
def probe(attack_dir) -> list[str]:
    """The probe at /probe/netattack, with docker's CAP_NET_RAW back (podman's default, ours, drops
    it): the walls below must hold for a container of docker's defaults too."""
    return ["--cap-add", "NET_RAW", "-v", f"{attack_dir}:/probe:ro"]


@pytest.fixture
def cleanup(cli):
    """Containers and networks a test made go with it, by name."""
    made: dict[str, list[str]] = {"containers": [], "networks": []}
    yield made
    if made["containers"]:
        cli("rm", "-f", *made["containers"])
    if made["networks"]:
        cli("network", "rm", *made["networks"])


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_loop(url: str) -> str:
    """A shell loop: fetch `url` once httpd is up (at most ~5 s)."""
    return f"for i in $(seq 50); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1"


def labelled(text: str) -> dict[str, str]:
    """`LABEL RESULT...` lines (the probes run side by side) -> {label: first word of the result}."""
    found = {}
    for line in text.splitlines():
        label, _, result = line.partition(" ")
        if label and label not in found:
            found[label] = result.split(" ", 1)[0]
    return found


def start(cli, cleanup, name: str, *args: str, command: str = SERVE) -> str:
    result = cli("run", "-d", "--name", name, *args, "busybox", "sh", "-c", command)
    assert result.code == 0, result.err
    cleanup["containers"].append(name)
    return result.out.strip()


def address_of(cli, name: str) -> str:
    document = json.loads(cli("inspect", name).out)[0]
    return next(iter(document["NetworkSettings"]["Networks"].values()))["IPAddress"]


def test_a_default_container_hand_makes_no_frames(cli, busybox, attack_dir, probe):
    """podman's default set drops CAP_NET_RAW: a container's root cannot send frames of its own
    making (any source address; ARP answers that take a neighbour's traffic). The attack, with
    docker's CAP_NET_RAW given back: a datagram to a host socket, its source forged as another
    address of the bridge's subnet, arrives as from that address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_udp:
        host_udp.bind(("0.0.0.0", 0))
        host_udp.settimeout(10)
        port = host_udp.getsockname()[1]
        forge = GATEWAY_MAC + (
            "ip=$(ip -4 -o addr show eth0 | awk '{split($4, a, \"/\"); print a[1]}'); "
            f'/probe/netattack eth0 "$mac" $gw {port} udp ${{ip%.*}}.250'
        )
        default = cli("run", "--rm", "-v", f"{attack_dir}:/probe:ro", "busybox", "sh", "-c", forge)
        assert default.out == "socket 1\n", default  # EPERM
        forged = cli("run", "--rm", *probe, "busybox", "sh", "-c", forge)
        data, (source, _) = host_udp.recvfrom(100)
        assert data == b"minirun-probe" and source.endswith(".250"), (data, source, forged)


def test_a_container_never_reaches_the_hosts_loopback(cli, busybox, probe):
    """Our bridges have route_localnet (ports published on 127.0.0.1 are DNATed out of lo): a frame
    for 127.0.0.1 sent to the bridge's MAC would reach the host's loopback-only services
    (CVE-2020-8558), and a forged 127.0.0.1 source would pass for the host itself. Docker's
    containers reach neither; they do reach what listens on the bridge's address."""
    with contextlib.ExitStack() as stack:
        loop_tcp = stack.enter_context(socket.socket())
        loop_tcp.bind(("127.0.0.1", 0))
        loop_tcp.listen(8)
        loop_udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        loop_udp.bind(("127.0.0.1", 0))
        any_udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        any_udp.bind(("0.0.0.0", 0))
        door = stack.enter_context(socket.socket())
        door.bind(("0.0.0.0", 0))
        door.listen(8)
        attacks = {
            "loopback-tcp": f"127.0.0.1 {loop_tcp.getsockname()[1]} tcp",
            "loopback-udp": f"127.0.0.1 {loop_udp.getsockname()[1]} udp",
            "forged-source": f"$gw {any_udp.getsockname()[1]} udp 127.0.0.1",
            "bridge-address": f"$gw {door.getsockname()[1]} tcp",
        }
        script = GATEWAY_MAC + "".join(
            f"echo {label} $(/probe/netattack eth0 $mac {target}) & " for label, target in attacks.items()
        )
        result = cli("run", "--rm", *probe, "busybox", "sh", "-c", script + "wait")
        assert result.code == 0, result.err
        seen = labelled(result.out)
        assert seen == {"loopback-tcp": "timeout", "loopback-udp": "timeout", "forged-source": "timeout",
                        "bridge-address": "synack"}, result.out  # fmt: skip
        for sock in (loop_udp, any_udp):
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recvfrom(100)


# The link-local group MACs a bridge port hands its own stack: LLDP's (a bridge may be told to
# forward it), the slow protocols' (never forwarded)
PORT_ITSELF = ("01:80:c2:00:00:0e", "01:80:c2:00:00:02")


def test_a_bridge_port_takes_no_datagram_for_the_host(cli, busybox, probe):
    """The host's end of a container's veth pair is a port of its bridge: what it receives is
    switched, or taken for the host by the bridge, where the walls look at it. But a port hands
    a frame sent to a link-local group MAC to its own stack, and a container's root (docker's
    CAP_NET_RAW) sent the host datagrams that way with any source address (another host's, say),
    past the walls' reverse-path check. The control: its datagram to the bridge, from its own
    address, arrives."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host_udp:
        host_udp.bind(("0.0.0.0", 0))
        host_udp.settimeout(5)
        port = host_udp.getsockname()[1]
        script = GATEWAY_MAC + "".join(
            f"/probe/netattack eth0 {mac} {target} {port} udp 198.51.100.7 4100{n}; "
            for n, mac in enumerate(PORT_ITSELF)
            for target in ("$gw", "255.255.255.255")
        )
        result = cli(
            "run", "--rm", *probe, "busybox", "sh", "-c", script + f"/probe/netattack eth0 $mac $gw {port} udp - 41009"
        )
        assert result.out == "timeout\n" * 5, result
        arrived = [host_udp.recvfrom(100)[1]]
        host_udp.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                arrived.append(host_udp.recvfrom(100)[1])
    assert [sport for _, sport in arrived] == [41009], arrived


def test_user_networks_do_not_reach_each_other(cli, busybox, cleanup):
    """docker's DOCKER-ISOLATION: a container on one network never reaches one on another (nor
    from the default bridge); a port it publishes is open to them, as to any host."""
    for name in ("walla", "wallb"):
        assert cli("network", "create", name).code == 0
        cleanup["networks"].append(name)
    start(cli, cleanup, "wallweb", "--network", "wallb", "-p", "80")
    target = address_of(cli, "wallweb")
    port = json.loads(cli("inspect", "wallweb").out)[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    same = cli("run", "--rm", "--network", "wallb", "busybox", "sh", "-c", fetch_loop(f"http://{target}/"))
    assert same.code == 0 and same.out.startswith("hello from"), same
    fetch = f"timeout 3 wget -q -O- http://{target}/; echo direct $?; timeout 3 wget -q -O- http://$gw:{port}/; echo published $?"
    script = "gw=$(ip route | awk '/default/ {print $3}'); " + fetch
    for network in ("walla", "bridge"):
        result = cli("run", "--rm", "--network", network, "busybox", "sh", "-c", script)
        lines = result.out.splitlines()
        assert len(lines) == 3 and lines[0].startswith("direct ") and lines[0] != "direct 0", result.out
        assert lines[1].startswith("hello from") and lines[2] == "published 0", result.out


def udp_socket_in(pid: int, port: int = 0) -> socket.socket:
    """A UDP socket on every address of process `pid`'s network namespace (a socket stays in the
    namespace it was made in), made by a thread of ours that steps in and out: busybox has no
    UDP server, and a victim's socket read here needs no output of the container's."""
    sock = socket_in(pid, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    return sock


def socket_in(pid: int, kind: int, proto: int = 0) -> socket.socket:
    """A non-blocking IPv4 socket of process `pid`'s network namespace (see udp_socket_in)."""
    made: list[socket.socket] = []

    def make() -> None:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            linux.setns(target, linux.CLONE_NEWNET)
            try:
                made.append(socket.socket(socket.AF_INET, kind, proto))
            finally:
                linux.setns(home, linux.CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(home)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    made[0].setblocking(False)
    return made[0]


def nothing_arrived(sock: socket.socket) -> bool:
    try:
        sock.recvfrom(100)
    except BlockingIOError:
        return True
    return False


@pytest.fixture
def victim(cli, busybox, cleanup):
    """A container alone on its own network, with a UDP socket (its port closed to everyone off
    that network): (its address, the socket)."""
    assert cli("network", "create", "wallvictims").code == 0
    cleanup["networks"].append("wallvictims")
    start(cli, cleanup, "wallvictim", "--network", "wallvictims", command="sleep 300")
    pid = json.loads(cli("inspect", "wallvictim").out)[0]["State"]["Pid"]
    with udp_socket_in(pid) as sock:
        yield address_of(cli, "wallvictim"), sock


def test_a_forged_connection_opens_no_other_network(cli, busybox, cleanup, probe, victim):
    """The isolation between networks let replies pass: a packet that conntrack takes for the
    answer to a connection the other side opened. A container's root (CAP_NET_RAW) makes such
    a connection up: a datagram "from" the victim's port to its own, routed back to it by the
    host, then its own to the victim's port, which passed as that answer. Docker drops anything
    from one of its bridges into another before it looks at conntrack."""
    forge_a_connection(cli, probe, *victim)


def forge_a_connection(cli, probe: list[str], address: str, sock: socket.socket) -> None:
    """The attack above, from a container on the default bridge."""
    port = sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as door:
        door.bind(("0.0.0.0", 0))
        door.settimeout(5)  # (what the probe sent may still be on its way when its container is gone)
        script = GATEWAY_MAC + (
            "me=$(ip -4 -o addr show eth0 | awk '{split($4, a, \"/\"); print a[1]}'); "
            f"echo forge $(/probe/netattack eth0 $mac $me 40000 udp {address} {port}); "
            f"echo attack $(/probe/netattack eth0 $mac {address} {port} udp - 40000); "
            f"echo door $(/probe/netattack eth0 $mac $gw {door.getsockname()[1]} udp - 40000)"
        )
        result = cli("run", "--rm", *probe, "busybox", "sh", "-c", script)
        assert labelled(result.out) == {"forge": "timeout", "attack": "timeout", "door": "timeout"}, result
        assert door.recvfrom(100)[0] == b"minirun-probe"  # the probe's datagrams do go out
    assert nothing_arrived(sock)


def test_an_icmp_error_opens_no_other_network(cli, busybox, cleanup, attack_dir, probe):
    """A published port's connections pass from one bridge to another (they are DNATed), and so
    did an ICMP error conntrack relates to one: it looks at the error's destination and the
    datagram quoted, not at who sends it. A container of a third network (docker's CAP_NET_RAW)
    sent the container that published a UDP port a "port unreachable" about another network's
    client's datagram to it, as a router on its way would. No router stands between a
    container and the host; from another host such an error is a router's, and arrives (the
    control)."""
    for name in ("wallicmpa", "wallicmpb", "wallicmpc"):
        assert cli("network", "create", name).code == 0
        cleanup["networks"].append(name)
    start(cli, cleanup, "wallicmpweb", "--network", "wallicmpb", "-p", "9000/udp", command="sleep 300")
    port = cli("port", "wallicmpweb", "9000/udp").out.strip().split(":")[-1]
    pid = json.loads(cli("inspect", "wallicmpweb").out)[0]["State"]["Pid"]
    start(cli, cleanup, "wallicmpclient", "--network", "wallicmpc", *probe, command="sleep 300")
    client = address_of(cli, "wallicmpclient")
    gateway = json.loads(cli("network", "inspect", "wallicmpc").out)[0]["IPAM"]["Config"][0]["Gateway"]
    unreach = f"{gateway} {port} unreach - {client} 41000"
    with socket_in(pid, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sent = cli(
            "exec",
            "wallicmpclient",
            "sh",
            "-c",
            GATEWAY_MAC + f"/probe/netattack eth0 $mac {gateway} {port} udp - 41000",
        )
        assert sent.out == "timeout\n", sent  # (nothing answers in the container: conntrack has it all the same)
        attack = cli(
            "run",
            "--rm",
            "--network",
            "wallicmpa",
            *probe,
            "busybox",
            "sh",
            "-c",
            GATEWAY_MAC + f"/probe/netattack eth0 $mac {unreach}",
        )
        assert attack.out == "sent\n", attack
        assert not wait_until(lambda: not nothing_arrived(sock), timeout=2)
        netattack = os.path.join(attack_dir, "netattack")
        with another_host() as (inside, _, mac, _):
            control = subprocess.run(
                [*inside, netattack, "eth0", mac, *unreach.split()], capture_output=True, text=True
            )
            assert control.stdout == "sent\n", control
            assert wait_until(lambda: not nothing_arrived(sock), timeout=5)


def test_another_host_sends_a_container_no_error(cli, busybox, cleanup, attack_dir, probe):
    """Another host that routes a bridge's subnet through this one sent a container an ICMP error
    addressed to it: conntrack relates an error to a connection by the datagram it quotes (here
    the container's to this host), whoever sends it, and the walls let what it relates into a
    bridge. Nothing else comes for a container's address by another interface. The control: an
    error about the container's datagram to that host, sent where a router's would go (to this
    host's address, which the container's datagram left with), arrives."""
    assert cli("network", "create", "wallerrors").code == 0
    cleanup["networks"].append("wallerrors")
    start(cli, cleanup, "wallerrvictim", "--network", "wallerrors", *probe, command="sleep 300")
    victim = address_of(cli, "wallerrvictim")
    pid = json.loads(cli("inspect", "wallerrvictim").out)[0]["State"]["Pid"]
    gateway = json.loads(cli("network", "inspect", "wallerrors").out)[0]["IPAM"]["Config"][0]["Gateway"]
    netattack = os.path.join(attack_dir, "netattack")
    with another_host() as (inside, host_ip, mac, peer), socket_in(pid, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for target in (gateway, peer):  # a datagram to each, from port 42000: two connections
            sent = cli(
                "exec",
                "wallerrvictim",
                "sh",
                "-c",
                GATEWAY_MAC + f"/probe/netattack eth0 $mac {target} 5555 udp - 42000",
            )
            assert sent.out == "timeout\n", sent
        while not nothing_arrived(sock):  # (each answered "port unreachable")
            pass

        def error(to: str, about: str) -> None:
            sent = subprocess.run(
                [*inside, netattack, "eth0", mac, to, "42000", "unreach", "-", about, "5555"],
                capture_output=True,
                text=True,
            )
            assert sent.stdout == "sent\n", sent

        error(victim, gateway)
        assert not wait_until(lambda: not nothing_arrived(sock), timeout=2)
        error(host_ip, peer)
        assert wait_until(lambda: not nothing_arrived(sock), timeout=5)


def test_walls_added_since_reach_a_table_an_older_minirun_wrote(cli, busybox, cleanup, probe, victim):
    """A start on a bridge that exists took the table as it found it: the walls above reached a
    host whose bridges an older minirun made only at its next reboot (or new bridge)."""
    assert cli("run", "--rm", "busybox", "true").code == 0  # the default bridge is there
    table = nftables.TABLE
    bridges = f'"{networks.BRIDGE_PREFIX}*"'
    older = [  # the rules before conntrack's word stopped counting between bridges
        f"flush chain ip {table} guard_forward",
        f"add rule ip {table} guard_forward oifname {bridges} ct state established,related accept",
        f"add rule ip {table} guard_forward oifname {bridges} ct status dnat accept",
        f"add rule ip {table} guard_forward oifname {bridges} fib daddr . iif oif missing drop",
    ]
    subprocess.run(["nft", "-f", "-"], input="\n".join(older) + "\n", text=True, check=True)
    os.unlink(os.path.join(networks.HOST_DIR, "walls.nft"))  # an older minirun kept no record
    forge_a_connection(cli, probe, *victim)


def test_a_forged_connection_lets_no_other_host_in(cli, busybox, cleanup, attack_dir, probe, victim):
    """The same from another host (its traffic forwarded by this one, as a docker host's is): its
    datagram "from" the victim's port, forwarded back to it, then its own to the victim's port;
    or the first half sent for it by a container of any network (the address it forges is
    another network's)."""
    address, sock = victim
    port = sock.getsockname()[1]
    netattack = os.path.join(attack_dir, "netattack")
    with another_host() as (inside, host_ip, mac, peer), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as door:
        door.bind(("0.0.0.0", 0))
        door.settimeout(5)  # (what the probe sent may still be on its way when its container is gone)

        def attack(*args: str) -> str:
            result = subprocess.run([*inside, netattack, "eth0", mac, *args], capture_output=True, text=True)
            return result.stdout

        assert attack(peer, "40000", "udp", address, str(port)) == "timeout\n"
        assert attack(address, str(port), "udp", "-", "40000") == "timeout\n"
        assert nothing_arrived(sock), "from another host"
        helped = cli("run", "--rm", *probe, "busybox", "sh", "-c",
                     GATEWAY_MAC + f"/probe/netattack eth0 $mac {peer} 40001 udp {address} {port}")  # fmt: skip
        assert helped.out == "timeout\n", helped
        assert attack(address, str(port), "udp", "-", "40001") == "timeout\n"
        assert nothing_arrived(sock), "from another host, helped by a container"
        assert attack(host_ip, str(door.getsockname()[1]), "udp") == "timeout\n"
        assert door.recvfrom(100)[0] == b"minirun-probe"  # the peer's datagrams do reach this host


@contextlib.contextmanager
def another_host():
    """A network namespace with a veth to the host, whose host end forwards (as on any host with
    ip_forward on, a docker host's): (the argv prefix that runs a command in it, the host's
    address and MAC there, its own address). The namespace is a process's, never a name under /run/netns:
    `ip netns add` leaves /run/netns bind-mounted on the host for good."""
    tag = f"{os.getpid() % 100000:05d}"
    veth = f"xpeer{tag}"  # not our bridges' prefix: the walls are not about it
    pid = os.getpid()  # a /30 of 10.253/16 of this worker's own (not in minirun's pools)
    third, fourth = (pid >> 6) % 256, (pid % 64) * 4
    host_ip, peer_ip = f"10.253.{third}.{fourth + 1}", f"10.253.{third}.{fourth + 2}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    holder = subprocess.Popen(["unshare", "--net", "busybox", "sleep", "3600"])
    inside = ["nsenter", "-t", str(holder.pid), "-n"]
    try:
        ours = os.readlink("/proc/self/ns/net")
        assert wait_until(lambda: os.readlink(f"/proc/{holder.pid}/ns/net") != ours)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(holder.pid))
        ip("addr", "add", f"{host_ip}/30", "dev", veth)
        ip("link", "set", veth, "up")
        for args in (
            ["addr", "add", f"{peer_ip}/30", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", host_ip],
        ):
            subprocess.run([*inside, "ip", *args], check=True, capture_output=True)
        with open(f"/proc/sys/net/ipv4/conf/{veth}/forwarding", "w") as f:
            f.write("1")
        with open(f"/sys/class/net/{veth}/address") as f:
            mac = f.read().strip()
        yield inside, host_ip, mac, peer_ip
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        holder.kill()
        holder.wait()


def test_a_port_published_on_loopback_is_the_hosts_alone(cli, busybox, cleanup, attack_dir):
    """-p 127.0.0.1:P:80 is for the host's own clients: another host sending a frame for
    127.0.0.1:P to this one gets nothing (docker 28 drops it), nor does it reach a container's
    address directly; a port published on every address is its door."""
    local, everywhere = free_port(), free_port()
    start(cli, cleanup, "wallweb", "-p", f"127.0.0.1:{local}:80", "-p", f"{everywhere}:80")
    target = address_of(cli, "wallweb")
    probe = os.path.join(attack_dir, "netattack")
    with another_host() as (inside, host_ip, mac, _):

        def attack(address: str, port: int) -> str:
            result = subprocess.run(
                [*inside, probe, "eth0", mac, address, str(port), "tcp"],
                capture_output=True,
                text=True,
            )
            return result.stdout

        door = subprocess.run(  # the peer's own stack: the probe's handshake would meet its RST
            [*inside, "busybox", "sh", "-c", fetch_loop(f"http://{host_ip}:{everywhere}/")],
            capture_output=True,
            text=True,
        )
        assert door.stdout.startswith("hello from"), door
        assert attack("127.0.0.1", local) == "timeout\n"
        assert attack(target, 80) == "timeout\n"
    with socket.create_connection(("127.0.0.1", local), timeout=5) as conn:  # the host's own client
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert b"hello from" in conn.makefile("rb").read()


@pytest.mark.skipif(not os.path.isdir("/proc/sys/net/ipv6"), reason="no IPv6 in this kernel")
def test_forged_router_advertisements_configure_nobody(cli, busybox, cleanup, probe):
    """CVE-2020-13401: a container's root sends an IPv6 router advertisement on the bridge. Docker's
    bridges refuse them; so do ours (also one an older minirun made, hardened at the next start)
    and the other containers on it."""
    bridge = networks.DEFAULT_BRIDGE
    start(cli, cleanup, "wallvictim", command="sleep 60")  # the bridge exists from here on
    with open(f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra", "w") as f:
        f.write("1")  # as an older minirun left it
    try:
        start(cli, cleanup, "wallvictim2", command="sleep 60")
        result = cli("run", "--rm", *probe, "busybox", "sh", "-c", "sleep 1; /probe/netattack ra eth0; sleep 1")
        assert result.out == "sent\n", result
        host_routes = subprocess.run(["ip", "-6", "route", "show", "dev", bridge], capture_output=True, text=True)
        assert "proto ra" not in host_routes.stdout and "2001:db8:bad" not in host_routes.stdout, host_routes.stdout
        for victim in ("wallvictim", "wallvictim2"):
            routes = cli("exec", victim, "ip", "-6", "route").out
            assert "default" not in routes and "2001:db8:bad" not in routes, routes
    finally:  # a failure leaves the host a route through a container: it goes
        subprocess.run(["ip", "-6", "route", "flush", "dev", bridge, "proto", "ra"], capture_output=True)
        subprocess.run(["ip", "-6", "route", "del", "2001:db8:bad::/64", "dev", bridge], capture_output=True)
        subprocess.run(["ip", "-6", "addr", "flush", "dev", bridge, "scope", "global"], capture_output=True)


# What on_a_host_of_its_own runs before its script: a fresh sysfs shows the namespace's interfaces,
# the host's cgroups bound into it; its loopback up; `m` runs minirun.
OWN_HOST = r"""
set -eu
mkdir -p "$WORK/sys" && mount -t sysfs sysfs "$WORK/sys"
mount --rbind /sys/fs/cgroup "$WORK/sys/fs/cgroup" && mount --rbind "$WORK/sys" /sys
ip link set lo up
m() { "$PYTHON" -m minirun "$@"; }
"""

# A host in a network namespace of its own (see on_a_host_of_its_own): what the advertisement
# would configure is its, not this host's. The container's veth goes with it, and any route through it.
PORT_RA_HOST = r"""
trap 'm rm -f wallra >/dev/null 2>&1' EXIT
m run -d --name wallra --cap-add NET_RAW -v "$PROBES:/probe:ro" busybox sleep 300 >/dev/null
for mac in $MACS; do m exec wallra /probe/netattack ra eth0 $mac; done
ip -6 route
ip -6 addr show scope global
"""


@pytest.mark.skipif(not os.path.isdir("/proc/sys/net/ipv6"), reason="no IPv6 in this kernel")
def test_a_bridge_port_takes_no_router_advertisement(busybox, isolated_store, tmp_path, attack_dir):
    """The bridge refuses router advertisements (above), but a port hands a frame sent to a
    link-local group MAC to its own stack (test_a_bridge_port_takes_no_datagram_for_the_host): the
    host's end of a container's veth pair took the advertisement, and the host got an address of
    the container's prefix and a default route through the container, of high preference
    (CVE-2020-13401 again). On a host of its own: this host's routes stay as they are."""
    macs = " ".join(PORT_ITSELF)
    result = on_a_host_of_its_own(PORT_RA_HOST, isolated_store, tmp_path, PROBES=attack_dir, MACS=macs)
    assert result.stdout.startswith("sent\nsent\n"), (result.stdout, result.stderr)
    assert "proto ra" not in result.stdout and "2001:db8:bad" not in result.stdout, result.stdout


def test_a_start_never_inherits_ports_a_vanished_container_left(cli, busybox, cleanup, isolated_store):
    """A container's monitor killed (its containers die with it) and its record gone (a store
    deleted, as a test session deletes its stores): nobody removes its DNAT elements. The next
    container given its address must not serve them: it published nothing."""
    assert cli("network", "create", "walldebris").code == 0
    cleanup["networks"].append("walldebris")
    port = free_port()
    doomed = start(cli, cleanup, "walldoomed", "--network", "walldebris", "-p", f"{port}:80", command="sleep 300")
    address = address_of(cli, "walldoomed")
    server = subprocess.run(
        ["pgrep", "-f", f"monitorserver:serve {isolated_store} "], capture_output=True, text=True
    ).stdout.split()
    assert len(server) == 1, server
    os.kill(int(server[0]), 9)
    assert wait_until(lambda: "Exited" in cli("ps", "-a", "--format", "{{.Status}}").out)
    subprocess.run(["rm", "-rf", str(isolated_store / "containers" / doomed)], check=True)
    assert [e for e in portmap.list_elements() or [] if e[3] == address] == [("tcp", "", port, address, 80)]
    start(cli, cleanup, "wallnewcomer", "--network", "walldebris")
    assert address_of(cli, "wallnewcomer") == address
    assert [e for e in portmap.list_elements() or [] if e[3] == address] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_an_earlier_holders_exit_never_takes_the_ports_of_its_address(cli, busybox, cleanup, isolated_store):
    """An --rm container's record goes before its monitor's exit work unpublishes its ports, so
    its address may be booked and published to by a new start first: that late unpublish must
    leave the new holder's ports alone."""
    from minirun.containers.network import stopped

    port = free_port()
    start(cli, cleanup, "wallholder", "-p", f"127.0.0.1:{port}:80", command="sleep 300")
    address = address_of(cli, "wallholder")
    earlier = {"IPAddress": address, "Ports": [["127.0.0.1", free_port(), 80, "tcp"]], "Token": "an earlier run's"}
    stopped(str(isolated_store), "f" * 64, earlier)  # its record is gone already
    assert [e for e in portmap.list_elements() or [] if e[3] == address] == [("tcp", "127.0.0.1", port, address, 80)]


@pytest.fixture(scope="session")
def locker_dir(tmp_path_factory) -> str:
    return build_probe(tmp_path_factory.mktemp("lockprobe"), "locker")


def test_a_lock_on_its_own_hosts_file_holds_no_peer_waiting(cli, busybox, cleanup, isolated_store, locker_dir):
    """A container's /etc/hosts is the host's file, rewritten at each peer's start and stop. The
    rewrite took an flock of that file, which the container could take first (every peer's start
    waited for good), and opened it to write, which waits out a lease the container's root (its
    owner) may hold: 45 s (fs.lease-break-time) at every start and stop, again and again."""
    assert cli("network", "create", "walllocks").code == 0
    cleanup["networks"].append("walllocks")
    for kind in ("flock", "lease"):
        start(
            cli, cleanup, f"wall{kind}", "--network", "walllocks", "-v", f"{locker_dir}:/probe:ro",
            command=f"exec /probe/locker {kind} /etc/hosts",
        )  # fmt: skip
        assert wait_until(lambda name=f"wall{kind}": "locked" in cli("logs", name).out), cli("logs", f"wall{kind}")
    start(cli, cleanup, "wallpeer", "--network", "walllocks", command="exec sleep 300")
    for _ in range(2):  # a lease broken once is not the last: the holder takes it again
        done = minirun_in(isolated_store, "run", "--rm", "--network", "walllocks", "busybox", "true", timeout=20)
        assert done.returncode == 0, done.stderr
    assert "wallflock" in cli("exec", "wallpeer", "cat", "/etc/hosts").out  # the others still get theirs


def test_a_hosts_file_grown_huge_is_not_taken_over_whole(cli, busybox, cleanup):
    """--network container:X takes X's /etc/hosts and resolv.conf over; X writes them, and a sparse
    giant was read whole into minirun's memory and written to the joiner's file on disk."""
    start(cli, cleanup, "wallgiant", command="truncate -s 8G /etc/hosts && echo grown && exec sleep 300")
    assert wait_until(lambda: "grown" in cli("logs", "wallgiant").out), cli("logs", "wallgiant")
    joined = cli("run", "--rm", "--network", "container:wallgiant", "busybox", "true")
    assert joined.code == 125 and "/etc/hosts of container" in joined.err and "over 1048576 bytes" in joined.err
    assert len(joined.err.strip().splitlines()) == 1, joined.err


def test_an_internal_network_is_no_way_out(cli, busybox, cleanup):
    """`network create --internal` (docker's): its containers reach each other and the host's
    address on their bridge, and nothing past it. They get no default route and publish no
    ports; one that makes its own route (NET_ADMIN) still reaches no other host, as docker's
    DROP rules keep it in. A container of a plain network reaches that host (the control)."""
    for name, *flags in (("wallin", "--internal"), ("wallout",)):
        assert cli("network", "create", *flags, name).code == 0
        cleanup["networks"].append(name)
    listed = cli("network", "ls", "--format", "{{.Name}} {{.Internal}}").out.split("\n")
    assert "wallin true" in listed and "wallout false" in listed
    inspected = json.loads(cli("network", "inspect", "wallin").out)[0]
    assert inspected["Internal"] is True
    gateway = inspected["IPAM"]["Config"][0]["Gateway"]
    start(cli, cleanup, "wallweb", "--network", "wallin", "-p", "80")
    assert cli("port", "wallweb").out == ""
    settings = json.loads(cli("inspect", "wallweb").out)[0]["NetworkSettings"]
    assert settings["Ports"] == {} and settings["Networks"]["wallin"]["Gateway"] == ""
    ping = "ping -c 1 -W 2 {} >/dev/null; echo $?"  # (ping takes NET_RAW: docker's default, not ours)
    with another_host() as (_, _, _, peer):
        control = cli(
            "run", "--rm", "--network", "wallout", "--cap-add", "NET_RAW", "busybox", "sh", "-c", ping.format(peer)
        )
        assert control.out.strip() == "0", control
        inside = cli(
            "run", "--rm", "--network", "wallin", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "busybox", "sh", "-c",
            "ip route | grep -c default; "
            + f"({fetch_loop('http://wallweb/')}) >/dev/null; echo peer $?; "
            + ping.format(gateway)
            + "; ip route add default via " + gateway + "; " + ping.format(peer),
        )  # fmt: skip
        assert inside.out.split() == ["0", "peer", "0", "0", "1"], inside


@pytest.mark.parametrize("backend", ["nft", "proxy"])
def test_an_internal_network_reaches_no_published_port(cli, busybox, cleanup, monkeypatch, seen, backend):
    """A port another network's container publishes is open to every network but an --internal
    one, as in docker: by nftables its DNATed packets meet the internal wall, and the userspace
    proxy (MINIRUN_PORT_BACKEND=proxy) turns such a client away itself. A container of a plain
    network reaches the port by its own gateway (the control)."""
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", backend)
    for name, *flags in (("portin", "--internal"), ("portout",), ("portweb",)):
        assert cli("network", "create", *flags, name).code == 0
        cleanup["networks"].append(name)
    web = start(cli, cleanup, "portwebber", "--network", "portweb", "-p", "80")
    assert seen(web)["PortBackend"] == backend
    port = json.loads(cli("port", "portwebber", "80").out.split(":")[-1])
    gateways = {
        name: json.loads(cli("network", "inspect", name).out)[0]["IPAM"]["Config"][0]["Gateway"]
        for name in ("portin", "portout")
    }
    control = cli(
        "run",
        "--rm",
        "--network",
        "portout",
        "busybox",
        "sh",
        "-c",
        fetch_loop(f"http://{gateways['portout']}:{port}/"),
    )
    assert control.code == 0 and control.out.startswith("hello from"), control
    inside = cli(
        "run", "--rm", "--network", "portin", "--cap-add", "NET_RAW", "busybox", "sh", "-c",
        f"ping -c 1 -W 2 {gateways['portin']} >/dev/null && echo host; timeout 3 wget -q -O- http://{gateways['portin']}:{port}/; echo port $?",
    )  # fmt: skip
    lines = inside.out.splitlines()
    assert lines[0] == "host" and lines[-1].startswith("port ") and lines[-1] != "port 0", inside


@pytest.mark.parametrize("backend", ["nft", "proxy"])
def test_an_internal_network_of_another_minirun_reaches_no_published_port(cli, busybox, cleanup, monkeypatch, backend):
    """Two minirun on one host, each with its own MINIRUN_BRIDGE_PREFIX, nft table and run dir
    (as two copies of this suite run): the proxy knew the --internal bridges of its own prefix
    alone, so a container of the other's internal network reached a port it served. By nftables
    the DNATed packets meet the other's internal wall, as any published port's do. The control:
    a container of the other's plain network reaches the port."""
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", backend)
    assert cli("network", "create", "xprefweb").code == 0
    cleanup["networks"].append("xprefweb")
    start(cli, cleanup, "xprefwebber", "--network", "xprefweb", "-p", "80")
    port = cli("port", "xprefwebber", "80").out.strip().split(":")[-1]
    # names recorded as a test session's: a run killed before the end leaves them to the next sweep
    other = sessions.claim_session(os.getpid()).names
    fetched = {}
    try:
        with monkeypatch.context() as as_the_other:
            for variable, value in other.env.items():
                as_the_other.setenv(variable, value)
            try:
                for name, *flags in (("xprefin", "--internal"), ("xprefout",)):
                    assert cli("network", "create", *flags, name).code == 0
                    gateway = json.loads(cli("network", "inspect", name).out)[0]["IPAM"]["Config"][0]["Gateway"]
                    fetch = f"timeout 5 wget -q -O- http://{gateway}:{port}/; echo port $?"
                    fetched[name] = cli("run", "--rm", "--network", name, "busybox", "sh", "-c", fetch)
            finally:
                cli("network", "rm", "xprefin", "xprefout")
    finally:
        left = sessions.remove_names(other)
    assert left == [], left
    control, inside = fetched["xprefout"], fetched["xprefin"]
    assert control.code == 0 and control.out.startswith("hello from"), control
    lines = inside.out.splitlines()
    assert inside.code == 0 and lines and lines[-1].startswith("port ") and lines[-1] != "port 0", inside
    assert "hello" not in inside.out, inside


def test_a_forged_source_takes_no_internal_datagram_through_the_proxy(cli, busybox, cleanup, monkeypatch, probe):
    """The proxy turns away a client on an --internal network by its address (above), so that
    address must be the client's own: a container of an internal network (docker's CAP_NET_RAW)
    sent a datagram "from" an address of a plain network to the host's proxied port, and the
    proxy passed it on to the container that published it. The walls drop what comes in by a
    bridge with a source address not routed back through it; but they pass 0.0.0.0/8 to a
    broadcast or local multicast address (as DHCP sends), and a datagram "from" 0.0.0.0 to
    255.255.255.255 or 224.0.0.1 reached the proxy, which turns such a client away now; nor
    did the walls see a datagram of any source sent to a link-local group MAC, which the bridge
    port took for the host itself (above). The control: the same datagram from a plain
    network's container, with its own address, arrives."""
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")
    for name, *flags in (("forgein", "--internal"), ("forgeout",)):
        assert cli("network", "create", *flags, name).code == 0
        cleanup["networks"].append(name)
    start(cli, cleanup, "forgetarget", "--network", "forgeout", "-p", "9000/udp", command="sleep 300")
    port = cli("port", "forgetarget", "9000/udp").out.strip().split(":")[-1]
    pid = json.loads(cli("inspect", "forgetarget").out)[0]["State"]["Pid"]
    gateways = {
        name: json.loads(cli("network", "inspect", name).out)[0]["IPAM"]["Config"][0]["Gateway"]
        for name in ("forgein", "forgeout")
    }
    forged = address_of(cli, "forgetarget")  # any address of the plain network will do
    send = "ping -c 1 -W 1 {gw} >/dev/null; mac=$(awk '$1 == \"{gw}\" {{print $4}}' /proc/net/arp); /probe/netattack eth0 $mac {gw} {port} udp {src} 40000"
    unaddressed = "".join(
        f"; /probe/netattack eth0 {mac} {group} {port} udp 0.0.0.0 4000{n + 1}"
        for n, (mac, group) in enumerate((("ff:ff:ff:ff:ff:ff", "255.255.255.255"), ("01:00:5e:00:00:01", "224.0.0.1")))
    )
    past_the_bridge = f"; /probe/netattack eth0 {PORT_ITSELF[0]} {{gw}} {port} udp 198.51.100.7 40003"
    with udp_socket_in(pid, 9000) as sock:
        plain = cli(
            "run",
            "--rm",
            "--network",
            "forgeout",
            *probe,
            "busybox",
            "sh",
            "-c",
            send.format(gw=gateways["forgeout"], port=port, src="-"),
        )
        assert wait_until(lambda: not nothing_arrived(sock), timeout=5), plain
        attack = cli(
            "run",
            "--rm",
            "--network",
            "forgein",
            *probe,
            "busybox",
            "sh",
            "-c",
            (send + unaddressed + past_the_bridge).format(gw=gateways["forgein"], port=port, src=forged),
        )
        assert attack.out == "timeout\n" * 4, attack
        assert not wait_until(lambda: not nothing_arrived(sock), timeout=2)


def test_a_proxied_udp_session_goes_to_no_next_holder_of_its_address(cli, busybox, cleanup, monkeypatch, probe):
    """The proxy keeps a UDP session per client address and port, and asks whether a client is
    on an --internal network when its session begins. A network removed and made again
    --internal with the same subnet gave its container of the same address and source port the
    session a client of the plain network had left: its datagrams went on to the published port.
    A session is kept to the bridge its client came in by now. The control: the plain network's
    client, whose datagram arrives and gets its reply."""
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")
    for name in ("sessweb", "sessreuse"):
        assert cli("network", "create", name).code == 0
        cleanup["networks"].append(name)
    start(cli, cleanup, "sesstarget", "--network", "sessweb", "-p", "9000/udp", command="sleep 300")
    port = cli("port", "sesstarget", "9000/udp").out.strip().split(":")[-1]
    pid = json.loads(cli("inspect", "sesstarget").out)[0]["State"]["Pid"]
    config = json.loads(cli("network", "inspect", "sessreuse").out)[0]["IPAM"]["Config"][0]
    send = (
        f"ping -c 1 -W 1 {config['Gateway']} >/dev/null; "
        f"mac=$(awk '$1 == \"{config['Gateway']}\" {{print $4}}' /proc/net/arp); "
        f"/probe/netattack eth0 $mac {config['Gateway']} {port} udp - 40000"
    )

    def client_sends() -> tuple[str, str]:  # from port 40000 of the network's first address
        start(cli, cleanup, "sessclient", "--network", "sessreuse", *probe, command="sleep 300")
        sent = cli("exec", "sessclient", "sh", "-c", send)
        address = address_of(cli, "sessclient")
        assert cli("rm", "-f", "sessclient").code == 0
        return address, sent.out + sent.err

    def answer() -> bool:  # the control's datagram gets a reply, back through the proxy
        try:
            _, sender = sock.recvfrom(100)
        except BlockingIOError:
            return False
        sock.sendto(b"pong", sender)
        return True

    with udp_socket_in(pid, 9000) as sock:
        replier = threading.Thread(target=wait_until, args=(answer,), kwargs={"timeout": 20})
        replier.start()
        address, plain = client_sends()
        replier.join()
        assert "udp pong" in plain, plain
        assert cli("network", "rm", "sessreuse").code == 0
        again = cli("network", "create", "--internal", "--subnet", config["Subnet"], "sessreuse")
        assert again.code == 0, again.err
        same_address, attack = client_sends()
        assert same_address == address
        assert not wait_until(lambda: not nothing_arrived(sock), timeout=2), attack


# The host of the test below, in a network and mount namespace of its own: IPv6 forwarding on
# (as on a router, or a docker host with IPv6), which this host's own sysctl may not be. Another
# host ("peer", a namespace with a veth) listens for ICMPv6 echo requests until the host's own (the
# control) arrives.
IPV6_HOST = r"""
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
unshare --net sleep 600 & peer=$!
trap 'kill $peer' EXIT
sleep 0.2
ip link add xv6 type veth peer name eth0 netns $peer
ip -6 addr add 2001:db8:77::1/64 dev xv6 nodad && ip link set xv6 up
nsenter -t $peer -n sh -c 'ip link set lo up; ip link set eth0 up
  ip -6 addr add 2001:db8:77::2/64 dev eth0 nodad; ip -6 route add default via 2001:db8:77::1'
nsenter -t $peer -n "$PYTHON" -c "$LISTEN" > "$WORK/seen" &
listener=$!
"$PYTHON" -m minirun network create --internal wallv6 >/dev/null
gw=$("$PYTHON" -m minirun network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' wallv6)
"$PYTHON" -m minirun run --rm --network wallv6 --cap-add NET_RAW -v "$PROBES:/probe:ro" busybox sh -c "
  ping -c 1 -W 1 $gw >/dev/null; mac=\$(awk '\$1 == \"$gw\" {print \$4}' /proc/net/arp)
  /probe/netattack ping6 eth0 \$mac 2001:db8:99::5 2001:db8:77::2"
sleep 1
busybox ping -6 -c 1 -W 5 2001:db8:77::2 >/dev/null
wait $listener
"""
LISTEN = r"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(60)
while True:
    data, (source, *_) = s.recvfrom(2000)
    if data[0] == 128:
        print(source, flush=True)
        if source == "2001:db8:77::1":
            break
"""


def on_a_host_of_its_own(script: str, store, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """`script` (sh) in a network and mount namespace of its own: root of a host whose network
    (ruleset, sysctls, links) is the test's alone (OWN_HOST sets it up). minirun runs there as `m`
    on `store`, with a run dir under tmp_path ($WORK); `env` is added to its environment."""
    import sys

    names = dict(MINIRUN_ROOT=str(store), MINIRUN_RUN_DIR=str(tmp_path / "run"), MINIRUN_BRIDGE_PREFIX="mrown")
    names.update(MINIRUN_NFT_TABLE="minirunown", WORK=str(tmp_path), PYTHON=sys.executable, **env)
    return subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", OWN_HOST + script],
        env=dict(os.environ, **names),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not os.path.isdir("/proc/sys/net/ipv6"), reason="no IPv6 in this kernel")
def test_an_internal_network_is_no_way_out_by_ipv6(busybox, isolated_store, tmp_path, attack_dir):
    """The walls are IPv4's (the table is `ip`): on a host that forwards IPv6, a container of an
    --internal network (or any other) with docker's CAP_NET_RAW sent IPv6 packets of any source
    to the bridge's MAC, and the host forwarded them to other hosts. Our bridges take no IPv6
    (minirun gives containers none; they still reach each other's link-local addresses)."""
    result = on_a_host_of_its_own(IPV6_HOST, isolated_store, tmp_path, PROBES=attack_dir, LISTEN=LISTEN)
    assert result.stdout == "sent\n", (result.stdout, result.stderr)
    seen = (tmp_path / "seen").read_text().split()
    assert seen == ["2001:db8:77::1"], seen  # the host's ping (the control), and nothing of the container's


def test_what_a_container_sends_out_leaves_with_the_hosts_address(cli, busybox, cleanup, tmp_path):
    """docker's MASQUERADE: another host that has no route back to a bridge's subnet (no default
    route through this one, as on any real network) still answers a container, on the default
    bridge and on a user network, since it sees the host's address."""
    assert cli("network", "create", "wallnat").code == 0
    cleanup["networks"].append("wallnat")
    (tmp_path / "index.html").write_text("hello from outside\n")
    with another_host() as (inside, _, _, peer):
        subprocess.run([*inside, "ip", "route", "del", "default"], check=True, capture_output=True)
        server = subprocess.Popen([*inside, "busybox", "httpd", "-f", "-p", "8000", "-h", str(tmp_path)])
        try:
            assert wait_until(lambda: _listening(peer, 8000))  # the host reaches it directly
            for network in ("bridge", "wallnat"):
                script = f"timeout 5 wget -q -O- http://{peer}:8000/ 2>&1"
                result = cli("run", "--rm", "--network", network, "busybox", "sh", "-c", script)
                assert result.out == "hello from outside\n", (network, result)
        finally:
            server.kill()
            server.wait()


def _listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


FLUSHED_HOST = r"""
trap 'm rm -f wallweb >/dev/null 2>&1' EXIT
m network create walla >/dev/null && m network create wallb >/dev/null
m run -d --name wallweb --network wallb busybox sh -c "$SERVE" >/dev/null
web=$(m inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' wallweb)
m run --rm --network wallb busybox sh -c "for i in \$(seq 50); do wget -q -O- http://$web/ && exit 0; sleep 0.1; done; exit 1" >/dev/null  # up, and reached from its own network
fetch() { m run --rm --network walla busybox sh -c "timeout 3 wget -q -O- http://$web/ >/dev/null && echo reached || echo walled"; }
echo before $(fetch)
nft flush ruleset  # this namespace's: a firewall's reload on a host
echo after $(fetch)
"""


def test_a_flushed_ruleset_gets_its_walls_back_at_the_next_start(busybox, isolated_store, tmp_path):
    """`nft flush ruleset` (a firewall's reload) takes minirun's table and every wall in it; the
    bridges stay, and the record of the table last written (walls.nft) still reads as today's. The
    next start on a bridge asks the kernel for the table and writes it again, so a container of
    one network still does not reach one of another. In a network namespace of the test's own:
    its ruleset is the one flushed."""
    result = on_a_host_of_its_own(FLUSHED_HOST, isolated_store, tmp_path, SERVE=SERVE)
    assert result.stdout == "before walled\nafter walled\n", (result.stdout, result.stderr)
