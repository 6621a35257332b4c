"""`network connect` and `network disconnect`: a container on more networks than the one it was
created on, with docker's rules and errors.

The record: config.json's `networks` lists the networks the container is on, eth0's first
(network.py's wanted_networks reads a record from before this as its --network). A connect or
disconnect rewrites it under the store lock; a container that is not running takes it at its
next start (network.prepare books and plugs every one). On a running one the change is made now
too: an address booked on the network's bridge, a veth pair plugged into PID 1's namespace
(net/attach.py) as the next free ethN with a route to that subnet only, the peers' /etc/hosts
rewritten (their lines name it by its aliases there), and state.json's NetworkSettings gains its
record; disconnect undoes each of these. NetworkSettings' top level is the first network's; when
a running container leaves it, the next network's record moves up. A container left on no network
has loopback only, and the next connect becomes its first network again.

The default route and the published ports (-p, -P) go together, as docker's gateway endpoint
carries both: through the first network with a gateway (an --internal one has none, and never
gets ports). When a connect or disconnect moves the route to another network (a connect to a
container whose networks are all internal, or none; a disconnect of the network that held it),
the ports leave the old address and are published to the new one (NetworkSettings' "Ports",
"PortAddress" and the backend's record at its top level); a host port a binding names stays, a
picked one (0) is picked again, as docker allocates them anew. A host port taken meanwhile is a
Conflict: a connect then fails whole (docker rolls the join back: the container stays off the
network, its ports where they were), while a disconnect is done all the same (docker logs the
failure) and the error says that the ports were left unpublished. With the proxy backend the
new proxy watches PID 1 (portmap.py). The exit of PID 1 unpublishes what the record holds then
(network.after_exit, foreground.record_exit), not what it held at the start."""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.containers.container import Container, Containers
from minirun.containers.liveness import is_dead, is_running, refresh
from minirun.containers.network import (
    DEFAULT_BRIDGE,
    attachment_record,
    book_address,
    connected_event,
    publish_on_route,
    wanted_networks,
    write_hosts,
    write_hosts_of,
)
from minirun.errors import Conflict, Forbidden, MinirunError, NotFound, UsageError
from minirun.store.fsutil import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.net.networks import Network
    from minirun.store import Store

# docker's runconfig errors (400: a request that can never be met, whatever the state)
HOST_NETWORK = "container cannot be disconnected from host network or connected to host network"
SHARED_NETWORK = (
    "container sharing network namespace with another container or host cannot be connected to any other network"
)
NO_NETWORK = "container cannot be connected to multiple networks with one of the networks in private (none) mode"


def _check_mode(container: Container, network: Network | None) -> None:
    mode = container.config.network
    if mode == "host" or (network is not None and network.driver == "host"):
        raise UsageError(HOST_NETWORK)
    if mode.startswith("container:"):
        raise UsageError(SHARED_NETWORK)
    if mode == "none" or (network is not None and network.driver == "null"):
        raise UsageError(NO_NETWORK)


def _same(store: Store, name: str, network: Network) -> bool:
    """Whether a recorded network name (or id) is `network`."""
    from minirun.net.networks import Networks

    if name in (network.name, network.id):
        return True
    try:
        return Networks(store).find(name).id == network.id
    except MinirunError:
        return False


def connect(
    store: Store,
    text: str,
    network_text: str,
    aliases: list[str] | None = None,
    ip: str = "",
    links: list[str] | None = None,
) -> Container:
    """docker network connect [--alias A] [--ip IP] [--link NAME:ALIAS] NETWORK CONTAINER."""
    from minirun.net.networks import Networks

    network = Networks(store).find(network_text)
    containers = Containers(store)
    with _network_lock(containers, containers.find(text)) as container:
        return _connect(store, containers, container, network, aliases, ip, links)


def _connect(
    store: Store,
    containers: Containers,
    container: Container,
    network: Network,
    aliases: list[str] | None,
    ip: str,
    links: list[str] | None = None,
) -> Container:
    from minirun.containers.dnsfiles import parse_alias
    from minirun.net.ipv4 import canonical_ip

    if is_dead(container):
        raise Conflict(f"container {container.id} is dead: remove it with rm -f")
    _check_mode(container, network)
    aliases = [parse_alias(a) for a in aliases or []]
    if ip:
        ip = canonical_ip(ip)
        if network.predefined:
            raise UsageError("user specified IP address is supported on user defined networks only")
    wanted = wanted_networks(container.config)
    if any(_same(store, w["name"], network) for w in wanted):
        raise Forbidden(f"endpoint with name {container.name} already exists in network {network.name}")
    entry: dict = {"name": network.name, "aliases": aliases, "ip": ip}
    if links:
        from minirun.containers.links import parse_links

        if network.predefined:  # docker's rule: links on a connect are a user network's
            raise UsageError("links are only supported for user-defined networks")
        entry["links"] = parse_links(links)
    _write_networks(containers, container, [*wanted, entry])
    if is_running(container):
        try:
            _plug(store, containers, container, network, entry)
        except BaseException:
            _write_networks(containers, container, wanted)
            raise
    return container


