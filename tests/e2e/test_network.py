"""Container networking for real: the default bridge, user networks, published ports,
--network container:NAME, parallel starts, and nothing left behind after rm.

Traffic only ever goes between containers and to 127.0.0.1 (busybox httpd serves, wget fetches).
Every test's store is its own, but the default bridge and its address book under the run dir are
the session's (tests/conftest.py): tests of other stores hold addresses on it at the same time,
which is exactly what the address book is for. User networks made here are removed at teardown.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from minirun.net import ipv4, networks, portmap
from minirun.net.bridge import link_names
from minirun.runtime import cgroups
from tests.helpers import wait_until

SERVE = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def fetch_loop(url: str) -> str:
    """A shell loop for a container: fetch `url` once httpd elsewhere is up (at most ~10 s). No
    `wget -T`: it segfaults in Debian 12's busybox 1.35."""
    return f"for i in $(seq 100); do wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout=10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    return None


class Seen:
    """Network settings of every container a test started, checked at teardown."""

    def __init__(self, root):
        self.root = root
        self.settings: dict[str, dict] = {}

    def __call__(self, container_id: str) -> dict:
        state = json.loads((self.root / "containers" / container_id / "state.json").read_text())
        self.settings[container_id] = state.get("NetworkSettings") or {}
        return self.settings[container_id]


@pytest.fixture
def seen(isolated_store):
    return Seen(isolated_store)


def bookings_of(store_root, others: bool = False) -> list[str]:
    """`bridge/address` of each booking of this store (of every other store: `others`)."""
    found = []
    bridges = os.path.join(networks.HOST_DIR, "bridges")
    for bridge in os.listdir(bridges) if os.path.isdir(bridges) else []:
        for name in os.listdir(os.path.join(bridges, bridge)):
            if name.count(".") == 3:
                try:
                    with open(os.path.join(bridges, bridge, name)) as f:
                        if (json.load(f)["store"] == str(store_root)) != others:
                            found.append(f"{bridge}/{name}")
                except (OSError, ValueError):
                    continue
    return found


