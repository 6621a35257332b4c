"""Networking's pure parts (subnet arithmetic, -p parsing, what ps/port/inspect show, /etc/hosts)
and the address book, whose locking is exercised by real parallel processes on a scratch dir."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess

import pytest

from minirun.cli.runargs import parse_run_args
from minirun.containers.container import Container, ContainerConfig
from minirun.containers.network import endpoints, hosts_text, wanted_networks, write_in_place
from minirun.errors import Conflict, MinirunError, UsageError
from minirun.frontend.runoptions import given_networks, parse_network_options
from minirun.net import ipv4, networks, portmap

# -- subnets ------------------------------------------------------------------------------------


def test_parse_subnet_and_arithmetic():
    assert ipv4.parse_subnet("10.66.0.0/16") == (ipv4.ip_to_int("10.66.0.0"), 16)
    net = ipv4.parse_subnet("10.70.1.0/24")
    assert ipv4.int_to_ip(ipv4.broadcast(*net)) == "10.70.1.255"
    assert ipv4.in_subnet(ipv4.ip_to_int("10.70.1.9"), net)
    assert not ipv4.in_subnet(ipv4.ip_to_int("10.70.2.9"), net)
    assert ipv4.overlaps(ipv4.parse_subnet("10.66.0.0/16"), ipv4.parse_subnet("10.66.5.0/24"))
    assert ipv4.overlaps(ipv4.parse_subnet("10.66.5.0/24"), ipv4.parse_subnet("10.66.0.0/16"))
    assert not ipv4.overlaps(ipv4.parse_subnet("10.66.0.0/16"), ipv4.parse_subnet("10.67.0.0/24"))


@pytest.mark.parametrize(
    "text,needle",
    [
        ("10.66.0.1/16", "it should be 10.66.0.0/16"),
        ("10.66.0.0", "ADDRESS/PREFIX"),
        ("10.66.0.0/33", "ADDRESS/PREFIX"),
        ("10.66.0.0/31", "at most /30"),
        ("10.66.0/16", "invalid IPv4 address"),
        ("10.66.0.300/24", "invalid IPv4 address"),
        ("ten/8", "invalid IPv4 address"),
    ],
)
def test_bad_subnets(text, needle):
    with pytest.raises(UsageError) as err:
        ipv4.parse_subnet(text)
    assert needle in err.value.message


# inet_aton takes all of these (some as another address); they would reach nft scripts and records
ODD_ADDRESSES = [
    "127.0.0.1 x",
    "0x7f.0.0.1",
    "2130706433",
    "127.1",
    "0177.0.0.1",
    "127.000.0.1",
    "2130706433\n1.2.3",
    "127.0.0.1\n",
    " 127.0.0.1",
    "127.0.0.1\x00",
    "1\u0662.0.0.1",
    "\udcff.0.0.1",
    "127.0.0.1;",
    "256.0.0.1",
    "",
]


@pytest.mark.parametrize("text", ODD_ADDRESSES)
def test_only_canonical_dotted_quads_are_addresses(text):
    with pytest.raises(UsageError) as err:
        ipv4.canonical_ip(text)
    assert err.value.message.count("\n") == 0 and err.value.message.startswith("invalid IPv4 address: ")
    with pytest.raises(UsageError):
        ipv4.ip_to_int(text)
    with pytest.raises(UsageError) as err:
        ipv4.parse_subnet(text + "/24")
    assert "\n" not in err.value.message


def test_canonical_addresses_pass_unchanged():
    for text in ("127.0.0.1", "0.0.0.0", "10.66.0.2", "255.255.255.255"):
        assert ipv4.canonical_ip(text) == text
    assert ipv4.ip_to_int("10.0.0.1") == 0x0A000001


@pytest.mark.parametrize(
    "text", ["10.70.0.0/2\u0664", "10.70.0.0/24\n", "10.70.0.0/ 24", "10.70.0.0/+24", "10.70.0.0/\u00b2"]
)
def test_odd_prefix_lengths(text):
    with pytest.raises(UsageError) as err:
        ipv4.parse_subnet(text)
    assert "ADDRESS/PREFIX" in err.value.message and "\n" not in err.value.message


def test_first_free_address_skips_network_gateway_broadcast_and_taken():
    net = ipv4.parse_subnet("10.70.0.0/30")  # .1 and .2 are its only host addresses
    gateway = ipv4.ip_to_int("10.70.0.1")
    assert ipv4.int_to_ip(ipv4.first_free_address(net, {gateway})) == "10.70.0.2"
    assert ipv4.first_free_address(net, {gateway, gateway + 1}) is None


def test_free_subnet_avoids_used_ones():
    pool = networks.user_pool()
    assert len(pool) == 256 and ipv4.int_to_ip(pool[1][0]) == "10.67.1.0" and pool[1][1] == 24
    used = [ipv4.parse_subnet("10.67.0.0/23")]
    assert ipv4.int_to_ip(ipv4.free_subnet(pool, used)[0]) == "10.67.2.0"
    assert ipv4.free_subnet(pool, [ipv4.parse_subnet("10.0.0.0/8")]) is None


def test_mac_follows_the_address():
    assert ipv4.mac_for("10.66.0.2") == "02:42:0a:42:00:02"


@pytest.mark.parametrize("name", ["", "-x", "a b", "na/me", "é"])
def test_bad_network_names(name):
    with pytest.raises(UsageError):
        networks.validate_network_name(name)


# -- -p ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,bindings",
    [
        ("80", [["", 0, 80, "tcp"]]),
        ("8080:80", [["", 8080, 80, "tcp"]]),
        ("127.0.0.1:8080:80", [["127.0.0.1", 8080, 80, "tcp"]]),
        ("127.0.0.1::80/udp", [["127.0.0.1", 0, 80, "udp"]]),
        ("0.0.0.0:53:53/UDP", [["", 53, 53, "udp"]]),
        ("8000-8001:80-81", [["", 8000, 80, "tcp"], ["", 8001, 81, "tcp"]]),
    ],
)
def test_parse_publish(spec, bindings):
    assert portmap.parse_publish(spec) == bindings


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("80/sctp", "invalid proto"),
        ("x:80", "invalid hostPort"),
        ("8080:http", "invalid containerPort"),
        ("8080:0", "invalid containerPort"),
        ("8080:70000", "invalid containerPort"),
        ("1.2.3:8080:80", "invalid ip address"),
        ("[::1]:8080:80", "IPv6"),
        ("1:2:3:4", "invalid publish spec"),
        ("8080:", "invalid publish spec"),
        ("8000-8002:80-81", "invalid ranges"),
        ("9000:80-81", "invalid ranges"),
        ("9000-9001:80", "invalid ranges"),
    ],
)
def test_bad_publish_specs(spec, needle):
    with pytest.raises(UsageError) as err:
        portmap.parse_publish(spec)
    assert needle in err.value.message


@pytest.mark.parametrize("text", ODD_ADDRESSES[:-1])  # ("" is no host address: "::80" publishes on every one)
def test_odd_host_addresses_are_refused(text):
    with pytest.raises(UsageError) as err:
        portmap.parse_publish(f"{text}:8080:80")
    assert err.value.message.startswith("invalid ip address: ") and "\n" not in err.value.message


@pytest.mark.parametrize("port", [" 80", "80 ", "8_0", "+80", "\u0668\u0660", "80\n", "8080-8081 "])
def test_odd_port_numbers_are_refused(port):
    for spec in (f"{port}:80", f"8080:{port}"):
        with pytest.raises(UsageError) as err:
            portmap.parse_publish(spec)
        assert "invalid" in err.value.message and "\n" not in err.value.message


def test_how_ports_are_shown():
    bindings = [["127.0.0.1", 8080, 80, "tcp"], ["", 5353, 53, "udp"]]
    assert portmap.ps_text(bindings) == "127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp"
    assert portmap.port_lines(bindings) == ["53/udp -> 0.0.0.0:5353", "80/tcp -> 127.0.0.1:8080"]
    assert portmap.port_lines(bindings, "80") == ["127.0.0.1:8080"]
    assert portmap.port_lines(bindings, "53/udp") == ["0.0.0.0:5353"]
    assert portmap.port_lines(bindings, "53") == []
    assert portmap.inspect_ports(bindings) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
    }
    assert portmap.port_bindings([["", 0, 80, "tcp"]]) == {"80/tcp": [{"HostIp": "", "HostPort": ""}]}


# -- run's network options ----------------------------------------------------------------------


def test_bridge_is_the_default_network():
    opts = parse_run_args(["img"])
    assert opts.network == "bridge" and opts.publish == []
    opts = parse_run_args(["--net", "mynet", "-p", "127.0.0.1:8080:80", "-p", "53/udp", "img"])
    assert opts.network == "mynet" and opts.publish == [["127.0.0.1", 8080, 80, "tcp"], ["", 0, 53, "udp"]]


@pytest.mark.parametrize(
    "network,hostname,publish,needle",
    [
        ("container:", "", [], "container name"),
        ("container:web", "h", [], "conflicting options: hostname"),
        ("container:web", "", ["80"], "conflicting options: port publishing"),
        ("", "", [], "empty"),
        ("bridge", "", ["80/bogus"], "invalid proto"),
    ],
)
def test_network_option_conflicts(network, hostname, publish, needle):
    with pytest.raises(UsageError) as err:
        parse_network_options(network, hostname, publish)
    assert needle in err.value.message


def test_ports_are_discarded_with_host_network(capsys):
    assert parse_network_options("host", "", ["8080:80"]) == []
    assert "discarded" in capsys.readouterr().err


# -- /etc/hosts ---------------------------------------------------------------------------------


def test_hosts_text_has_own_line_then_peers():
    own = {"ip": "10.67.0.3", "hostname": "abc123", "name": "client"}
    peers = [{"ip": "10.67.0.4", "name": "zeta"}, {"ip": "10.67.0.2", "name": "web"}]
    lines = hosts_text(own, peers).splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-3:] == ["10.67.0.3\tabc123 client", "10.67.0.2\tweb", "10.67.0.4\tzeta"]
    same = hosts_text({"ip": "10.66.0.2", "hostname": "box", "name": "box"}, [])
    assert same.splitlines()[-1] == "10.66.0.2\tbox"


# -- the address book ---------------------------------------------------------------------------


@pytest.fixture
def host_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(networks, "HOST_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def fake_container(store_root, container_id: str) -> None:
    path = os.path.join(store_root, "containers", container_id)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{}")


def _allocate(args):
    host_dir, store_root, container_id = args
    networks.HOST_DIR = host_dir
    fake_container(store_root, container_id)
    book = networks.AddressBook("mrtest0")
    with book.locked():
        return book.allocate("10.70.0.0/24", "10.70.0.1", store_root, container_id, container_id[:6], "h")


def test_parallel_allocations_from_two_stores_never_share_an_address(host_dir, tmp_path):
    """16 processes, two stores, one bridge: the flock and O_EXCL bookings keep them apart."""
    jobs = [(str(host_dir), str(tmp_path / f"store{i % 2}"), f"{i:064x}") for i in range(16)]
    with multiprocessing.get_context("fork").Pool(8) as pool:
        addresses = pool.map(_allocate, jobs)
    assert len(set(addresses)) == 16
    assert "10.70.0.1" not in addresses and "10.70.0.0" not in addresses
    assert sorted(addresses, key=ipv4.ip_to_int)[0] == "10.70.0.2"


def test_allocation_is_stable_released_and_stale_bookings_reclaimed(host_dir, tmp_path):
    store = str(tmp_path / "store")
    book = networks.AddressBook("mrtest0")
    fake_container(store, "a" * 64)
    fake_container(store, "b" * 64)
    with book.locked():
        first = book.allocate("10.70.0.0/24", "10.70.0.1", store, "a" * 64, "a", "a")
        assert book.allocate("10.70.0.0/24", "10.70.0.1", store, "a" * 64, "a", "a") == first  # a restart
        second = book.allocate("10.70.0.0/24", "10.70.0.1", store, "b" * 64, "b", "b")
        assert (first, second) == ("10.70.0.2", "10.70.0.3")
        record = json.loads((host_dir / "bridges" / "mrtest0" / first).read_text())
        assert record == {"store": store, "container": "a" * 64, "name": "a", "hostname": "a"}
        assert book.release(store, "a" * 64) and not book.release(store, "a" * 64)
        # b's record vanishes (its store deleted): its booking is stale and goes on the next look
        os.unlink(os.path.join(store, "containers", "b" * 64, "config.json"))
        assert book.members() == []
        assert sorted(os.listdir(book.dir)) == ["lock"]


def test_a_full_subnet_is_an_error(host_dir, tmp_path):
    store = str(tmp_path / "store")
    book = networks.AddressBook("mrtest0")
    with book.locked():
        for name in "ab":
            fake_container(store, name * 64)
        book.allocate("10.70.0.0/30", "10.70.0.1", store, "a" * 64, "a", "a")
        with pytest.raises(Exception) as err:
            book.allocate("10.70.0.0/30", "10.70.0.1", store, "b" * 64, "b", "b")
    assert "no available IPv4 addresses" in str(err.value)


def test_network_definitions(tmp_path, monkeypatch, host_dir):
    """Predefined networks appear on first use; names are unique; predefined ones stay."""
    from minirun.store import Store

    store = Store(str(tmp_path / "store"))
    nets = networks.Networks(store)
    assert [(n.name, n.driver) for n in nets.all()] == [("bridge", "bridge"), ("host", "host"), ("none", "null")]
    bridge = nets.find("bridge")
    assert bridge.bridge == networks.DEFAULT_BRIDGE and nets.find(bridge.id[:10]).name == "bridge"
    with pytest.raises(Conflict):
        nets.remove(bridge)
    with pytest.raises(Exception) as err:
        nets.find("nosuch")
    assert "network nosuch not found" in str(err.value)
    with pytest.raises(UsageError):
        nets.create("x", subnet="10.70.0.0/24", gateway="10.71.0.1")
    with pytest.raises(UsageError):
        nets.create("x", gateway="10.71.0.1")
    with pytest.raises(UsageError):
        nets.create("x", driver="overlay")
    for odd in ODD_ADDRESSES:
        with pytest.raises(UsageError):
            nets.create("x", subnet="10.70.0.0/24", gateway=odd)
        with pytest.raises(UsageError):
            nets.create("x", subnet=odd + "/24")
    assert len(os.listdir(nets.dir)) == 3  # nothing half-made


def test_default_bridges_fall_back_to_slash_20s_when_the_three_defaults_are_taken():
    pool = networks.default_pool()
    assert [ipv4.int_to_ip(n) + f"/{p}" for n, p in pool[:5]] == [
        "10.66.0.0/16",
        "10.65.0.0/16",
        "10.64.0.0/16",
        "10.80.0.0/20",
        "10.80.16.0/20",
    ]
    used = [ipv4.parse_subnet(s) for s in networks.DEFAULT_SUBNETS]
    assert ipv4.free_subnet(pool, used) == ipv4.parse_subnet("10.80.0.0/20")


@pytest.mark.parametrize(
    "failure, falls_back",
    [
        ("nft list table ip t: Error: Could not process rule: Protocol not supported", True),
        ("nft list table ip t: Error: Could not process rule: Device or resource busy", False),
    ],
)
def test_only_a_kernel_without_nftables_hands_ports_to_the_proxy(monkeypatch, tmp_path, failure, falls_back):
    """After any other nft failure a DNAT element may exist that the proxy would not see: the
    start fails instead, so two containers never get one host port."""
    from minirun.errors import MinirunError

    monkeypatch.setattr(portmap, "nft_binary", lambda: "/usr/sbin/nft")
    monkeypatch.setattr(networks, "HOST_DIR", str(tmp_path))
    monkeypatch.setattr(portmap, "_claim_host_port", lambda binding: binding)

    def fail() -> None:
        raise MinirunError(failure)

    monkeypatch.setattr(portmap, "list_elements", fail)
    monkeypatch.setattr(
        portmap, "_publish_by_proxy", lambda bindings, address, pid1, cgroup: (bindings, {"PortBackend": "proxy"})
    )
    binding = ["", 8080, 80, "tcp"]
    if falls_back:
        assert portmap.publish_ports([binding], "10.66.0.2")[1] == {"PortBackend": "proxy"}
    else:
        with pytest.raises(MinirunError) as err:
            portmap.publish_ports([binding], "10.66.0.2")
        assert "busy" in err.value.message


def _publish_with_picks(monkeypatch, tmp_path, picks: list[int], bindings: list[list]) -> tuple[list, str]:
    """portmap.publish as the kernel picks `picks` for host port 0 in turn, with a running
    container holding tcp port 40000 by DNAT and a gone one's element left on 40001: (the
    bindings published, the nft script)."""
    monkeypatch.setattr(networks, "HOST_DIR", str(tmp_path))
    picked = iter(picks)
    monkeypatch.setattr(portmap, "_claim_host_port", lambda b: [b[0], b[1] or next(picked), b[2], b[3]])
    elements = [("tcp", "", 40000, "10.66.0.9", 80), ("tcp", "", 40001, "10.66.0.8", 80)]
    monkeypatch.setattr(portmap, "list_elements", lambda: elements)
    monkeypatch.setattr(portmap, "publisher_alive", lambda target: target == "10.66.0.9")
    monkeypatch.setattr(portmap, "_held_by_running_container", lambda target: False)
    monkeypatch.setattr(portmap, "_record_publisher", lambda address: None)
    scripts = []
    monkeypatch.setattr(portmap.nftables, "nft", lambda args, script: scripts.append(script))
    return portmap.publish(bindings, "10.66.0.2"), scripts[0]


def test_host_port_0_is_never_a_port_a_running_container_holds(monkeypatch, tmp_path):
    """A DNATed port has no socket bound, so the kernel's pick for `-p 80` could be one: the start
    failed with "port is already allocated" (a flaky test showed it). It is picked again, as
    docker's allocator never hands out an allocated port; a port asked for by number is refused
    as before. The picks collide with each other too (-p 80 -p 81): picked again as well."""
    published, script = _publish_with_picks(monkeypatch, tmp_path, [40000, 40002], [["", 0, 80, "tcp"]])
    assert published == [["", 40002, 80, "tcp"]]
    assert "{ 40002 : 10.66.0.2 . 80 }" in script and "40000" not in script
    published, _ = _publish_with_picks(
        monkeypatch, tmp_path, [40003, 40003, 40004], [["", 0, 80, "tcp"], ["", 0, 81, "tcp"]]
    )
    assert [b[1] for b in published] == [40003, 40004]
    # a gone container's element is no hold: deleted, the port taken
    published, script = _publish_with_picks(monkeypatch, tmp_path, [40001], [["", 0, 80, "tcp"]])
    assert published == [["", 40001, 80, "tcp"]] and "delete element" in script
    with pytest.raises(Conflict, match="Bind for 0.0.0.0:40000 failed: port is already allocated"):
        _publish_with_picks(monkeypatch, tmp_path, [], [["", 40000, 80, "tcp"]])


# -- more than one network ----------------------------------------------------------------------


def test_network_given_twice():
    opts = parse_run_args(["--network", "a", "--net", "b", "img"])
    assert (opts.network, opts.more_networks) == ("a", ["b"])
    assert parse_run_args(["img"]).more_networks == []
    assert given_networks("x") == ["x"] and given_networks([]) == ["bridge"]
    for networks_, needle in [
        (["a", "host"], "cannot attach both user-defined and non-user-defined"),
        (["none", "a"], "cannot attach both"),
        (["a", "container:web"], "cannot attach both"),
        (["a", "b", "a"], 'network "a" is specified multiple times'),
    ]:
        with pytest.raises(UsageError) as err:
            given_networks(networks_)
        assert needle in err.value.message


def _config(**values) -> ContainerConfig:
    return ContainerConfig(id="c" * 64, name="c", image="i", image_ref="i", created="t", argv=[], env=[], **values)


def test_a_record_from_before_connect_is_on_its_one_network():
    """config.json without `networks` (every record before connect): its --network, with its aliases."""
    assert wanted_networks(_config(network="appnet", network_aliases=["db"])) == [
        {"name": "appnet", "aliases": ["db"], "ip": ""}
    ]
    assert wanted_networks(_config(network="bridge")) == [{"name": "bridge", "aliases": [], "ip": ""}]
    for mode in ("none", "host", "container:" + "d" * 64):
        assert wanted_networks(_config(network=mode)) == []
    old = _config(network="appnet").to_json()
    del old["networks"]
    assert ContainerConfig.from_json(old).networks is None
    connected = _config(
        network="a", networks=[{"name": "a", "aliases": [], "ip": ""}, {"name": "b", "aliases": ["x"], "ip": ""}]
    )
    assert [w["name"] for w in wanted_networks(ContainerConfig.from_json(connected.to_json()))] == ["a", "b"]
    assert wanted_networks(_config(network="a", networks=[])) == []  # disconnected from all


def test_inspect_shows_every_network_with_its_own_address():
    config = _config(
        network="a",
        networks=[{"name": "a", "aliases": [], "ip": ""}, {"name": "b", "aliases": ["x"], "ip": "10.9.0.9"}],
    )
    settings = {
        "Network": "a", "NetworkID": "ida", "Bridge": "br-a", "IPAddress": "10.8.0.2", "IPPrefixLen": 24,
        "Gateway": "10.8.0.1", "MacAddress": "m1", "Token": "t1",
        "Attachments": [{"Network": "b", "NetworkID": "idb", "Bridge": "br-b", "Interface": "eth1",
                         "IPAddress": "10.9.0.9", "IPPrefixLen": 24, "Gateway": "10.9.0.1", "MacAddress": "m2",
                         "EndpointID": "e2"}],
    }  # fmt: skip
    running = Container(config, "/nonexistent", {"Status": "running", "NetworkSettings": settings})
    shown = endpoints(running)
    assert list(shown) == ["a", "b"]
    assert (shown["a"]["IPAddress"], shown["a"]["EndpointID"], shown["a"]["Aliases"]) == ("10.8.0.2", "t1", ["c" * 12])
    assert (shown["b"]["IPAddress"], shown["b"]["Gateway"], shown["b"]["MacAddress"]) == ("10.9.0.9", "10.9.0.1", "m2")
    assert shown["b"]["Aliases"] == ["x", "c" * 12] and shown["b"]["IPAMConfig"] == {"IPv4Address": "10.9.0.9"}
    stopped = Container(config, "/nonexistent", {"Status": "exited", "NetworkSettings": settings})
    assert [e["IPAddress"] for e in endpoints(stopped).values()] == ["", ""]


def test_bookings_name_their_interface_and_may_ask_for_an_address(host_dir, tmp_path):
    store = str(tmp_path / "store")
    fake_container(store, "a" * 64)
    fake_container(store, "b" * 64)
    book = networks.AddressBook("mrtest1")
    with book.locked():
        assert (
            book.allocate("10.70.1.0/24", "10.70.1.1", store, "a" * 64, "a", "a", [], "eth1", "10.70.1.50")
            == "10.70.1.50"
        )
        record = json.loads((host_dir / "bridges" / "mrtest1" / "10.70.1.50").read_text())
        assert record["interface"] == "eth1"
        with pytest.raises(Conflict):
            book.allocate("10.70.1.0/24", "10.70.1.1", store, "b" * 64, "b", "b", [], "eth0", "10.70.1.50")
        for outside in ("10.70.2.5", "10.70.1.255", "10.70.1.0"):
            with pytest.raises(UsageError):
                book.allocate("10.70.1.0/24", "10.70.1.1", store, "b" * 64, "b", "b", [], "eth0", outside)
    assert networks.bridges_of(store, "a" * 64) == ["mrtest1"]
    assert networks.bridges_of(store, "b" * 64) == []


def test_a_provided_file_is_left_alone_unchanged_and_cut_only_after_a_rewrite(tmp_path):
    """A container reads its /etc/hosts while peers' starts rewrite it: the same text is not
    written at all, and a new one goes over the old before the cut (no empty file between)."""
    path = tmp_path / "hosts"
    path.write_bytes(b"127.0.0.1\tlocalhost\n10.0.0.2\tdb\n")
    os.utime(path, ns=(1, 1))
    assert write_in_place(str(path), b"127.0.0.1\tlocalhost\n10.0.0.2\tdb\n")
    assert os.stat(path).st_mtime_ns == 1  # untouched
    assert write_in_place(str(path), b"127.0.0.1\tlocalhost\n")
    assert path.read_bytes() == b"127.0.0.1\tlocalhost\n"
    assert write_in_place(str(path), b"127.0.0.1\tlocalhost\n10.0.0.3\tdb database\n")
    assert path.read_bytes() == b"127.0.0.1\tlocalhost\n10.0.0.3\tdb database\n"


def test_no_bridge_is_made_without_the_nftables_walls(tmp_path, monkeypatch):
    """docker's daemon does not start without iptables: a bridge of ours without nftables.py's
    walls would forward between networks, and from other hosts, into its containers."""
    from minirun.net import nftables

    monkeypatch.setattr(networks, "HOST_DIR", str(tmp_path))
    monkeypatch.setattr(nftables, "ensure_table", lambda: False)
    name = f"mrnone{os.getpid() % 100000}"  # (two suites on one host: each its own)
    network = networks.Network("0" * 64, "walled", "bridge", "", bridge=name)
    try:
        with pytest.raises(MinirunError, match="bridge networks need nftables"):
            networks.ensure_bridge(network, str(tmp_path / "store"))
    finally:
        made = os.path.exists(f"/sys/class/net/{name}")
        if made:  # (only where the wall is missing)
            subprocess.run(["ip", "link", "del", name], check=True)
    assert not made
