"""A container's network, around the one fork of launch.py.

Before the fork, in PID 1's parent (the CLI for `run`, the monitor for `run -d` and `start`):
prepare() books the container's address on its network's bridge, writes /etc/hosts (and its
peers' on a user network), publishes its ports, records NetworkSettings in state.json and puts
what PID 1 needs into the plan. `container:NAME` only names the namespace to join.

In PID 1, net/attach.py makes eth0 from what prepare() put in the plan.

A `network connect`/`disconnect` that moves a running container's default route moves its ports
with it (publish_on_route, from netconnect.py): the record then names other ports than those of
the start. So the exit works from what the record holds when PID 1 has exited (recorded_settings,
read by the monitor's log copier and by a foreground run before they write the exit), and the
start's copy is only the fallback of a record that is gone.

When PID 1 has exited: stopped() removes the published ports (the DNAT elements, or the proxy).
On rm: release() gives the address back and updates the peers' /etc/hosts. Nothing here imports
pyroute2 unless a bridge must be made (networks.ensure_bridge); nothing here runs for --network none.
"""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.errors import Conflict, MinirunError, NotFound
from minirun.hostwide import DEFAULT_BRIDGE, VETH_PREFIX


def wanted_networks(config) -> list[dict]:
    """The networks the container is to be on, in order, each {"name", "aliases", "ip"} (ip:
    connect --ip's, "" for any): the first is eth0's. A record from before `network connect`
    has none of its own: its --network (and --network-alias) then."""
    if config.networks is not None:
        return config.networks
    mode = config.network
    if mode in ("none", "host") or mode.startswith("container:"):
        return []
    entry = {"name": mode, "aliases": list(config.network_aliases), "ip": ""}
    return [{**entry, "links": list(config.links)} if config.links else entry]


def interface_order(name: str) -> int:
    """eth2 before eth10."""
    return int(name[3:]) if name[3:].isdigit() else 0


def prepare(store, container, plan) -> None:
    mode = container.config.network
    if mode in ("none", "host"):
        return
    if mode.startswith("container:"):
        _join(store, container, plan, mode.split(":", 1)[1])
        return
    from minirun.containers.container import Containers
    from minirun.net.networks import Networks

    networks = Networks(store)
    found = [(networks.find(w["name"]), w) for w in wanted_networks(container.config)]
    found = [(n, w) for n, w in found if n.driver == "bridge"]  # `host`/`none` named by id
    # eth0 carries the default route and the published ports: an internal network gives neither,
    # so the first network that can is eth0, as docker routes and publishes through the first
    # endpoint with a gateway (compose's `internal: true` backend beside a frontend, say)
    found.sort(key=lambda item: item[0].internal)
    containers = Containers(store)
    if not found:  # disconnected from every network: lo only, as docker leaves it
        containers.update_state(container, NetworkSettings={})
        return
    legacy = [w["links"] for n, w in found if n.bridge == DEFAULT_BRIDGE and w.get("links")]
    if legacy:  # docker's link variables, fixed at this start (before anything is booked: a stopped one is an error)
        plan.env = _linked_env(store, container, plan, legacy[0])
    specs = [book_address(store, container, network, wanted, f"eth{i}") for i, (network, wanted) in enumerate(found)]
    write_hosts_of(store.root, container.id, [network.bridge for network, _ in found])
    for network, _ in found:
        from minirun.net.networks import AddressBook

        if network.bridge != DEFAULT_BRIDGE:
            write_hosts(AddressBook(network.bridge), True, skip=(store.root, container.id))
        else:  # legacy links to it: their lines follow its address
            write_linkers(AddressBook(network.bridge), skip=(store.root, container.id))
    first = specs[0]
    settings = {
        "Network": found[0][0].name,
        "NetworkID": found[0][0].id,
        "Bridge": first["bridge"],
        "Veth": first["veth"],
        "IPAddress": first["address"],
        "IPPrefixLen": first["prefixlen"],
        "Gateway": first["gateway"],
        "MacAddress": first["mac"],
        "Ports": [],
        # a new one per start: the exit of an older run never removes this run's ports
        "Token": os.urandom(8).hex(),
        "Attachments": [attachment_record(n, w, spec) for (n, w), spec in zip(found[1:], specs[1:])],
    }
    containers.update_state(container, NetworkSettings=settings)
    for network, _ in found:
        connected_event(store.root, container.id, network)
    ports = published_bindings(container.config)
    if ports and not found[0][0].internal:  # docker publishes nothing on an internal network
        from minirun.net import portmap

        # nftables or the proxy
        settings["Ports"], backend = portmap.publish_ports(ports, first["address"], proxy_cgroup=proxy_cgroup)
        settings.update(backend)
        containers.update_state(container, NetworkSettings=settings)
    plan.net = {
        "bridge": first["bridge"],
        "bridge_index": first["bridge_index"],
        "veth": first["veth"],
        "address": first["address"],
        "prefixlen": first["prefixlen"],
        "broadcast": first["broadcast"],
        "gateway": first["gateway"],
        "mac": first["mac"],
        "extra": [{k: v for k, v in spec.items() if k != "gateway"} for spec in specs[1:]],
    }


