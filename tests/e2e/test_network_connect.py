"""A container on more than one network: `network connect`/`disconnect` on running, created and
stopped containers, `run --network A --network B`, docker's errors, the docker CLI and
docker-compose through the Engine API, and nothing left behind (veths, bookings) after rm.

Containers talk to each other only (busybox httpd serves, wget and ping reach it; busybox's ping
needs a raw socket, so its containers get back docker's CAP_NET_RAW, which podman's default drops)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from minirun.net import ipv4
from minirun.net.bridge import link_names
from minirun.procs import is_alive
from tests.e2e.engineapi import service  # noqa: F401  (a fixture)
from tests.e2e.test_network import SERVE, bookings_of, elements_to, fetch_loop, free_port, http_get
from tests.e2e.test_port_proxy import port_free, start_foreground
from tests.helpers import PING, wait_until


def veths_of(root, container_id: str) -> set[str]:
    """The host ends of a container's veth pairs, as its state records them."""
    try:
        with open(os.path.join(root, "containers", container_id, "state.json")) as f:
            settings = json.load(f).get("NetworkSettings") or {}
    except FileNotFoundError:
        return set()
    return {s["Veth"] for s in [settings, *settings.get("Attachments", ())] if s.get("Veth")}


class Veths:
    """Every veth a test's containers had: none may outlive the test."""

    def __init__(self, root):
        self.root, self.seen = root, set()

    def __call__(self, container_id: str) -> set[str]:
        found = veths_of(self.root, container_id)
        self.seen |= found
        return found


@pytest.fixture
def veths(cli, isolated_store):
    found = Veths(isolated_store)
    yield found
    ids = cli("ps", "-a", "-q", "--no-trunc").out.split()
    for cid in ids:
        found(cid)
    if ids:
        assert cli("rm", "-f", *ids).code == 0
    made = [json.loads(line)["Name"] for line in cli("network", "ls", "--format", "json").out.splitlines()]
    made = [name for name in made if name not in ("bridge", "host", "none")]
    if made:
        assert cli("network", "rm", *made).code == 0
    assert bookings_of(isolated_store) == []
    # a veth pair dies with its namespace, which the kernel tears down a moment after PID 1
    assert wait_until(lambda: not found.seen & set(link_names())), found.seen & set(link_names())