def _plug(store: Store, containers: Containers, container: Container, network: Network, entry: dict) -> None:
    from minirun.net import attach
    from minirun.net.networks import AddressBook

    settings = dict(container.state.get("NetworkSettings") or {})
    first = not settings.get("IPAddress")  # on no network now: this one becomes its first
    routed = first or _route_holder(settings) is None  # its networks are internal: this one routes
    used = {_interface(settings), *(a.get("Interface", "") for a in settings.get("Attachments", ()))}
    ifname = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
    spec = book_address(store, container, network, entry, ifname)
    book = AddressBook(network.bridge)
    record = attachment_record(network, entry, spec)
    if first:
        settings = {**record, "Ports": [], "Token": settings.get("Token") or os.urandom(8).hex(), "Attachments": []}
    else:
        settings["Attachments"] = [*settings.get("Attachments", ()), record]
    plugged = False
    try:
        interface = {k: v for k, v in spec.items() if k != "gateway"}
        attach.plug_running(container.state["Pid"], interface, spec["gateway"] if routed else "")  # type: ignore[arg-type]
        plugged = True
        if routed and spec["gateway"]:  # the default route is this network's now: the ports follow it
            publish_on_route(container, settings, record)
    except BaseException:
        if plugged:  # a port taken: docker's connect fails whole
            attach.unplug(spec["veth"])
        with book.locked():
            book.release(store.root, container.id)
        raise
    _update_settings(containers, container, settings)
    write_hosts_of(store.root, container.id)
    if network.bridge != DEFAULT_BRIDGE:
        write_hosts(book, True, skip=(store.root, container.id))
    connected_event(store.root, container.id, network)


def disconnect(store: Store, text: str, network_text: str, force: bool = False) -> Container:
    """docker network disconnect [-f] NETWORK CONTAINER."""
    from minirun.net.networks import Networks

    containers = Containers(store)
    try:
        network: Network | None = Networks(store).find(network_text)
    except MinirunError:
        if not force:
            raise
        network = None  # -f: a network since removed is still left by the name the record has
    with _network_lock(containers, containers.find(text)) as container:
        return _disconnect(store, containers, container, network, network_text)


def _disconnect(
    store: Store, containers: Containers, container: Container, network: Network | None, network_text: str
) -> Container:
    mode = container.config.network
    if mode == "host" or mode.startswith("container:") or (network is not None and network.driver == "host"):
        raise UsageError(HOST_NETWORK if not mode.startswith("container:") else SHARED_NETWORK)
    wanted = wanted_networks(container.config)
    matches = [
        w for w in wanted if (_same(store, w["name"], network) if network is not None else w["name"] == network_text)
    ]
    if not matches:
        shown = network.name if network is not None else network_text
        raise MinirunError(f"container {container.id} is not connected to the network {shown}")
    entry = matches[0]
    settings = dict(container.state.get("NetworkSettings") or {})
    attachments = list(settings.get("Attachments", ()))
    record = next((a for a in attachments if _same_record(a, entry, network)), None)
    unpublished = None
    if is_running(container):
        if record is None and settings.get("IPAddress") and _same_record(settings, entry, network):
            record = dict(settings)  # the first network's: its own record is the top level
            unpublished = _leave_first(containers, container, settings)
        elif record is not None:
            from minirun.net import attach

            routed = _route_holder(settings) is record
            if routed:  # the default route goes with it, and the ports published to its address
                _unpublish(settings)
            attach.unplug(record["Veth"])
            attachments.remove(record)
            settings["Attachments"] = attachments
            _update_settings(containers, container, settings)
            if routed:
                unpublished = _route_again(containers, container, settings)
    elif record is not None:
        attachments.remove(record)
        settings["Attachments"] = attachments
        _update_settings(containers, container, settings)
    _write_networks(containers, container, [w for w in wanted if w is not entry])
    bridge = network.bridge if network is not None else (record or {}).get("Bridge", "")
    if bridge:
        _release_on(store, container, bridge, record or settings, network)
    if unpublished is not None:  # raised last: the disconnect is done, as docker's
        shown = network.name if network is not None else network_text
        raise Conflict(f"container {container.id} left network {shown}, but {unpublished.message}")
    return container


class _network_lock:  # noqa: N801  (used as a function: `with _network_lock(...) as container`)
    """One connect or disconnect of a container at a time (each reads its networks and writes
    them back, and picks the next free ethN): an flock in its dir, and the container as it is
    once that is held."""

    def __init__(self, containers: Containers, container: Container) -> None:
        from minirun.store.fsutil import flocked

        self.containers, self.id = containers, container.id
        self.lock = flocked(os.path.join(container.dir, "network.lock"))

    def __enter__(self) -> Container:
        try:
            self.lock.__enter__()
        except FileNotFoundError:  # removed since it was found
            raise NotFound(f"No such container: {self.id}") from None
        try:
            return refresh(self.containers, self.containers.load(self.id))
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__(None, None, None)