def proxy_cgroup() -> str | None:
    """The cgroup every port proxy of this minirun joins (portproxy.py), its pids.max what they
    may take of the host's tasks together: with each proxy's own budget alone, eight flooded
    proxies took them all. None where it cannot be made: each proxy's own budget still holds."""
    from minirun.net.portproxy import shared_budget
    from minirun.runtime import cgroups

    return cgroups.shared_task_limit(cgroups.PROXIES, shared_budget())


def published_bindings(config) -> list[list]:
    """What the container publishes on the network of its default route: -p's bindings, and with
    -P one for every exposed port -p does not publish (host port 0: picked when published)."""
    ports = config.ports
    if config.publish_all:
        from minirun.containers.exposedports import publish_all_bindings

        ports = ports + publish_all_bindings(config.exposed_ports, ports)
    return ports


def publish_on_route(container, settings: dict, holder: dict) -> None:
    """Running `container`'s default route goes through `holder`'s network now (`holder`: a record
    of its NetworkSettings `settings`, whose ports lead nowhere now): its ports are published to
    that address, as docker publishes them on its new gateway endpoint, and `settings` say so (for
    the caller to record). Host ports 0 get a new pick, as docker's do. Raises Conflict for a host
    port taken now."""
    ports = published_bindings(container.config)
    if not ports:
        return
    from minirun.net import portmap

    pid1 = (container.state["Pid"], container.state.get("PidStartTime"))
    settings["Ports"], backend = portmap.publish_ports(ports, holder["IPAddress"], pid1, proxy_cgroup)
    settings.update(backend)


def connected_event(store_root: str, container_id: str, network) -> None:
    """docker's `network connect` event: at each start for every network, and at a connect."""
    from minirun import events

    attributes = {"container": container_id, "name": network.name, "type": "bridge"}
    events.record(store_root, "network", "connect", network.id, attributes)


def book_address(store, container, network, wanted: dict, ifname: str) -> dict:
    """The container's address on `network` (booked now, or the one it holds): an interface
    spec for net/attach.py, with its network's gateway."""
    from minirun.net.ipv4 import broadcast, int_to_ip, mac_for, parse_subnet
    from minirun.net.networks import AddressBook, ensure_bridge, publisher_path

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
            wanted.get("aliases") or [],
            ifname,
            wanted.get("ip") or "",
            wanted.get("links") or [],
        )
    if os.path.exists(publisher_path(address)):
        # the address is this container's alone now: ports still leading to it are debris (a
        # container whose monitor was killed and whose record went with its store), and would
        # hand this one host ports it never published
        from minirun.net.portmap import unpublish

        unpublish(address)
    subnet = parse_subnet(info["subnet"])
    return {
        "bridge": network.bridge,
        "bridge_index": info["index"],
        "veth": VETH_PREFIX + os.urandom(4).hex()[:7],  # the host's end: the walls know it by name
        "ifname": ifname,
        "address": address,
        "prefixlen": subnet[1],
        "broadcast": int_to_ip(broadcast(*subnet)),
        # an internal network is no way out: no default route through it, as docker's bridge
        # driver gives its endpoints no gateway (the bridge keeps its address: the host is reachable)
        "gateway": "" if network.internal else info["gateway"],
        "mac": mac_for(address),
    }