def networks_of(cli, name: str) -> dict:
    return json.loads(cli("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).out)


def ipv4_lines(cli, name: str) -> dict[str, str]:
    """interface -> ADDRESS/PREFIX inside the container."""
    out = cli("exec", name, "ip", "-o", "-4", "addr").out
    return {m.group(1): m.group(2) for m in re.finditer(r"^\d+: (\S+)\s+inet (\S+)", out, re.M)}


def subnet_of(cli, network: str) -> tuple[int, int]:
    document = json.loads(cli("network", "inspect", network).out)[0]
    return ipv4.parse_subnet(document["IPAM"]["Config"][0]["Subnet"])


def test_connect_and_disconnect_a_running_container(cli, busybox, veths):
    assert cli("network", "create", "front").code == 0
    assert cli("network", "create", "back").code == 0
    web = cli("run", "-d", "--name", "web", "--network", "back", *PING, "busybox", "sh", "-c", SERVE).out.strip()
    box = cli("run", "-d", "--name", "box", "--network", "front", "busybox", "sleep", "1000").out.strip()
    veths(box)
    assert cli("exec", "box", "grep", "-w", "web", "/etc/hosts").code == 1  # not a peer on front

    done = cli("network", "connect", "--alias", "boxy", "back", "box")
    assert (done.code, done.out, done.err) == (0, "", "")
    veths(box)
    inside = ipv4_lines(cli, "box")
    assert set(inside) == {"lo", "eth0", "eth1"}
    address, prefix = inside["eth1"].split("/")
    back = subnet_of(cli, "back")
    assert ipv4.in_subnet(ipv4.ip_to_int(address), back) and int(prefix) == back[1]
    routes = cli("exec", "box", "ip", "route").out
    assert [line for line in routes.splitlines() if line.startswith("default")] == [
        line for line in routes.splitlines() if line.startswith("default") and "dev eth0" in line
    ]
    assert re.search(rf"^{ipv4.int_to_ip(back[0])}/{back[1]} dev eth1", routes, re.M), routes
    got = cli("exec", "box", "sh", "-c", fetch_loop("http://web/"))
    assert got.code == 0 and got.out == f"hello from {web[:12]}\n", got.err
    assert f"{address}\tbox boxy" in cli("exec", "web", "cat", "/etc/hosts").out.splitlines()
    assert cli("exec", "web", "ping", "-c", "1", "-W", "2", "boxy").code == 0

    shown = networks_of(cli, "box")
    assert set(shown) == {"front", "back"}
    assert shown["back"]["IPAddress"] == address and shown["back"]["Aliases"] == ["boxy", box[:12]]
    assert shown["front"]["IPAddress"] == inside["eth0"].split("/")[0]
    members = json.loads(cli("network", "inspect", "back").out)[0]["Containers"]
    assert members[box]["IPv4Address"] == inside["eth1"] and members[box]["Name"] == "box"
    assert {m["Name"] for m in members.values()} == {"web", "box"}
    assert cli("ps", "--filter", "network=back", "--format", "{{.Names}}").out.split() == ["box", "web"]

    again = cli("network", "connect", "back", "box")
    assert (again.code, again.err) == (125, "minirun: error: endpoint with name box already exists in network back\n")
    busy = cli("network", "rm", "back")
    assert busy.code == 125 and "has active endpoints" in busy.err

    done = cli("network", "disconnect", "back", "box")
    assert (done.code, done.out, done.err) == (0, "", "")
    assert set(ipv4_lines(cli, "box")) == {"lo", "eth0"}
    assert "box" not in cli("exec", "web", "cat", "/etc/hosts").out
    assert cli("exec", "web", "ping", "-c", "1", "-W", "1", address).code != 0
    assert cli("exec", "box", "grep", "-w", "web", "/etc/hosts").code == 1
    assert set(networks_of(cli, "box")) == {"front"}
    gone = cli("network", "disconnect", "back", "box")
    assert gone.code == 125 and f"container {box} is not connected to the network back" in gone.err


def test_a_running_container_leaves_its_first_network(cli, busybox, veths):
    """docker lets a running container leave the network of its default route and published
    ports: they go, and the next network's gateway takes the default route; with no network
    left it has loopback only, and a connect gives it a first network again."""
    assert cli("network", "create", "front").code == 0
    assert cli("network", "create", "back").code == 0
    web = cli("run", "-d", "--name", "web", "--network", "back", "busybox", "sh", "-c", SERVE).out.strip()
    box = cli("run", "-d", "--name", "box", "--network", "front", "-p", "127.0.0.1::80", "busybox", "sleep", "1000")
    assert box.code == 0, box.err
    assert cli("network", "connect", "back", "box").code == 0
    veths(box.out.strip())
    assert cli("port", "box").out.startswith("80/tcp -> 127.0.0.1:")
    front = subnet_of(cli, "front")

    done = cli("network", "disconnect", "front", "box")
    assert (done.code, done.out, done.err) == (0, "", "")
    assert set(ipv4_lines(cli, "box")) == {"lo", "eth1"}
    back_gateway = json.loads(cli("network", "inspect", "back").out)[0]["IPAM"]["Config"][0]["Gateway"]
    routes = [line.strip() for line in cli("exec", "box", "ip", "route").out.splitlines() if line.startswith("default")]
    assert routes == [f"default via {back_gateway} dev eth1"], routes
    assert set(networks_of(cli, "box")) == {"back"}
    assert cli("port", "box").out.startswith("80/tcp -> 127.0.0.1:")  # they follow the default route
    got = cli("exec", "box", "sh", "-c", fetch_loop("http://web/"))
    assert got.out == f"hello from {web[:12]}\n", got.err
    front_peers = json.loads(cli("network", "inspect", "front").out)[0]["Containers"]
    assert front_peers in ({}, None)
    assert not any(ipv4.in_subnet(ipv4.ip_to_int(a.split("/")[0]), front) for a in ipv4_lines(cli, "box").values())

    assert cli("network", "disconnect", "back", "box").code == 0
    assert set(ipv4_lines(cli, "box")) == {"lo"} and networks_of(cli, "box") == {}
    assert cli("exec", "web", "grep", "-w", "box", "/etc/hosts").code == 1
    assert cli("network", "connect", "front", "box").code == 0  # its first network again: eth0, the default route
    veths(box.out.strip())
    assert set(ipv4_lines(cli, "box")) == {"lo", "eth0"}
    front_gateway = json.loads(cli("network", "inspect", "front").out)[0]["IPAM"]["Config"][0]["Gateway"]
    routes = [line.strip() for line in cli("exec", "box", "ip", "route").out.splitlines() if line.startswith("default")]
    assert routes == [f"default via {front_gateway} dev eth0"], routes
    assert set(networks_of(cli, "box")) == {"front"}


def default_routes(cli, name: str) -> list[str]:
    return [line.strip() for line in cli("exec", name, "ip", "route").out.splitlines() if line.startswith("default")]


def test_an_internal_first_network_leaves_routing_and_ports_to_the_next(cli, busybox, veths):
    """docker routes and publishes through the first network with a gateway, which an --internal
    one is not (compose's `internal: true` backend beside a frontend): an internal first network
    left such a container with neither. A connect of one gives it the default route; at its
    start it is eth0, with the published ports; a container on internal networks alone has none."""
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "front").code == 0
    front_gateway = json.loads(cli("network", "inspect", "front").out)[0]["IPAM"]["Config"][0]["Gateway"]
    box = cli("run", "-d", "--name", "box", "--network", "back", "-p", "80", "busybox", "sh", "-c", SERVE)
    assert box.code == 0, box.err
    veths(box.out.strip())
    assert default_routes(cli, "box") == [] and cli("port", "box").out == ""

    assert cli("network", "connect", "front", "box").code == 0
    veths(box.out.strip())
    assert default_routes(cli, "box") == [f"default via {front_gateway} dev eth1"]
    assert cli("restart", "box").code == 0
    veths(box.out.strip())
    assert default_routes(cli, "box") == [f"default via {front_gateway} dev eth0"]
    assert set(networks_of(cli, "box")) == {"back", "front"} and networks_of(cli, "box")["back"]["Gateway"] == ""
    port = cli("port", "box", "80").out.strip().rsplit(":", 1)[1]
    got = cli("run", "--rm", "--network", "front", "busybox", "sh", "-c", fetch_loop(f"http://{front_gateway}:{port}/"))
    assert got.out.startswith("hello from"), got

    assert cli("network", "disconnect", "front", "box").code == 0  # back alone: no way out again
    assert default_routes(cli, "box") == [] and cli("port", "box").out == ""
    assert cli("network", "connect", "front", "box").code == 0
    veths(box.out.strip())
    assert default_routes(cli, "box") == [f"default via {front_gateway} dev eth0"]
    assert cli("network", "disconnect", "back", "box").code == 0  # the route is front's: it stays
    assert default_routes(cli, "box") == [f"default via {front_gateway} dev eth0"]


def settings_of(root, container_id: str) -> dict:
    with open(os.path.join(root, "containers", container_id, "state.json")) as f:
        return json.load(f).get("NetworkSettings") or {}


def addresses_of(settings: dict) -> set[str]:
    return {r["IPAddress"] for r in [settings, *settings.get("Attachments", ())] if r.get("IPAddress")}


def host_port(cli, name: str) -> int:
    return int(cli("port", name, "80").out.strip().rsplit(":", 1)[1])


def test_published_ports_follow_the_default_route_of_a_running_container(cli, busybox, veths, isolated_store):
    """docker publishes on the network of the default route (its gateway endpoint), and moves the
    ports when a connect or disconnect moves the route: an internal network never has them."""
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "front").code == 0
    box = cli("run", "-d", "--name", "box", "--network", "back", "-p", "80", "busybox", "sh", "-c", SERVE)
    assert box.code == 0, box.err
    cid = box.out.strip()
    assert cli("port", "box").out == ""

    assert cli("network", "connect", "front", "box").code == 0
    veths(cid)
    settings = settings_of(isolated_store, cid)
    front_address = settings["Attachments"][0]["IPAddress"]
    port = host_port(cli, "box")
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"
    assert f"0.0.0.0:{port}->80/tcp" in cli("ps", "--format", "{{.Ports}}").out
    shown = json.loads(cli("inspect", "-f", "{{json .NetworkSettings.Ports}}", "box").out)
    assert shown == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert [e[3] for e in elements_to(addresses_of(settings))] == [front_address]

    assert cli("network", "disconnect", "front", "box").code == 0  # back alone: no ports again
    assert cli("port", "box").out == "" and elements_to({front_address}) == []
    assert http_get(f"http://127.0.0.1:{port}/", timeout=1) is None

    assert cli("network", "connect", "front", "box").code == 0
    veths(cid)
    settings = settings_of(isolated_store, cid)
    assert http_get(f"http://127.0.0.1:{host_port(cli, 'box')}/") == f"hello from {cid[:12]}\n"
    assert cli("stop", "-t", "1", "box").code == 0  # the exit takes the ports it has now
    assert wait_until(lambda: elements_to(addresses_of(settings)) == []), elements_to(addresses_of(settings))


