"""`network create/ls/inspect/rm/prune` and the Engine API's /networks: the one way both front
ends make, list, show and remove networks (net/networks.py keeps the definitions), each change
recorded as docker's event."""

from __future__ import annotations

from minirun.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.net.networks import Network
    from minirun.store import Store

PRUNE_KEYS = ("label", "label!", "until")


def _networks(store: Store):
    from minirun.net.networks import Networks

    return Networks(store)


def _event(store: Store, action: str, network: Network) -> None:
    from minirun import events

    events.record(store.root, "network", action, network.id, {"name": network.name, "type": network.driver})


def in_use(store: Store) -> set[str]:
    """The networks (by name) the store's containers are on, running or not."""
    from minirun.containers.container import Containers
    from minirun.containers.network import wanted_networks

    used = set()
    for container in Containers(store).all():
        used.add(container.config.network)
        used.update(w["name"] for w in wanted_networks(container.config))
    return used


def create_network(
    store: Store,
    name: str,
    subnet: str | None = None,
    gateway: str | None = None,
    driver: str = "bridge",
    labels: dict[str, str] | None = None,
    internal: bool = False,
) -> Network:
    network = _networks(store).create(name, subnet, gateway, driver, labels, internal)
    _event(store, "create", network)
    return network


def list_networks(store: Store, words: list[str]) -> list[Network]:
    """Every network (by name), those `--filter` words keep."""
    networks = _networks(store).all()
    if words:
        from minirun.frontend.filters import NETWORK_KEYS, Filters, network_filter

        keep = network_filter(Filters(words, NETWORK_KEYS), in_use(store))
        networks = [n for n in networks if keep(n)]
    return networks


def remove_network(store: Store, text: str) -> Network:
    networks = _networks(store)
    network = networks.find(text)
    networks.remove(network)
    _event(store, "destroy", network)
    return network


def prune_networks(store: Store, words: list[str]) -> list[str]:
    """Every user network no container is on, that the filters (label, label!, until) let go;
    their names. One that turns out busy (a container just joined) stays."""
    from minirun.errors import Conflict
    from minirun.frontend.filters import Filters
    from minirun.humanize import epoch_seconds, parse_timestamp

    filters = Filters(words, PRUNE_KEYS)
    until = [parse_timestamp(value) for value in filters.get("until")]
    used = in_use(store)
    networks = _networks(store)
    removed = []
    for network in networks.all():
        labels = network.labels
        if (
            network.predefined
            or network.name in used
            or network.id in used
            or not filters.match_labels(labels)
            or any(epoch_seconds(network.created) * 1e9 >= when for when in until)
        ):
            continue
        try:
            networks.remove(network)
        except Conflict:
            continue
        _event(store, "destroy", network)
        removed.append(network.name)
    return removed


def network_document(store: Store, network: Network, with_containers: bool = True) -> dict:
    """docker network inspect's document (the Engine API's NetworkResource). Options: what was
    asked at create (nothing here), as docker shows a user network; the default bridge names its
    device, as docker's does."""
    subnet, gateway = network.subnet, network.gateway
    containers = {}
    if network.driver == "bridge":
        from minirun.net.networks import bridge_info

        info = bridge_info(network.bridge) or {}
        subnet, gateway = subnet or info.get("subnet", ""), gateway or info.get("gateway", "")
        if with_containers and subnet:
            containers = _bridge_members(store, network, subnet)
    elif with_containers:
        from minirun.containers.container import Containers

        for container in Containers(store).all():
            if container.config.network == network.name and _running(store, container.id) is not None:
                containers[container.id] = {
                    "Name": container.name,
                    "EndpointID": "",
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Options": None,
            "Config": [{"Subnet": subnet, "Gateway": gateway}] if subnet else [],
        },
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": network.bridge} if network.predefined and network.bridge else {},
        "Labels": dict(network.labels),
    }


def _bridge_members(store: Store, network: Network, subnet: str) -> dict[str, dict]:
    from minirun.net.networks import AddressBook

    book = AddressBook(network.bridge)
    with book.locked():
        members = book.members()
    containers = {}
    for member in members:
        if member["store"] != store.root:
            continue
        container = _running(store, member["container"])
        if container is not None:
            settings = container.state.get("NetworkSettings") or {}
            records = [settings, *settings.get("Attachments", ())]
            record: dict = next((r for r in records if r.get("Bridge") == network.bridge), {})
            containers[container.id] = {
                "Name": container.name,
                "EndpointID": record.get("EndpointID") or record.get("Token", ""),
                "MacAddress": record.get("MacAddress", ""),
                "IPv4Address": f"{member['ip']}/{subnet.split('/')[1]}",
                "IPv6Address": "",
            }
    return containers


def _running(store: Store, container_id: str):
    from minirun.containers.container import Containers
    from minirun.containers.liveness import is_running, refresh

    containers = Containers(store)
    try:
        container = refresh(containers, containers.load(container_id), reload=False)
    except NotFound:
        return None
    return container if is_running(container) else None