def attachment_record(network, wanted: dict, spec: dict) -> dict:
    """NetworkSettings' record of an interface past eth0 (its "Attachments")."""
    return {
        "Network": network.name,
        "NetworkID": network.id,
        "Bridge": spec["bridge"],
        "Veth": spec["veth"],
        "Interface": spec["ifname"],
        "IPAddress": spec["address"],
        "IPPrefixLen": spec["prefixlen"],
        "Gateway": spec["gateway"],
        "MacAddress": spec["mac"],
        "EndpointID": os.urandom(8).hex(),
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
            with open(open_provided(other.provided_file(name), os.O_RDONLY), "rb") as f:
                data = f.read(PROVIDED_LIMIT + 1)
        except (FileNotFoundError, BlockingIOError):  # BlockingIOError: under the other's lease
            continue
        if len(data) > PROVIDED_LIMIT:
            raise MinirunError(f"the /etc/{name} of container {other.id[:12]} is over {PROVIDED_LIMIT} bytes")
        write_in_place(container.provided_file(name), data)


# bytes of another container's hosts or resolv.conf taken over, at most: that container writes
# them, and one made a sparse giant filled this process's memory and the joiner's file on disk
PROVIDED_LIMIT = 1 << 20


def hosts_text(own: dict, peers: list[dict], extra: str = "", linked: str = "") -> str:
    """docker's /etc/hosts with the --add-host lines (`extra`), the lines of its links (`linked`:
    before the peers', as docker's DNS answers a link's alias first), the container's own line
    (address, hostname, name, aliases) and one per peer on a user network (address, name,
    aliases: the names docker's embedded DNS answers for it there)."""
    from minirun.containers.container import HOSTS_BASE

    names = [own.get("hostname") or "", own.get("name") or "", *own.get("aliases", ())]
    lines = [HOSTS_BASE, extra, linked, own["ip"] + "\t" + " ".join(dict.fromkeys(n for n in names if n)) + "\n"]
    for peer in sorted(peers, key=lambda p: p.get("name") or ""):
        if peer.get("name"):
            peer_names = " ".join(dict.fromkeys([peer["name"], *peer.get("aliases", ())]))
            lines.append(f"{peer['ip']}\t{peer_names}\n")
    return "".join(lines)


def write_hosts(book, resolve_peers: bool, skip: tuple = ()) -> None:
    """Rewrite /etc/hosts of the containers booked on `book` (a user network's, when
    `resolve_peers`): every member's but `skip`'s (store, id), each from all its networks."""
    if not resolve_peers:
        return
    with book.locked():
        members = book.members()  # stale bookings go on the way
    for member in members:
        if (member["store"], member["container"]) != skip:
            write_hosts_of(member["store"], member["container"])


def _linked_env(store, container, plan, links: list[list[str]]) -> list[str]:
    from minirun.containers.links import start_env, with_env

    return with_env(start_env(store, container, links), plan.env)


def write_linkers(book, skip: tuple = ()) -> None:
    """Rewrite /etc/hosts of the default bridge's members with legacy links (a linked container
    came or went): docker keeps their lines on its address."""
    with book.locked():
        members = book.members()
    for member in members:
        if member.get("links") and (member["store"], member["container"]) != skip:
            write_hosts_of(member["store"], member["container"])


def write_hosts_of(store_root: str, container_id: str, bridges: list[str] | None = None) -> None:
    """One container's /etc/hosts from its bookings on every bridge it is on (`bridges`, else
    found): its own line by its first interface's address, a line per peer on its user networks.
    Under a flock of the container's dir, the bookings read inside it: of two writers (a peer's
    start on one network, another's on a second) the later one reads what both made. Not of the
    file itself: it is bound into the container, whose flock on its /etc/hosts held every start
    and stop of a peer on its networks waiting for good."""
    import fcntl

    from minirun.net.networks import AddressBook, bridges_of

    directory = os.path.join(store_root, "containers", container_id)
    path = os.path.join(directory, "hosts")
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # removed meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if bridges is None:
            bridges = bridges_of(store_root, container_id)

        def ours(entry: dict) -> bool:
            return entry.get("store") == store_root and entry.get("container") == container_id

        books = {bridge: _live(AddressBook(bridge).entries()) for bridge in bridges}
        own = [(e.get("interface", "eth0"), bridge, e) for bridge, members in books.items() for e in members if ours(e)]
        if not own:
            return
        _, own_bridge, own_entry = min(own, key=lambda item: interface_order(item[0]))
        peers = [e for b, members in books.items() if b != DEFAULT_BRIDGE for e in members if not ours(e)]
        linked = ""
        for _, bridge, entry in own:
            if entry.get("links"):
                from minirun.containers.links import hosts_lines

                # the default bridge's book is the host's, every store's: a link names a container of this one
                others = [e for e in books[bridge] if not ours(e) and e.get("store") == store_root]
                linked += hosts_lines(entry["links"], others, legacy=bridge == DEFAULT_BRIDGE)
        text = hosts_text(own_entry, peers, _extra_hosts(own_bridge, own_entry), linked)
        write_in_place(path, text.encode())
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _live(entries: list[dict]) -> list[dict]:
    """Bookings whose container's record exists (read without the book's lock)."""
    return [
        e
        for e in entries
        if os.path.exists(
            os.path.join(e.get("store", "/nonexistent"), "containers", e.get("container", "-"), "config.json")
        )
    ]


def _extra_hosts(bridge: str, member: dict) -> str:
    """A member's --add-host lines, host-gateway being its bridge's address."""
    from minirun.containers.dnsfiles import extra_hosts_text, recorded_extra_hosts

    extra = recorded_extra_hosts(member["store"], member["container"])
    if not extra:
        return ""
    from minirun.net.networks import bridge_info

    return extra_hosts_text(extra, (bridge_info(bridge) or {}).get("gateway", ""))


def write_in_place(path: str, data: bytes) -> bool:
    """Overwrite a provided file keeping its inode: it is bind-mounted into a running container,
    and a rename would leave the container looking at the old file. Opened without waiting: the
    container's root owns the file, so it may hold a lease on it (fcntl F_SETLEASE), which made
    every opener wait the kernel's lease-break-time (45 s), for each peer's start and stop, again
    and again. A file under a lease is left as it is (False): its holder keeps a stale file.

    The container may read it at any moment: a file that already says `data` is not written (every
    start and stop on a network rewrites its members' files, mostly to what they say), and a new
    text goes over the old before the file is cut to its length, never truncating it first, which
    showed a reader an empty /etc/hosts between the two calls."""
    try:
        fd = open_provided(path, os.O_RDWR)
    except BlockingIOError:
        return False
    try:
        if os.pread(fd, len(data) + 1, 0) == data:
            return True
        offset = 0
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True


def open_provided(path: str, flags: int) -> int:
    """A container's provided file (hosts, resolv.conf) open without waiting on a lease its
    container holds: BlockingIOError then (the kernel has asked the holder to let go)."""
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)


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
            # removed (an --rm container's record goes before this runs): its booking went
            # stale, and a start may have booked the address and published its own ports to it
            from minirun.net.networks import owner_of

            owner = owner_of(portmap.published_address(settings)) or {}
            return owner.get("store", store_root) == store_root and owner.get("container", container_id) == container_id
        return (state.get("NetworkSettings") or {}).get("Token") == settings.get("Token")

    portmap.unpublish_ports(settings, still_ours)