@contextlib.contextmanager
def addresses_of_other_stores():
    """The addresses other stores' containers hold now, every address book locked meanwhile: an
    address a test's container freed may be booked at once by another store's container (another
    xdist worker's test, on the session's bridge), which then publishes ports of its own to it.
    Its ports are booked after its address and freed before it, so under the locks a port leading
    to an address nobody else holds is the test's."""
    bridges = os.path.join(networks.HOST_DIR, "bridges")
    with contextlib.ExitStack() as held:
        for bridge in sorted(os.listdir(bridges)) if os.path.isdir(bridges) else []:
            try:  # not AddressBook.locked(): it would make the dir of a bridge being removed again
                fd = os.open(os.path.join(bridges, bridge, "lock"), os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            held.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield {entry.rsplit("/", 1)[1] for entry in bookings_of(os.environ["MINIRUN_ROOT"], others=True)}


def elements_to(addresses: set[str]) -> list[tuple]:
    """The nft elements leading to `addresses`, the test's containers' (see above)."""
    with addresses_of_other_stores() as theirs:
        return [e for e in portmap.list_elements() or [] if e[3] in addresses - theirs]


@pytest.fixture(autouse=True)
def nothing_left(cli, isolated_store, seen):
    yield
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    for cid in ids:
        seen(cid)
    if ids:  # one `rm` for them all: each CLI start costs ~0.3 s of CPU
        assert cli("rm", "-f", *ids).code == 0
    names = [json.loads(line)["Name"] for line in cli("network", "ls", "--format", "json").out.splitlines()]
    made = [name for name in names if name not in ("bridge", "host", "none")]
    if made:
        assert cli("network", "rm", *made).code == 0
    assert bookings_of(isolated_store) == []
    addresses = {s["IPAddress"] for s in seen.settings.values() if s.get("IPAddress")}
    assert elements_to(addresses) == []
    assert [a for a in addresses if publisher_recorded(a)] == []
    veths = {s["Veth"] for s in seen.settings.values() if s.get("Veth")}
    # a veth pair dies with its namespace, which the kernel tears down a moment after PID 1
    assert wait_until(lambda: not veths & set(link_names())), veths & set(link_names())


def start_web(cli, *args: str, name: str = "web") -> str:
    result = cli("run", "-d", "--name", name, *args, "busybox", "sh", "-c", SERVE)
    assert result.code == 0, result.err
    return result.out.strip()


def default_subnet() -> tuple[int, int]:
    info = networks.bridge_info(networks.DEFAULT_BRIDGE)
    return ipv4.parse_subnet(info["subnet"])


def test_default_bridge_gives_eth0_an_address_a_route_and_hosts(cli, busybox, seen):
    result = cli(
        "run",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf; hostname",
    )
    assert result.code == 0, result.err
    addr_line, routes_and_hosts = result.out.split("\n", 1)
    routes, hosts, rest = routes_and_hosts.split("---\n")
    address, prefix = re.search(r"inet (\S+)/(\d+)", addr_line).groups()
    subnet = default_subnet()
    assert ipv4.in_subnet(ipv4.ip_to_int(address), subnet) and int(prefix) == subnet[1]
    gateway = networks.bridge_info(networks.DEFAULT_BRIDGE)["gateway"]
    assert f"default via {gateway} dev eth0" in routes
    *resolv, hostname = rest.splitlines()
    assert hosts.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert hosts.splitlines()[-1] == f"{address}\t{hostname} box"
    with open("/etc/resolv.conf") as f:
        assert "\n".join(resolv) == f.read().rstrip("\n")
    [cid] = cli("ps", "-a", "-q", "--no-trunc").out.split()
    settings = seen(cid)
    assert settings["IPAddress"] == address and settings["Bridge"] == networks.DEFAULT_BRIDGE


def test_network_none_has_only_loopback(cli, busybox):
    assert cli("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").out.split() == ["lo"]
    assert cli("run", "--rm", "busybox", "ls", "/sys/class/net").out.split() == ["eth0", "lo"]


def test_containers_reach_each_other_by_address(cli, busybox, seen):
    web = start_web(cli)
    address = seen(web)["IPAddress"]
    got = cli("run", "--rm", "busybox", "sh", "-c", fetch_loop(f"http://{address}/"))
    assert got.code == 0 and got.out == f"hello from {web[:12]}\n", got.err
    document = json.loads(cli("inspect", "web").out)[0]
    assert document["NetworkSettings"]["IPAddress"] == address
    assert document["NetworkSettings"]["Networks"]["bridge"]["Gateway"] == seen(web)["Gateway"]
    assert document["HostConfig"]["NetworkMode"] == "bridge"


def test_user_network_resolves_names_through_hosts(cli, busybox, seen):
    created = cli("network", "create", "appnet")
    assert created.code == 0 and re.fullmatch(r"[0-9a-f]{64}\n", created.out), created.err
    web = start_web(cli, "--network", "appnet")
    got = cli("run", "--rm", "--network", "appnet", "busybox", "sh", "-c", fetch_loop("http://web/"))
    assert got.out == f"hello from {web[:12]}\n", got.err
    # a container joining later shows up in web's /etc/hosts, and goes when it is removed
    peer = cli("run", "-d", "--name", "peer", "--network", "appnet", "busybox", "sleep", "1000").out.strip()
    peer_address = seen(peer)["IPAddress"]
    assert f"{peer_address}\tpeer" in cli("exec", "web", "cat", "/etc/hosts").out.splitlines()
    assert f"{seen(web)['IPAddress']}\tweb" in cli("exec", "peer", "cat", "/etc/hosts").out.splitlines()
    document = json.loads(cli("network", "inspect", "appnet").out)[0]
    assert document["Name"] == "appnet" and document["Driver"] == "bridge"
    subnet = document["IPAM"]["Config"][0]["Subnet"]
    assert ipv4.in_subnet(ipv4.ip_to_int(peer_address), ipv4.parse_subnet(subnet))
    assert {c["Name"] for c in document["Containers"].values()} == {"web", "peer"}
    assert (
        json.loads(cli("inspect", "peer").out)[0]["NetworkSettings"]["Networks"]["appnet"]["IPAddress"] == peer_address
    )
    busy = cli("network", "rm", "appnet")
    assert busy.code == 125 and "has active endpoints" in busy.err
    assert cli("rm", "-f", "peer").code == 0
    assert f"{peer_address}\tpeer" not in cli("exec", "web", "cat", "/etc/hosts").out
    # a user network's Options are what create was given, as docker shows them; its device is named by its id
    assert document["Options"] == {}
    bridge = f"{networks.BRIDGE_PREFIX}-{document['Id'][:7]}"
    # its MAC its own, set by hand, not the lowest of its ports': one that followed them changed as
    # containers came and went, and theirs sent to a MAC nobody had until they asked again (ARP)
    with open(f"/sys/class/net/{bridge}/address") as f, open(f"/sys/class/net/{bridge}/addr_assign_type") as g:
        assert (f.read().strip(), g.read().strip()) == (ipv4.mac_for(document["IPAM"]["Config"][0]["Gateway"]), "3")
    assert cli("rm", "-f", "web").code == 0
    assert cli("network", "rm", "appnet").out == "appnet\n"
    assert bridge not in link_names()
    assert not os.path.exists(networks.bridge_dir(bridge))


def test_published_port_from_the_host(cli, busybox, seen):
    port = free_port()
    web = start_web(cli, "-p", f"127.0.0.1:{port}:80")
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"
    row = cli("ps").out.splitlines()[1]
    assert f"127.0.0.1:{port}->80/tcp" in row
    assert cli("port", "web").out == f"80/tcp -> 127.0.0.1:{port}\n"
    assert cli("port", "web", "80/tcp").out == f"127.0.0.1:{port}\n"
    missing = cli("port", "web", "81")
    assert missing.code == 125 and "No public port '81/tcp' published for web" in missing.err
    document = json.loads(cli("inspect", "web").out)[0]
    assert document["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert document["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    address = seen(web)["IPAddress"]
    # stopped: the port is free again (docker frees it on stop), the address stays booked until rm
    assert cli("stop", "-t", "1", "web").code == 0
    assert wait_until(lambda: elements_to({address}) == [])
    assert cli("port", "web").out == ""
    assert cli("start", "web").code == 0
    assert seen(web)["IPAddress"] == address
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"
    assert cli("rm", "-f", "web").code == 0
    assert elements_to({address}) == []


def test_a_published_port_on_every_address_and_a_picked_one(cli, busybox, seen):
    web = start_web(cli, "-p", "80")
    [line] = cli("port", "web").out.splitlines()
    port = int(re.fullmatch(r"80/tcp -> 0\.0\.0\.0:(\d+)", line).group(1))
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"


def test_a_taken_host_port_is_refused(cli, busybox, seen):
    port = free_port()
    start_web(cli, "-p", f"127.0.0.1:{port}:80")
    second = cli("run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep", "100")
    assert second.code == 125 and f"Bind for 0.0.0.0:{port} failed: port is already allocated" in second.err
    assert [json.loads(line)["Names"] for line in cli("ps", "--format", "json").out.splitlines()] == ["web"]
    with socket.socket() as listener:  # a host process holds another port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        third = cli("run", "--rm", "-p", f"127.0.0.1:{taken}:80", "busybox", "true")
    assert third.code == 125 and "port is already allocated" in third.err


@pytest.mark.parametrize("round_", range(3))  # a lost race shows in most rounds, not in every one
def test_parallel_starts_on_one_host_port_let_exactly_one_through(cli, busybox, seen, round_):
    """A port is held from the moment it is published, not only once its container runs: of 8
    starts racing for one host port, exactly one gets it and the others fail as docker's do."""
    port = free_port()

    def start(i):
        return cli("run", "-d", "--name", f"r{i}", "-p", f"{port}:80", "busybox", "sleep", "1000")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(start, range(8)))
    winners = [r for r in results if r.code == 0]
    assert len(winners) == 1, [r.err for r in results]
    for loser in (r for r in results if r.code != 0):
        assert loser.code == 125 and loser.out == ""
        assert loser.err == f"minirun: error: Bind for 0.0.0.0:{port} failed: port is already allocated\n"
    winner = winners[0].out.strip()
    address = seen(winner)["IPAddress"]
    assert [e for e in portmap.list_elements() or [] if e[2] == port] == [("tcp", "", port, address, 80)]
    rows = [json.loads(line) for line in cli("ps", "-a", "--format", "json").out.splitlines()]
    assert sorted((r["ID"] == winner[:12], r["Ports"]) for r in rows) == [(False, "")] * 7 + [
        (True, f"0.0.0.0:{port}->80/tcp")
    ]
    # the losers stay as docker leaves them (Created) but hold no port and no cgroup
    losers = [cid for cid in cli("ps", "-a", "-q", "--no-trunc").out.split() if cid != winner]
    assert len(losers) == 7
    for cid in losers:
        settings = seen(cid)
        assert settings["Ports"] == [] and not publisher_recorded(settings["IPAddress"])
        assert [p for p in cgroups.container_paths(cid) if os.path.exists(p)] == []


def test_a_port_is_held_from_its_publish_on_not_from_the_running_state(cli, busybox, seen):
    """The race above without the timing: a container whose ports are published by a live
    process (this one, as a starting container's CLI or monitor would) holds them before its
    state says running; once that process has unpublished, the port is free."""
    port = free_port()
    assert cli("run", "--name", "starting", "busybox", "true").code == 0
    address = seen(json.loads(cli("inspect", "starting").out)[0]["Id"])["IPAddress"]
    portmap.publish([["127.0.0.1", port, 80, "tcp"]], address)
    try:
        taken = cli("run", "-d", "--name", "late", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100")
        assert taken.code == 125 and taken.err == (
            f"minirun: error: Bind for 127.0.0.1:{port} failed: port is already allocated\n"
        )
        assert elements_to({address}) == [("tcp", "127.0.0.1", port, address, 80)] and publisher_recorded(address)
    finally:
        portmap.unpublish(address)
    assert not publisher_recorded(address)
    assert cli("rm", "late").code == 0
    late = cli("run", "-d", "--name", "late", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100")
    assert late.code == 0, late.err
    late_address = seen(late.out.strip())["IPAddress"]
    assert elements_to({late_address}) == [("tcp", "127.0.0.1", port, late_address, 80)]


def publisher_recorded(address: str) -> bool:
    """Whether a record of who published ports to `address`, a test's container's, is there."""
    with addresses_of_other_stores() as theirs:
        return address not in theirs and os.path.exists(os.path.join(networks.HOST_DIR, "publishers", address))


@pytest.mark.parametrize("detach", [False, True])
def test_a_command_that_cannot_start_frees_its_ports(cli, busybox, seen, detach):
    port = free_port()
    result = cli(
        "run",
        *(["-d"] if detach else []),
        "--name",
        "noexec",
        "-p",
        f"127.0.0.1:{port}:80",
        "busybox",
        "/no/such/binary",
    )
    assert result.code == 127 and result.err.count("\n") == 1 and "/no/such/binary" in result.err
    settings = seen(json.loads(cli("inspect", "noexec").out)[0]["Id"])
    assert settings["Ports"] == [["127.0.0.1", port, 80, "tcp"]]
    assert elements_to({settings["IPAddress"]}) == [] and not publisher_recorded(settings["IPAddress"])
    assert cli("port", "noexec").out == ""


def test_a_start_failing_after_the_publish_frees_its_ports(cli, busybox, seen, store):
    """A cgroup write the kernel refuses fails the start after the ports are published, in the
    monitor (start, run -d) and in the foreground (run, build): the ports go, and the cgroups."""
    from minirun.containers.container import Containers
    from minirun.containers.foreground import run_foreground
    from minirun.errors import MinirunError
    from minirun.store.initlayer import init_layer_link

    port = free_port()
    assert cli("run", "--name", "cgfail", "-p", f"127.0.0.1:{port}:80", "busybox", "true").code == 0
    cid = json.loads(cli("inspect", "cgfail").out)[0]["Id"]
    # a limit above the kernel's: `run` refuses it now (resources.PIDS_MAX), a record may still hold it
    config_path = store.root + f"/containers/{cid}/config.json"
    with open(config_path) as f:
        config = json.load(f)
    config["resources"] = {"PidsLimit": 99999999}
    with open(config_path, "w") as f:
        json.dump(config, f)
    started = cli("start", "cgfail")
    assert started.code == 125 and started.err.count("\n") == 1, started.err
    assert "cgroup: write 99999999 to " in started.err and "pids.max: Invalid argument" in started.err
    address = seen(cid)["IPAddress"]
    assert seen(cid)["Ports"] == [["127.0.0.1", port, 80, "tcp"]]  # it got as far as publishing
    assert elements_to({address}) == [] and not publisher_recorded(address)
    assert [p for p in cgroups.container_paths(cid) if os.path.exists(p)] == []
    # the foreground path, in this process (the CLI's `run` cannot make such a record)
    containers = Containers(store)
    container = containers.load(cid)
    with pytest.raises(MinirunError, match="cgroup: write 99999999 to .*pids.max: Invalid argument"):
        run_foreground(store, containers, container, busybox, init_layer_link(store), guard=0)  # no guard here
    assert seen(cid)["Ports"] == [["127.0.0.1", port, 80, "tcp"]]
    assert elements_to({address}) == [] and not publisher_recorded(address)
    assert [p for p in cgroups.container_paths(cid) if os.path.exists(p)] == []


def test_network_container_shares_the_namespace(cli, busybox, seen):
    web = start_web(cli)
    address = seen(web)["IPAddress"]
    got = cli(
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; hostname; " + fetch_loop("http://127.0.0.1/"),
    )
    assert got.code == 0, got.err
    addr_line, hostname, page = got.out.splitlines()
    assert f"inet {address}/" in addr_line and hostname == web[:12] and page == f"hello from {web[:12]}"
    joined = cli("run", "-d", "--network", "container:web", "busybox", "sleep", "100").out.strip()
    assert json.loads(cli("inspect", joined).out)[0]["HostConfig"]["NetworkMode"] == f"container:{web}"
    assert cli("exec", joined, "cat", "/etc/hosts").out == cli("exec", "web", "cat", "/etc/hosts").out


def test_network_container_errors(cli, busybox):
    missing = cli("run", "--rm", "--network", "container:nosuch", "busybox", "true")
    assert missing.code == 125 and "No such container: nosuch" in missing.err
    assert cli("run", "--name", "done", "busybox", "true").code == 0
    stopped = cli("run", "--rm", "--network", "container:done", "busybox", "true")
    assert stopped.code == 125 and "cannot join network of a non running container" in stopped.err
    conflict = cli("run", "--rm", "--network", "container:done", "-p", "80", "busybox", "true")
    assert conflict.code == 125 and "conflicting options: port publishing" in conflict.err


def test_parallel_starts_get_distinct_addresses(cli, busybox, seen):
    def start(i):
        return cli("run", "-d", "--name", f"p{i}", "busybox", "sleep", "1000")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(start, range(8)))
    assert all(r.code == 0 for r in results), [r.err for r in results]
    ids = [r.out.strip() for r in results]
    addresses = [seen(cid)["IPAddress"] for cid in ids]
    assert len(set(addresses)) == 8
    for cid, address in zip(ids, addresses):
        assert f"inet {address}/" in cli("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0").out


def test_nothing_left_after_rm_of_an_rm_d_container(cli, busybox, seen, isolated_store):
    """--rm -d: the monitor removes the container and then its address and ports."""
    port = free_port()
    cid = cli("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "0.5").out.strip()
    settings = seen(cid)
    assert settings["Ports"] == [["127.0.0.1", port, 80, "tcp"]] and elements_to({settings["IPAddress"]})
    assert wait_until(lambda: not (isolated_store / "containers" / cid).exists())
    assert wait_until(lambda: bookings_of(isolated_store) == [] and elements_to({settings["IPAddress"]}) == [])


def test_bad_network_input(cli, busybox, isolated_store):
    nosuch = cli("run", "--rm", "--network", "nosuch", "busybox", "true")
    assert nosuch.code == 125 and "network nosuch not found" in nosuch.err
    assert cli("ps", "-a", "-q").out == ""
    bad_spec = cli("run", "--rm", "-p", "80/sctp", "busybox", "true")
    assert bad_spec.code == 125 and "invalid proto" in bad_spec.err
    with_hostname = cli("run", "--rm", "--network", "container:x", "-h", "h", "busybox", "true")
    assert with_hostname.code == 125 and "conflicting options: hostname" in with_hostname.err
    subnet = networks.bridge_info(networks.DEFAULT_BRIDGE)["subnet"]
    overlapping = cli("network", "create", "--subnet", subnet.replace("/16", "/24"), "clash")
    assert overlapping.code == 125 and "Pool overlaps" in overlapping.err
    for args, needle in (
        (["create", "--subnet", "10.70.0.1/24", "x"], "it should be 10.70.0.0/24"),
        (["create", "bad/name"], "invalid network name"),
        (["create", "bridge"], "already exists"),
        (["rm", "bridge"], "pre-defined network and cannot be removed"),
        (["rm", "nosuch"], "network nosuch not found"),
        (["inspect", "nosuch"], "network nosuch not found"),
    ):
        result = cli("network", *args)
        assert result.code == 125 and needle in result.err, (args, result.err)
    names = [json.loads(line)["Name"] for line in cli("network", "ls", "--format", "json").out.splitlines()]
    assert names == ["bridge", "host", "none"]
    assert len(os.listdir(isolated_store / "networks")) == 3  # no record of a network that failed


@pytest.mark.parametrize(
    "odd",
    [
        "127.0.0.1 x",
        "0x7f.0.0.1",
        "2130706433",
        "127.1",
        "2130706433\n1.2.3",
        "127.0.0.1\nadd rule ip minirun publish accept",
        "010.0.0.1",
    ],
)
def test_odd_addresses_are_refused_before_anything_is_made(cli, busybox, isolated_store, odd):
    """inet_aton would take these (some as another address); they would be pasted into nft's
    script and stored. Each is one line of error, and nothing is made."""
    published = cli("run", "--rm", "-p", f"{odd}:8080:80", "busybox", "true")
    gateway = cli("network", "create", "--subnet", "10.70.0.0/24", "--gateway", odd, "oddgw")
    subnet = cli("network", "create", "--subnet", f"{odd}/24", "oddnet")
    for result in (published, gateway, subnet):
        assert result.code == 125 and result.out == "", result
        assert result.err.startswith("minirun: error: invalid ") and result.err.count("\n") == 1, result.err
    assert "invalid ip address: " in published.err and "invalid IPv4 address: " in gateway.err + subnet.err
    assert cli("ps", "-a", "-q").out == ""
    assert [json.loads(line)["Name"] for line in cli("network", "ls", "--format", "json").out.splitlines()] == [
        "bridge",
        "host",
        "none",
    ]


def test_addresses_are_stored_and_published_as_canonical(cli, busybox, seen):
    # a subnet of this session's (subnets are the host's: another session may hold a fixed one)
    # (the prefix is the session's own, or whatever MINIRUN_BRIDGE_PREFIX the caller set: any text)
    third = zlib.crc32(networks.BRIDGE_PREFIX.encode()) % 250
    made = cli("network", "create", "--subnet", f"10.71.{third}.0/24", "--gateway", f"10.71.{third}.254", "canon")
    assert made.code == 0, made.err
    [net] = json.loads(cli("network", "inspect", "canon").out)
    assert net["IPAM"]["Config"] == [{"Subnet": f"10.71.{third}.0/24", "Gateway": f"10.71.{third}.254"}]
    port = free_port()
    web = start_web(cli, "--network", "canon", "-p", f"127.0.0.1:{port}:80")
    address = seen(web)["IPAddress"]
    assert address.startswith(f"10.71.{third}.") and elements_to({address}) == [("tcp", "127.0.0.1", port, address, 80)]
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {web[:12]}\n"


def test_network_ls_and_inspect_of_the_predefined(cli, busybox):
    table = cli("network", "ls").out.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in table[1:]] == [
        ["bridge", "bridge", "local"],
        ["host", "host", "local"],
        ["none", "null", "local"],
    ]
    assert cli("run", "--rm", "busybox", "true").code == 0  # the default bridge exists from here on
    [bridge] = json.loads(cli("network", "inspect", "bridge").out)
    assert bridge["IPAM"]["Config"] == [
        {
            "Subnet": networks.bridge_info(networks.DEFAULT_BRIDGE)["subnet"],
            "Gateway": networks.bridge_info(networks.DEFAULT_BRIDGE)["gateway"],
        }
    ]
    assert bridge["Options"] == {"com.docker.network.bridge.name": networks.DEFAULT_BRIDGE}


def test_a_deleted_stores_bridge_is_reclaimed(cli, busybox, tmp_path):
    """A store removed without `network rm` (a crashed test's) leaves a bridge and a subnet on
    record; the next bridge made on this host removes them."""
    import shutil

    gone = tmp_path / "gone-store"
    made = cli("network", "create", "orphan", root=str(gone))
    assert made.code == 0, made.err
    bridge = f"{networks.BRIDGE_PREFIX}-{made.out.strip()[:7]}"
    assert bridge in link_names()
    shutil.rmtree(gone)
    assert cli("network", "create", "fresh").code == 0
    assert bridge not in link_names() and not os.path.exists(networks.bridge_dir(bridge))


def test_a_bridge_whose_record_was_lost_is_taken_as_it_is(cli, busybox):
    """A bridge on the host without its net.json (a lost record, or one a concurrent first start
    made meanwhile, as parallel starts and xdist workers do) is taken with its address, and the
    record written again is one the next start reads."""
    made = cli("network", "create", "lost")
    assert made.code == 0, made.err
    bridge = f"{networks.BRIDGE_PREFIX}-{made.out.strip()[:7]}"
    subnet = networks.bridge_info(bridge)["subnet"]
    os.unlink(os.path.join(networks.bridge_dir(bridge), "net.json"))
    for word in ("one", "two"):
        ran = cli("run", "--rm", "--network", "lost", "busybox", "echo", word)
        assert (ran.code, ran.out, ran.err) == (0, word + "\n", "")
    assert networks.bridge_info(bridge)["subnet"] == subnet


def test_a_network_alias_names_a_container_for_its_peers(cli, busybox, seen):
    """--network-alias (compose names a service's containers so): peers reach it by the alias, and
    inspect lists the aliases with the short id, as docker's daemon does."""
    assert cli("network", "create", "aliasnet").code == 0
    web = start_web(cli, "--network", "aliasnet", "--network-alias", "db", "--net-alias", "db.internal")
    got = cli("run", "--rm", "--network", "aliasnet", "busybox", "sh", "-c", fetch_loop("http://db.internal/"))
    assert got.out == f"hello from {web[:12]}\n", got.err
    assert (
        f"{seen(web)['IPAddress']}\tweb db db.internal"
        in cli("run", "--rm", "--network", "aliasnet", "busybox", "cat", "/etc/hosts").out.splitlines()
    )
    endpoint = json.loads(cli("inspect", "web").out)[0]["NetworkSettings"]["Networks"]["aliasnet"]
    assert endpoint["Aliases"] == ["db", "db.internal", web[:12]]
    refused = cli("run", "--rm", "--network-alias", "db", "busybox", "true")
    assert refused.code == 125 and "only for containers in user defined networks" in refused.err
    bad = cli("run", "--rm", "--network", "aliasnet", "--network-alias", "a b", "busybox", "true")
    assert bad.code == 125 and "invalid network alias" in bad.err
    assert cli("rm", "-f", "web").code == 0
    assert cli("network", "rm", "aliasnet").code == 0


def test_network_prune_takes_the_unused_custom_networks(cli, busybox):
    """docker network prune: every custom network no container is on, that its filters let go."""
    for args in (["prunea"], ["--label", "keep=1", "pruneb"], ["prunec"]):
        assert cli("network", "create", *args).code == 0
    assert cli("run", "-d", "--name", "pruner", "--network", "prunec", "busybox", "sleep", "300").code == 0
    try:
        done = cli("network", "prune", "-f", "--filter", "label!=keep=1")
        assert (done.code, done.out) == (0, "Deleted Networks:\nprunea\n\n"), done
        names = cli("network", "ls", "--format", "{{.Name}}").out.split()
        assert "prunea" not in names and {"pruneb", "prunec", "bridge"} <= set(names)
        bad = cli("network", "prune", "-f", "--filter", "bogus=1")
        assert (bad.code, bad.err) == (125, "minirun: error: invalid filter 'bogus'\n")
    finally:
        cli("rm", "-f", "pruner")
        cli("network", "rm", "pruneb", "prunec")