def test_a_container_on_two_networks_keeps_serving_when_its_first_goes(cli, busybox, veths, isolated_store):
    assert cli("network", "create", "one").code == 0
    assert cli("network", "create", "two").code == 0
    port = free_port()
    on_both = ("--network", "one", "--network", "two", "-p", f"127.0.0.1:{port}:80")
    box = cli("run", "-d", "--name", "web", *on_both, "busybox", "sh", "-c", SERVE)
    assert box.code == 0, box.err
    cid = box.out.strip()
    veths(cid)
    before = settings_of(isolated_store, cid)
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"

    assert cli("network", "disconnect", "one", "web").code == 0
    assert cli("port", "web").out == f"80/tcp -> 127.0.0.1:{port}\n"  # the host port it named
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"
    after = settings_of(isolated_store, cid)
    assert [e[3] for e in elements_to(addresses_of(before))] == [after["IPAddress"]] != [before["IPAddress"]]

    assert cli("rm", "-f", "web").code == 0
    assert elements_to(addresses_of(before)) == []


def test_ports_that_follow_the_route_go_at_the_exit_of_an_rm_container(cli, busybox, veths, isolated_store):
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "front").code == 0
    run = cli("run", "-d", "--rm", "--name", "brief", "--network", "back", "-p", "80", "busybox", "sh", "-c", SERVE)
    assert run.code == 0, run.err
    cid = run.out.strip()
    assert cli("network", "connect", "front", "brief").code == 0
    veths(cid)
    addresses = addresses_of(settings_of(isolated_store, cid))
    assert elements_to(addresses) != []
    assert cli("kill", "brief").code == 0
    assert wait_until(lambda: not os.path.exists(isolated_store / "containers" / cid))
    assert wait_until(lambda: elements_to(addresses) == []), elements_to(addresses)