def _leave_first(containers: Containers, container: Container, settings: dict) -> MinirunError | None:
    """A running container leaves its first network: its interface goes; the next network's record
    moves up. The default route and the published ports go too if they were the first network's,
    to the next network with a gateway (none left: lo only); see _route_again for the result."""
    from minirun.net import attach

    routed = bool(settings.get("Gateway"))  # else a later network holds the route, and the ports
    ports = {key: settings[key] for key in _PORT_FACTS if key in settings}
    if routed:
        _unpublish(settings)
        ports = {}
    attach.unplug(settings["Veth"])
    rest = list(settings.get("Attachments", ()))
    if not rest:
        _update_settings(containers, container, {"Token": settings.get("Token", "")})
        return None
    nxt = rest.pop(0)
    moved = {**nxt, "Ports": [], **ports, "Token": settings.get("Token", ""), "Attachments": rest}
    _update_settings(containers, container, moved)
    return _route_again(containers, container, moved) if routed else None


# what NetworkSettings records of the published ports (portmap.publish_ports's)
_PORT_FACTS = ("Ports", "PortBackend", "Proxy", "PortAddress")


def _unpublish(settings: dict) -> None:
    """The ports published to the address of the default route's network go (it is leaving)."""
    if settings.get("Ports"):
        from minirun.net import portmap

        portmap.unpublish_ports(settings)
    for key in _PORT_FACTS:
        settings.pop(key, None)
    settings["Ports"] = []


def _route_holder(settings: dict) -> dict | None:
    """The record whose interface carries a running container's default route: the first network
    with a gateway (an internal one has none), eth0's if it has one, as docker picks its gateway
    endpoint; None when every network it is on is internal."""
    records = [settings, *settings.get("Attachments", ())] if settings.get("IPAddress") else []
    return next((r for r in records if r.get("Gateway")), None)


def _route_again(containers: Containers, container: Container, settings: dict) -> MinirunError | None:
    """The interface that carried the default route is gone: the next network with a gateway takes
    it, and the published ports (docker moves them to its new gateway endpoint). A host port taken
    meanwhile is returned, not raised: the disconnect stands all the same, as docker's does."""
    from minirun.net import attach

    holder = _route_holder(settings)
    if holder is None:
        return None
    attach.route_through(container.state["Pid"], holder["Gateway"], _interface(holder) or "eth0")
    try:
        publish_on_route(container, settings, holder)
    except MinirunError as exc:
        return MinirunError(
            f"its ports could not follow its default route to network {holder['Network']}: {exc.message}"
        )
    _update_settings(containers, container, settings)
    return None


def _interface(settings: dict) -> str:
    """The interface of NetworkSettings' top-level record: eth0, unless it moved up from the
    Attachments when the first network was left."""
    return settings.get("Interface", "eth0") if settings.get("IPAddress") else ""


def _same_record(record: dict, entry: dict, network: Network | None) -> bool:
    if network is not None:
        return record.get("NetworkID") == network.id
    return record.get("Network") == entry["name"]


def _release_on(store: Store, container: Container, bridge: str, record: dict, network: Network | None) -> None:
    """The container's booking on `bridge` goes; its peers there and itself get new hosts files."""
    from minirun import events
    from minirun.net.networks import AddressBook

    book = AddressBook(bridge)
    if not os.path.isdir(book.dir):
        return
    with book.locked():
        released = book.release(store.root, container.id)
    if released and bridge != DEFAULT_BRIDGE:
        write_hosts(book, resolve_peers=True)
    write_hosts_of(store.root, container.id)
    if released:
        network_id = network.id if network is not None else record.get("NetworkID", "")
        name = network.name if network is not None else record.get("Network", "")
        attributes = {"container": container.id, "name": name, "type": "bridge"}
        events.record(store.root, "network", "disconnect", network_id, attributes)


def _write_networks(containers: Containers, container: Container, networks: list[dict]) -> None:
    """config.json's `networks`, under the store lock (as rename rewrites its name)."""
    with containers.store.locked():
        fresh = containers.load(container.id)
        fresh.config.networks = networks
        atomic_write(
            os.path.join(container.dir, "config.json"), leanjson.dumps(fresh.config.to_json()).encode(), durable=False
        )
    container.config.networks = networks


def _update_settings(containers: Containers, container: Container, settings: dict) -> None:
    """state.json's NetworkSettings, the rest of the state as it is on disk now."""
    fresh = containers.load(container.id)
    containers.update_state(fresh, NetworkSettings=settings)
    container.state["NetworkSettings"] = settings