def release(store_root: str, container_id: str, settings: dict | None) -> None:
    """On rm: published ports, the address bookings on every bridge (those its record knows
    and any a connect made after that record was read), the peers' hosts lines. Idempotent."""
    if not settings:
        return
    from minirun.net.networks import AddressBook, bridges_of

    if settings.get("Ports"):
        from minirun.net import portmap

        portmap.unpublish_ports(settings)  # the address is still ours: so are these
    for bridge in bridges_of(store_root, container_id):
        book = AddressBook(bridge)
        with book.locked():
            released = book.release(store_root, container_id)
        if released and bridge != DEFAULT_BRIDGE:
            write_hosts(book, resolve_peers=True)
        elif released:
            write_linkers(book)
        if released:
            _disconnected_event(store_root, container_id, settings, bridge)


def _disconnected_event(store_root: str, container_id: str, settings: dict, bridge: str) -> None:
    from minirun import events

    records = [settings, *settings.get("Attachments", ())]
    record = next((r for r in records if r.get("Bridge") == bridge), None)
    if record is None:  # connected after `settings` was read: the bridge knows its network
        from minirun.net.networks import bridge_info

        record = {"NetworkID": (bridge_info(bridge) or {}).get("network", ""), "Network": ""}
    attributes = {"container": container_id, "name": record.get("Network", ""), "type": "bridge"}
    events.record(store_root, "network", "disconnect", record.get("NetworkID", ""), attributes)