def test_ports_that_follow_the_route_go_at_the_exit_of_a_foreground_run(cli, busybox, veths, isolated_store):
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "front").code == 0
    run = start_foreground(
        isolated_store, "--name", "fg", "--network", "back", "-p", "80", "busybox", "sh", "-c", SERVE
    )
    try:
        assert wait_until(lambda: cli("inspect", "-f", "{{.State.Status}}", "fg").out.strip() == "running")
        cid = cli("inspect", "-f", "{{.Id}}", "fg").out.strip()
        assert cli("network", "connect", "front", "fg").code == 0
        veths(cid)
        addresses = addresses_of(settings_of(isolated_store, cid))
        assert http_get(f"http://127.0.0.1:{host_port(cli, 'fg')}/") == f"hello from {cid[:12]}\n"
        assert cli("stop", "-t", "1", "fg").code == 0
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert elements_to(addresses) == []


def test_ports_follow_the_route_through_the_proxy(cli, busybox, veths, isolated_store, monkeypatch):
    """The proxy of ports published by `network connect` (a CLI that exits at once) is nobody's
    child: it watches the container's PID 1, and goes at its exit with the port."""
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "front").code == 0
    port = free_port()
    box = cli(
        "run", "-d", "--name", "box", "--network", "back", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", SERVE
    )
    assert box.code == 0, box.err
    cid = box.out.strip()
    assert port_free(port)

    assert cli("network", "connect", "front", "box").code == 0
    veths(cid)
    settings = settings_of(isolated_store, cid)
    proxy = settings["Proxy"]
    assert settings["PortBackend"] == "proxy" and is_alive(proxy["pid"], proxy["start"])
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"
    assert not port_free(port) and elements_to(addresses_of(settings)) == []

    assert cli("network", "disconnect", "front", "box").code == 0
    assert not is_alive(proxy["pid"], proxy["start"]) and port_free(port) and cli("port", "box").out == ""

    assert cli("network", "connect", "front", "box").code == 0
    veths(cid)
    proxy = settings_of(isolated_store, cid)["Proxy"]
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"
    assert cli("stop", "-t", "1", "box").code == 0
    assert wait_until(lambda: not is_alive(proxy["pid"], proxy["start"]) and port_free(port))


