"""A container's network, around the one fork of launch.py.

Before the fork, in PID 1's parent (the CLI for `run`, the monitor for `run -d` and `start`):
prepare() books the container's address on its network's bridge, writes /etc/hosts (and its
peers' on a user network), publishes its ports, records NetworkSettings in state.json and puts
what PID 1 needs into the plan. `container:NAME` only names the namespace to join.

In PID 1, net/attach.py makes eth0 from what prepare() put in the plan.

When PID 1 has exited: stopped() removes the published ports (the DNAT elements, or the proxy).
On rm: release() gives the address back and updates the peers' /etc/hosts. Nothing here imports
pyroute2 unless a bridge must be made (networks.ensure_bridge); nothing here runs for --network none.
"""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.errors import Conflict, NotFound


def prepare(store, container, plan) -> None:
    mode = container.config.network
    if mode in ("none", "host"):
        return
    if mode.startswith("container:"):
        _join(store, container, plan, mode.split(":", 1)[1])
        return
    from minirun.containers.container import Containers
    from minirun.net.ipv4 import broadcast, int_to_ip, mac_for, parse_subnet
    from minirun.net.networks import DEFAULT_NETWORK, AddressBook, Networks, ensure_bridge

    network = Networks(store).find(mode)
    if network.driver != "bridge":  # `host`/`none` named by id
        return
    info = ensure_bridge(network, store.root)
    config = container.config
    book = AddressBook(network.bridge)
    with book.locked():
        address = book.allocate(
            info["subnet"],
            info["gateway"],
            store.root,
            container.id,
            container.name,
            config.hostname,
            config.network_aliases,
        )
        write_hosts(book, network.name != DEFAULT_NETWORK, only=(store.root, container.id))
    subnet = parse_subnet(info["subnet"])
    prefix = subnet[1]
    veth = "veth" + os.urandom(4).hex()[:7]  # the host's end; eth0 inside
    settings = {
        "Network": network.name,
        "NetworkID": network.id,
        "Bridge": network.bridge,
        "Veth": veth,
        "IPAddress": address,
        "IPPrefixLen": prefix,
        "Gateway": info["gateway"],
        "MacAddress": mac_for(address),
        "Ports": [],
        # a new one per start: the exit of an older run never removes this run's ports
        "Token": os.urandom(8).hex(),
    }
    containers = Containers(store)
    containers.update_state(container, NetworkSettings=settings)
    from minirun import events

    events.record(
        store.root,
        "network",
        "connect",
        network.id,
        {"container": container.id, "name": network.name, "type": "bridge"},
    )
    ports = config.ports
    if config.publish_all:  # -P: every exposed port not published by -p, on a port picked now
        from minirun.containers.exposedports import publish_all_bindings

        ports = ports + publish_all_bindings(config.exposed_ports, ports)
    if ports:
        from minirun.net import portmap

        settings["Ports"], backend = portmap.publish_ports(ports, address)  # nftables or the proxy
        settings.update(backend)
        containers.update_state(container, NetworkSettings=settings)
    plan.net = {
        "bridge": network.bridge,
        "bridge_index": info["index"],
        "veth": veth,
        "address": address,
        "prefixlen": prefix,
        "broadcast": int_to_ip(broadcast(*subnet)),
        "gateway": info["gateway"],
        "mac": settings["MacAddress"],
    }


def _join(store, container, plan, target: str) -> None:
    """--network container:ID: PID 1 joins that container's namespace; its hosts and
    resolv.conf are taken over, as docker shares them."""
    from minirun.containers.container import Containers
    from minirun.containers.liveness import is_running, refresh

    containers = Containers(store)
    try:
        other = refresh(containers, containers.load(target), reload=False)
    except NotFound:
        raise NotFound(f"No such container: {target}") from None
    if not is_running(other):
        raise Conflict(f"cannot join network of a non running container: {other.id}")
    plan.join_netns = f"/proc/{other.state['Pid']}/ns/net"
    for name in ("hosts", "resolv.conf"):
        try:
            with open(other.provided_file(name), "rb") as f:
                write_in_place(container.provided_file(name), f.read())
        except FileNotFoundError:
            continue


def hosts_text(own: dict, peers: list[dict], extra: str = "") -> str:
    """docker's /etc/hosts with the --add-host lines (`extra`), the container's own line
    (address, hostname, name, aliases) and one per peer on a user network (address, name,
    aliases: the names docker's embedded DNS answers for it there)."""
    from minirun.containers.container import HOSTS_BASE

    names = [own.get("hostname") or "", own.get("name") or "", *own.get("aliases", ())]
    lines = [HOSTS_BASE, extra, own["ip"] + "\t" + " ".join(dict.fromkeys(n for n in names if n)) + "\n"]
    for peer in sorted(peers, key=lambda p: p.get("name") or ""):
        if peer.get("name"):
            peer_names = " ".join(dict.fromkeys([peer["name"], *peer.get("aliases", ())]))
            lines.append(f"{peer['ip']}\t{peer_names}\n")
    return "".join(lines)


def write_hosts(book, resolve_peers: bool, only: tuple[str, str] | None = None) -> None:
    """Rewrite /etc/hosts of the containers booked on `book` (under its lock): on a user network
    every member's, each with its own line and one per peer; else only `only`'s (store, id)."""
    members = book.members()
    targets = members if resolve_peers else [m for m in members if (m["store"], m["container"]) == only]
    for member in targets:
        peers = [m for m in members if m is not member] if resolve_peers else []
        path = os.path.join(member["store"], "containers", member["container"], "hosts")
        extra = _extra_hosts(book.bridge, member)
        try:
            write_in_place(path, hosts_text(member, peers, extra).encode())
        except FileNotFoundError:
            continue