def after_exit(
    store_root: str, container_id: str, settings_text: str, auto_remove: str, current: dict | None = None
) -> None:
    """The monitor's last step, once its log copier has recorded the exit (and removed an --rm
    container): a headless process, so failures are dropped rather than raised. `current`: the
    NetworkSettings the record held at the exit (recorded_settings), else those of the start
    (`settings_text`): a connect or disconnect since may have moved the ports to another address."""
    try:
        settings = current if current is not None else leanjson.loads(settings_text)
        stopped(store_root, container_id, settings)
        if auto_remove == "1":
            release(store_root, container_id, settings)
    except Exception:
        pass


def exit_hook_args(store_root: str, container) -> list[str]:
    """Arguments for after_exit, or [] when this container leaves nothing to undo at its exit: a
    container with ports to publish may have them published after its start (publish_on_route)."""
    config = container.config
    if not (published_bindings(config) or config.auto_remove):
        return []
    settings = container.state.get("NetworkSettings") or {}
    return [store_root, container.id, leanjson.dumps(settings), "1" if config.auto_remove else "0"]


def recorded_settings(container_dir: str) -> dict | None:
    """The NetworkSettings state.json holds now (None: unreadable), for the exit of a run whose
    own copy dates from its start."""
    try:
        with open(os.path.join(container_dir, "state.json"), "rb") as f:
            settings = leanjson.load(f).get("NetworkSettings")
    except (OSError, ValueError, AttributeError):
        return None
    return settings if isinstance(settings, dict) else None


# -- what inspect and ps show --------------------------------------------------------------------


def published(container) -> list[list]:
    """The ports published now: only while the container runs, as docker shows them."""
    settings = container.state.get("NetworkSettings") or {}
    return settings.get("Ports") or [] if container.state.get("Status") == "running" else []


def network_aliases(container, aliases: list[str] | None = None) -> list[str]:
    """inspect's Aliases on a user network: --network-alias (or connect --alias), then its short
    id, as docker's daemon adds it (compose reads that one to know a container is connected).
    The peers' /etc/hosts name it by the --network-alias ones (the short id is its own hostname
    already)."""
    given = container.config.network_aliases if aliases is None else aliases
    return list(dict.fromkeys([*given, container.id[:12]]))


def _endpoint(network_id: str) -> dict:
    return {
        "IPAMConfig": None,
        "Links": None,
        "Aliases": None,
        "NetworkID": network_id,
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


def endpoints(container) -> dict[str, dict]:
    """inspect's NetworkSettings.Networks: every network the container is on (or is to be on,
    until it starts), each with its own address while it runs."""
    settings = container.state.get("NetworkSettings") or {}
    mode = container.config.network
    if mode.startswith("container:"):
        return {}
    running = container.state.get("Status") == "running"
    records = [settings, *settings.get("Attachments", ())] if settings.get("IPAddress") else []
    wanted = wanted_networks(container.config)
    if not wanted and mode in ("none", "host"):
        return {mode: _endpoint("")}
    shown = {}
    for entry in wanted:
        name = entry["name"]
        record = next((r for r in records if name in (r.get("Network"), r.get("NetworkID"))), None)
        if record is None:  # --network given by an id prefix
            record = next((r for r in records if name and r.get("NetworkID", "").startswith(name)), None)
        endpoint = _endpoint(record.get("NetworkID", "") if record else "")
        if record is not None and running:
            endpoint.update(
                EndpointID=record.get("EndpointID") or record.get("Token", ""),
                Gateway=record["Gateway"],
                IPAddress=record["IPAddress"],
                IPPrefixLen=record["IPPrefixLen"],
                MacAddress=record["MacAddress"],
            )
        if entry.get("ip"):
            endpoint["IPAMConfig"] = {"IPv4Address": entry["ip"]}
        if name not in ("bridge", "none", "host"):
            endpoint["Aliases"] = network_aliases(container, entry.get("aliases") or [])
            if entry.get("links"):  # docker shows a user network's links as given, NAME:ALIAS
                endpoint["Links"] = [f"{n}:{a}" for n, a in entry["links"]]
        shown[record.get("Network", name) if record else name] = endpoint
    return shown


def inspect_settings(container) -> dict:
    """docker inspect's NetworkSettings. The top-level address fields are filled for the default
    bridge network only, as docker fills them; every network's are under Networks."""
    from minirun.net.portmap import inspect_ports

    settings = container.state.get("NetworkSettings") or {}
    running = container.state.get("Status") == "running"
    networks = endpoints(container)
    default = networks.get("bridge") if settings.get("Network", container.config.network) == "bridge" else None
    top = {
        key: (default[key] if default else ("" if key != "IPPrefixLen" else 0))
        for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")
    }
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