@pytest.fixture
def proxy_backend(monkeypatch):
    monkeypatch.setenv("MINIRUN_PORT_BACKEND", "proxy")


def test_a_proxy_the_service_starts_for_a_connect_is_not_its_child(proxy_backend, service, isolated_store):  # noqa: F811
    """The service lives on after the connect (a thread of it runs the call): a proxy that was its
    child would stay a zombie under it once it ended. (proxy_backend first: the service starts with it.)"""
    from minirun.procs import parent_of

    docker = service.docker
    assert docker("network", "create", "--internal", "apiback").returncode == 0
    assert docker("network", "create", "apifront").returncode == 0
    port = free_port()
    done = docker(
        "run", "-d", "--name", "box", "--network", "apiback", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", SERVE
    )
    assert done.returncode == 0, done.stderr
    cid = done.stdout.strip()
    done = docker("network", "connect", "apifront", "box")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    proxy = settings_of(isolated_store, cid)["Proxy"]
    assert is_alive(proxy["pid"], proxy["start"]) and parent_of(proxy["pid"]) != service.process.pid
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello from {cid[:12]}\n"
    assert docker("rm", "-f", "box").returncode == 0
    assert wait_until(lambda: not is_alive(proxy["pid"], proxy["start"]) and port_free(port))
    assert docker("network", "rm", "apiback", "apifront").returncode == 0


def test_a_port_taken_meanwhile_fails_the_connect_and_not_the_disconnect(cli, busybox, veths, isolated_store):
    """docker's connect fails whole when the new gateway endpoint cannot have the ports (its join
    is rolled back); its disconnect goes through (the daemon logs it): here it says so."""
    assert cli("network", "create", "--internal", "back").code == 0
    assert cli("network", "create", "one").code == 0
    assert cli("network", "create", "two").code == 0
    port = free_port()
    taker = cli(
        "run", "-d", "--name", "taker", "--network", "one", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100"
    )
    assert taker.code == 0, taker.err
    box = cli(
        "run", "-d", "--name", "box", "--network", "back", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100"
    )
    assert box.code == 0, box.err
    veths(box.out.strip())
    done = cli("network", "connect", "two", "box")
    assert (done.code, done.err) == (
        125,
        f"minirun: error: Bind for 127.0.0.1:{port} failed: port is already allocated\n",
    )
    assert set(networks_of(cli, "box")) == {"back"} and set(ipv4_lines(cli, "box")) == {"lo", "eth0"}
    assert cli("port", "box").out == "" and len(bookings_of(isolated_store)) == 2  # taker's, box's on back
    assert cli("rm", "-f", "taker", "box").code == 0

    on_both = ("--network", "one", "--network", "two", "-p", f"127.0.0.1:{port}:80")
    web = cli("run", "-d", "--name", "web", *on_both, "busybox", "sleep", "100")
    assert web.code == 0, web.err
    veths(web.out.strip())
    with socket.socket() as holder:  # nftables binds nothing: a host process may take the port
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        done = cli("network", "disconnect", "one", "web")
    assert done.code == 125 and done.err.count("\n") == 1, done.err
    assert done.err.startswith(f"minirun: error: container {web.out.strip()} left network one, but its ports could not")
    assert f"to network two: Bind for 127.0.0.1:{port} failed: port is already allocated" in done.err
    assert set(networks_of(cli, "web")) == {"two"} and cli("port", "web").out == ""