def _extra_hosts(bridge: str, member: dict) -> str:
    """A member's --add-host lines, host-gateway being its bridge's address."""
    from minirun.containers.dnsfiles import extra_hosts_text, recorded_extra_hosts

    extra = recorded_extra_hosts(member["store"], member["container"])
    if not extra:
        return ""
    from minirun.net.networks import bridge_info

    return extra_hosts_text(extra, (bridge_info(bridge) or {}).get("gateway", ""))


def write_in_place(path: str, data: bytes) -> None:
    """Overwrite a provided file keeping its inode: it is bind-mounted into a running container,
    and a rename would leave the container looking at the old file."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


# -- in PID 1 -------------------------------------------------------------------------------


# -- after the exit, on rm ----------------------------------------------------------------------


def stopped(store_root: str, container_id: str, settings: dict | None) -> None:
    """PID 1 has exited: its published ports go (docker frees them on stop). Only the ports of
    this run: if the container was started again meanwhile (a new Token), they are the new run's."""
    if not settings or not settings.get("Ports"):
        return
    from minirun.net import portmap

    def still_ours() -> bool:
        try:
            with open(os.path.join(store_root, "containers", container_id, "state.json"), "rb") as f:
                state = leanjson.load(f)
        except (OSError, ValueError):
            return True  # removed: nobody can have started it again
        return (state.get("NetworkSettings") or {}).get("Token") == settings.get("Token")

    portmap.unpublish_ports(settings, still_ours)


def release(store_root: str, container_id: str, settings: dict | None) -> None:
    """On rm: published ports, the address booking, the peers' hosts lines. Idempotent."""
    if not settings or not settings.get("Bridge"):
        return
    from minirun.net.networks import DEFAULT_NETWORK, AddressBook

    if settings.get("Ports"):
        from minirun.net import portmap

        portmap.unpublish_ports(settings)  # the address is still ours: so are these
    book = AddressBook(settings["Bridge"])
    if not os.path.isdir(book.dir):
        return
    with book.locked():
        released = book.release(store_root, container_id)
        if released and settings.get("Network") != DEFAULT_NETWORK:
            write_hosts(book, resolve_peers=True)
    if released:
        from minirun import events

        attributes = {"container": container_id, "name": settings.get("Network", ""), "type": "bridge"}
        events.record(store_root, "network", "disconnect", settings.get("NetworkID", ""), attributes)


def after_exit(store_root: str, container_id: str, settings_text: str, auto_remove: str) -> None:
    """The monitor's last step, once its log copier has recorded the exit (and removed an --rm
    container): a headless process, so failures are dropped rather than raised."""
    try:
        settings = leanjson.loads(settings_text)
        stopped(store_root, container_id, settings)
        if auto_remove == "1":
            release(store_root, container_id, settings)
    except Exception:
        pass


def exit_hook_args(store_root: str, container) -> list[str]:
    """Arguments for after_exit, or [] when this container leaves nothing to undo at its exit."""
    settings = container.state.get("NetworkSettings")
    if not settings or not (settings.get("Ports") or (container.config.auto_remove and settings.get("Bridge"))):
        return []
    return [store_root, container.id, leanjson.dumps(settings), "1" if container.config.auto_remove else "0"]


# -- what inspect and ps show --------------------------------------------------------------------


def published(container) -> list[list]:
    """The ports published now: only while the container runs, as docker shows them."""
    settings = container.state.get("NetworkSettings") or {}
    return settings.get("Ports") or [] if container.state.get("Status") == "running" else []


def network_aliases(container) -> list[str]:
    """inspect's Aliases on a user network: --network-alias, then its short id, as docker's daemon
    adds it (compose reads that one to know a container is connected). The peers' /etc/hosts
    name it by the --network-alias ones (the short id is its own hostname already)."""
    return list(dict.fromkeys([*container.config.network_aliases, container.id[:12]]))


def inspect_settings(container) -> dict:
    """docker inspect's NetworkSettings. The top-level address fields are filled for the default
    bridge network only, as docker fills them; every network's are under Networks."""
    from minirun.net.portmap import inspect_ports

    settings = container.state.get("NetworkSettings") or {}
    running = container.state.get("Status") == "running"
    mode = container.config.network
    endpoint = {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "NetworkID": settings.get("NetworkID", ""),
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
        "DriverOpts": None,
    }
    if running and settings.get("IPAddress"):
        endpoint.update(
            EndpointID=settings.get("Token", ""),
            Gateway=settings["Gateway"],
            IPAddress=settings["IPAddress"],
            IPPrefixLen=settings["IPPrefixLen"],
            MacAddress=settings["MacAddress"],
        )
    default = settings.get("Network", mode) == "bridge"
    top = {
        key: endpoint[key] if default else ("" if key != "IPPrefixLen" else 0)
        for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")
    }
    network = settings.get("Network", mode)
    if network not in ("bridge", "none", "host") and not mode.startswith("container:"):
        endpoint["Aliases"] = network_aliases(container)
    networks = {} if mode.startswith("container:") else {network: endpoint}
    pid = container.state.get("Pid", 0)
    return {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": inspect_ports(published(container)) if running else {},
        "SandboxKey": f"/proc/{pid}/ns/net" if running and pid else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        **top,
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPv6Gateway": "",
        "Networks": networks,
    }