def test_connects_and_disconnects_at_once_keep_the_records_whole(cli, busybox, veths):
    """Each reads the container's networks and writes them back, and picks the next free ethN:
    run at once they must take turns, or one's record (or interface name) is lost."""
    from concurrent.futures import ThreadPoolExecutor

    for name in ("n1", "n2", "n3", "n4", "n5"):
        assert cli("network", "create", name).code == 0
    ran = cli("run", "-d", "--name", "qq", "--network", "n1", "busybox", "sleep", "1000")
    assert ran.code == 0, ran
    box = ran.out.strip()
    assert cli("network", "connect", "n4", "qq").code == 0
    veths(box)
    calls = [("disconnect", "n4", "qq"), ("connect", "n2", "qq"), ("connect", "n3", "qq"), ("connect", "n5", "qq")]
    with ThreadPoolExecutor(len(calls)) as pool:
        done = list(pool.map(lambda args: cli("network", *args), calls))
    assert [d.code for d in done] == [0, 0, 0, 0], [d.err for d in done]
    veths(box)
    assert set(networks_of(cli, "qq")) == {"n1", "n2", "n3", "n5"}
    inside = ipv4_lines(cli, "qq")
    assert len(inside) == 5 and "eth0" in inside  # lo, and one interface a network
    for name in ("n2", "n3", "n5"):  # each network's interface holds an address of its subnet
        subnet = subnet_of(cli, name)
        assert any(ipv4.in_subnet(ipv4.ip_to_int(a.split("/")[0]), subnet) for a in inside.values()), (name, inside)
    assert cli("network", "disconnect", "n2", "qq").code == 0  # the record knows it: it can leave
    assert len(ipv4_lines(cli, "qq")) == 4


def test_connect_a_created_container_then_start_it(cli, busybox, veths):
    assert cli("network", "create", "one").code == 0
    assert cli("network", "create", "two").code == 0
    web = cli("run", "-d", "--name", "web", "--network", "two", *PING, "busybox", "sh", "-c", SERVE).out.strip()
    created = cli("create", "--name", "box", "--network", "one", "busybox", "sleep", "1000")
    assert created.code == 0, created.err
    assert cli("network", "connect", "--alias", "boxy", "two", "box").code == 0
    shown = networks_of(cli, "box")
    assert set(shown) == {"one", "two"} and shown["two"]["IPAddress"] == ""
    assert cli("start", "box").code == 0
    veths(created.out.strip())
    assert set(ipv4_lines(cli, "box")) == {"lo", "eth0", "eth1"}
    got = cli("exec", "box", "sh", "-c", fetch_loop("http://web/"))
    assert got.out == f"hello from {web[:12]}\n", got.err
    assert cli("exec", "web", "ping", "-c", "1", "-W", "2", "boxy").code == 0
    # stopped: disconnect is recorded, and the next start has eth0 only
    assert cli("stop", "-t", "0", "box").code == 0
    assert cli("network", "disconnect", "two", "box").code == 0
    assert cli("exec", "web", "grep", "-w", "boxy", "/etc/hosts").code == 1
    assert cli("start", "box").code == 0
    veths(created.out.strip())
    assert set(ipv4_lines(cli, "box")) == {"lo", "eth0"}
    # a stopped container's first network may go too: it then starts with loopback only
    assert cli("stop", "-t", "0", "box").code == 0
    assert cli("network", "disconnect", "one", "box").code == 0
    assert cli("start", "box").code == 0
    assert set(ipv4_lines(cli, "box")) == {"lo"}


def test_run_with_two_networks(cli, busybox, veths):
    assert cli("network", "create", "one").code == 0
    assert cli("network", "create", "two").code == 0
    ran = cli("run", "--rm", "--network", "one", "--network", "two", "busybox", "ip", "-o", "-4", "addr")
    assert ran.code == 0, ran.err
    one, two = subnet_of(cli, "one"), subnet_of(cli, "two")
    found = dict(re.findall(r"^\d+: (eth\d)\s+inet (\S+)/", ran.out, re.M))
    assert ipv4.in_subnet(ipv4.ip_to_int(found["eth0"]), one) and ipv4.in_subnet(ipv4.ip_to_int(found["eth1"]), two)
    both = cli("run", "--rm", "--network", "one", "--network", "none", "busybox", "true")
    assert both.code == 125 and "cannot attach both user-defined and non-user-defined" in both.err
    twice = cli("run", "--rm", "--network", "one", "--network", "one", "busybox", "true")
    assert twice.code == 125 and 'network "one" is specified multiple times' in twice.err


def test_docker_errors_of_connect(cli, busybox, veths):
    assert cli("network", "create", "one").code == 0
    assert cli("run", "-d", "--name", "lonely", "--network", "none", "busybox", "sleep", "1000").code == 0
    assert cli("run", "-d", "--name", "hosted", "--network", "host", "busybox", "sleep", "1000").code == 0
    assert cli("run", "-d", "--name", "box", "busybox", "sleep", "1000").code == 0
    for args, message in [
        (("one", "lonely"), "cannot be connected to multiple networks with one of the networks in private (none)"),
        (("one", "hosted"), "cannot be disconnected from host network or connected to host network"),
        (("host", "box"), "cannot be disconnected from host network or connected to host network"),
        (("none", "box"), "private (none) mode"),
        (("nosuch", "box"), "network nosuch not found"),
        (("one", "nosuch"), "No such container: nosuch"),
        (("--ip", "10.1.2.3", "bridge", "box"), "user specified IP address is supported on user defined networks only"),
        (("--alias", "a b", "one", "box"), "invalid network alias"),
    ]:
        done = cli("network", "connect", *args)
        assert done.code == 125 and message in done.err and done.err.count("\n") == 1, (args, done.err)
    one = subnet_of(cli, "one")
    wanted = ipv4.int_to_ip(one[0] + 77)
    assert cli("network", "connect", "--ip", wanted, "one", "box").code == 0
    assert networks_of(cli, "box")["one"]["IPAddress"] == wanted
    assert ipv4_lines(cli, "box")["eth1"] == f"{wanted}/{one[1]}"
    veths(cli("inspect", "-f", "{{.Id}}", "box").out.strip())


def test_an_rm_container_connected_after_its_start_leaves_no_booking(cli, busybox, veths, isolated_store):
    assert cli("network", "create", "one").code == 0
    cid = cli("run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "1000").out.strip()
    assert cli("network", "connect", "one", "brief").code == 0
    veths(cid)
    assert len(bookings_of(isolated_store)) == 2
    assert cli("kill", "brief").code == 0
    assert wait_until(lambda: not os.path.exists(isolated_store / "containers" / cid))
    assert wait_until(lambda: bookings_of(isolated_store) == []), bookings_of(isolated_store)


def test_docker_cli_network_connect_and_disconnect(service):  # noqa: F811
    assert service.docker("network", "create", "apione").returncode == 0
    assert service.docker("network", "create", "apitwo").returncode == 0
    done = service.docker("run", "-d", "--name", "web", "--network", "apitwo", *PING, "busybox", "sh", "-c", SERVE)
    assert done.returncode == 0, done.stderr
    done = service.docker("run", "-d", "--name", "box", "--network", "apione", "busybox", "sleep", "300")
    assert done.returncode == 0, done.stderr
    done = service.docker("network", "connect", "--alias", "boxy", "apitwo", "box")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    got = service.docker("exec", "box", "sh", "-c", fetch_loop("http://web/"))
    assert got.returncode == 0 and got.stdout.startswith("hello from "), got.stderr
    assert service.docker("exec", "web", "ping", "-c", "1", "-W", "2", "boxy").returncode == 0
    document = json.loads(service.docker("network", "inspect", "apitwo").stdout)[0]
    assert {c["Name"] for c in document["Containers"].values()} == {"web", "box"}
    shown = json.loads(service.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "box").stdout)
    assert set(shown) == {"apione", "apitwo"} and shown["apitwo"]["Aliases"][0] == "boxy"
    again = service.docker("network", "connect", "apitwo", "box")
    assert again.returncode == 1 and "endpoint with name box already exists in network apitwo" in again.stderr
    status, _, body = service.request("POST", "/networks/apitwo/connect", {"Container": "box"})
    assert status == 403, body
    done = service.docker("network", "disconnect", "apitwo", "box")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert service.docker("exec", "web", "grep", "-w", "boxy", "/etc/hosts").returncode == 1
    assert set(json.loads(service.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "box").stdout)) == {
        "apione"
    }
    status, _, body = service.request("POST", "/networks/apitwo/disconnect", {"Container": "box", "Force": True})
    assert status == 500 and "is not connected to the network apitwo" in json.loads(body)["message"]
    assert service.docker("rm", "-f", "web", "box").returncode == 0
    assert service.docker("network", "rm", "apione", "apitwo").returncode == 0


COMPOSE_FILE = """\
version: "3.8"
services:
  api:
    image: busybox
    command: ["sh", "-c", "mkdir /www && echo hello-from-api > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks: [front, back]
    stop_grace_period: 1s
  user:
    image: busybox
    command: ["sh", "-c", "until wget -q -O - http://api/; do sleep 0.2; done; exec sleep 300"]
    networks: [front]
    stop_grace_period: 1s
  worker:
    image: busybox
    command: ["sh", "-c", "until wget -q -O - http://api/; do sleep 0.2; done; exec sleep 300"]
    networks: [back]
    stop_grace_period: 1s
networks:
  front:
  back:
"""


def test_compose_service_on_two_networks(service, tmp_path):  # noqa: F811
    import shutil
    import time
    import uuid

    compose_bin = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    assert os.access(compose_bin, os.X_OK), "scripts/setup.sh --test installs Debian's docker-compose"
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    project = f"t{uuid.uuid4().hex[:10]}"
    env = dict(service.env, COMPOSE_PROJECT_NAME=project)

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [compose_bin, "--no-ansi", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )

    try:
        done = compose("up", "-d")
        assert done.returncode == 0, done.stderr
        for client in ("user", "worker"):
            deadline = time.monotonic() + 60
            while "hello-from-api" not in (logs := compose("logs", "--no-color", client)).stdout:
                assert time.monotonic() < deadline, (logs.stdout, logs.stderr)
                time.sleep(0.2)
        shown = service.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", f"{project}_api_1")
        assert set(json.loads(shown.stdout)) == {f"{project}_front", f"{project}_back"}, shown.stdout
        user_hosts = service.docker("exec", f"{project}_user_1", "cat", "/etc/hosts").stdout
        assert "worker" not in user_hosts and "api" in user_hosts  # front only: api, not worker
        again = compose("up", "-d")  # the same project again: nothing to recreate
        assert again.returncode == 0 and "up-to-date" in again.stderr, again.stderr
        done = compose("down")
        assert done.returncode == 0, done.stderr
        assert service.docker("ps", "-aq").stdout == ""
        assert project not in service.docker("network", "ls").stdout
    finally:
        compose("down", "--timeout", "1")
