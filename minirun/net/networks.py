"""Networks: their definitions in the store, and the host-wide address book of each bridge.

Definitions live in `<store>/networks/<id>.json`, written under the store lock: the predefined
`bridge`, `host` and `none` (made on first use, as docker has them from the start) and user
networks from `network create`, each with its own bridge (`minirun-<id>`) and subnet.

Addresses are booked per bridge in /run/minirun/bridges/<bridge>/, not in the store, because a
bridge is a host object: every store on this machine runs its containers on the one default
bridge `minirun0` (each test's private store and /var/lib/minirun alike), and address books
kept in each store could not see each other's bookings. One file per address (`10.66.0.2`),
naming the store and container that hold it, created under that directory's flock: no two
containers on a bridge, from any store, ever get the same address, also under parallel starts.
A booking whose container record is gone (a store deleted with its containers, a crash before
cleanup) is stale and reclaimed by the next allocation. `net.json` there records the bridge's
subnet and gateway, so every store uses the subnet the bridge was made with, and a bridge that
vanished is made again the same.

Subnets: chosen when a bridge is first made, under the host lock, so that they overlap neither
a route of the host nor another minirun network (even one whose bridge is down).
"""

from __future__ import annotations

import contextlib
import json
import os

from minirun import hostwide
from minirun.errors import Conflict, MinirunError, NotFound, UsageError
from minirun.net.ipv4 import (
    broadcast,
    canonical_ip,
    first_free_address,
    free_subnet,
    in_subnet,
    int_to_ip,
    ip_to_int,
    overlaps,
    parse_subnet,
)
from minirun.records import Record

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, TypedDict

    from minirun.store import Store

    class BridgeInfo(TypedDict, total=False):
        """A bridge's net.json, as read back (any key may be missing from a file on disk);
        ensure_bridge adds the device's index to what it returns."""

        subnet: str  # ADDRESS/PREFIX
        gateway: str  # the bridge's own address
        network: str  # a user network's bridge: its network's id and store ("" for the default bridge)
        store: str
        index: int

    # An address booking: the JSON of a file in an address book ({"store", "container", "name",
    # "hostname"}) and its "ip"; a plain dict, as containers/network.py writes hosts files from it
    Booking = dict[str, Any]

HOST_DIR = hostwide.RUN_DIR
DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = hostwide.DEFAULT_BRIDGE
BRIDGE_PREFIX = hostwide.BRIDGE_PREFIX  # every bridge of ours starts so: portmap's masquerade rule matches it
PREDEFINED = {"bridge": "bridge", "host": "host", "none": "null"}  # name -> driver, as docker lists them
# Neither docker's (172.17/16, 172.18-31) nor podman's (10.88/16, 10.89.x) defaults: they may run here too.
DEFAULT_SUBNETS = ("10.66.0.0/16", "10.65.0.0/16", "10.64.0.0/16")
# then a /20 of this, as docker's default-address-pools: one host may have many default bridges
# (hostwide.py: every sandbox, every test session or benchmark, has its own)
DEFAULT_FALLBACK = ("10.80.0.0/12", 20)
USER_POOL = ("10.67.0.0/16", 24)  # user networks without --subnet get the first free /24 of it
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def user_pool() -> list[tuple[int, int]]:
    return _split(*USER_POOL)


def default_pool() -> list[tuple[int, int]]:
    return [parse_subnet(s) for s in DEFAULT_SUBNETS] + _split(*DEFAULT_FALLBACK)


def _split(pool: str, prefix_length: int) -> list[tuple[int, int]]:
    """`pool` cut into subnets of `prefix_length`, lowest first."""
    base, prefix = parse_subnet(pool)
    size = 1 << (32 - prefix_length)
    return [(base + i * size, prefix_length) for i in range(1 << (prefix_length - prefix))]


# -- definitions in the store ----------------------------------------------------------------


class Network(Record):
    id: str
    name: str
    driver: str  # bridge, host, null
    created: str
    bridge: str  # the host device; "" for host and null
    subnet: str  # "" until the bridge is made (the default network takes minirun0's)
    gateway: str
    labels: dict[str, str]  # network create --label (compose marks its networks so)
    internal: bool  # network create --internal: nothing in or out past its subnet (bridge_name)
    DEFAULTS = {"bridge": "", "subnet": "", "gateway": "", "labels": dict, "internal": False}

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED


def validate_network_name(name: str) -> None:
    if not name or not name[0].isalnum() or not set(name) <= _NAME_CHARS or not name.isascii():
        raise UsageError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


class Networks:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = os.path.join(store.root, "networks")

    def _read_all(self) -> list[Network]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    found.append(Network(**json.load(f)))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def _write(self, network: Network) -> None:
        from minirun.store.fsutil import atomic_write

        os.makedirs(self.dir, exist_ok=True)
        atomic_write(
            os.path.join(self.dir, network.id + ".json"), json.dumps(network.as_dict()).encode(), durable=False
        )

    def all(self) -> list[Network]:
        """Every network, the predefined ones made on first use; sorted by name as docker lists them."""
        networks = self._read_all()
        if not {n.name for n in networks} >= PREDEFINED.keys():
            with self.store.locked():
                networks = self._read_all()
                have = {n.name for n in networks}
                for name, driver in PREDEFINED.items():
                    if name not in have:
                        network = _new_network(name, driver, DEFAULT_BRIDGE if driver == "bridge" else "")
                        self._write(network)
                        networks.append(network)
        return sorted(networks, key=lambda n: n.name)

    def find(self, text: str) -> Network:
        """By name, full id or unique id prefix (docker's order)."""
        networks = self.all()
        for network in networks:
            if network.name == text or network.id == text:
                return network
        matches = [n for n in networks if text and n.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Conflict(f"network {text} is ambiguous ({len(matches)} matches found based on ID prefix)")
        raise NotFound(f"network {text} not found")

    def create(
        self,
        name: str,
        subnet: str | None = None,
        gateway: str | None = None,
        driver: str = "bridge",
        labels: dict[str, str] | None = None,
        internal: bool = False,
    ) -> Network:
        """A user bridge network; its bridge is made now (subnet checked against the host)."""
        validate_network_name(name)
        if driver != "bridge":
            raise UsageError(f'plugin "{driver}" not found (only the bridge driver is supported)')
        wanted = parse_subnet(subnet) if subnet else None
        if gateway is not None:
            if wanted is None:
                raise UsageError("--gateway needs --subnet")
            gateway = canonical_ip(gateway)  # only the canonical form is stored and given to the kernel
            address = ip_to_int(gateway)
            if not in_subnet(address, wanted) or address in (wanted[0], broadcast(*wanted)):
                raise UsageError(f"no matching subnet for gateway {gateway}")
        self.all()  # the predefined ones first: their lock is not reentrant
        with self.store.locked():
            if any(n.name == name for n in self._read_all()):
                raise Conflict(f"network with name {name} already exists")
            network = _new_network(name, driver, "")
            network.bridge = bridge_name(network.id, internal)
            network.labels = dict(labels or {})
            network.internal = internal
            if wanted is not None:
                network.subnet = f"{int_to_ip(wanted[0])}/{wanted[1]}"
                network.gateway = gateway or int_to_ip(wanted[0] + 1)
            # the record first: a bridge on record without its network's record is debris (see
            # reclaim_stale_bridges), and another minirun may look in between
            self._write(network)
            try:
                info = ensure_bridge(network, self.store.root)
            except BaseException:
                _unlink(os.path.join(self.dir, network.id + ".json"))
                raise
            network.subnet, network.gateway = info["subnet"], info["gateway"]
            self._write(network)
        return network

    def remove(self, network: Network) -> None:
        if network.predefined:
            raise Conflict(f"{network.name} is a pre-defined network and cannot be removed")
        with self.store.locked():
            book = AddressBook(network.bridge)
            with book.locked():
                running = [m for m in book.members() if _is_running(m)]
                if running:
                    raise Conflict(
                        f"error while removing network: network {network.name} id {network.id} has active endpoints"
                    )
                remove_bridge(network.bridge)
            try:
                os.unlink(os.path.join(self.dir, network.id + ".json"))
            except FileNotFoundError:
                pass

    def prune(self, in_use: set[str]) -> list[str]:
        """Remove every user network no container names in `in_use` (by name or id); their names.
        One that turns out busy (a container just joined) stays."""
        removed = []
        for network in self.all():
            if network.predefined or network.name in in_use or network.id in in_use:
                continue
            try:
                self.remove(network)
            except Conflict:
                continue
            removed.append(network.name)
        return removed


def bridge_name(network_id: str, internal: bool) -> str:
    """A user network's bridge: PREFIX-<id>, or PREFIX.<id> for an --internal one. The walls
    know an internal bridge by its name (nftables.INTERNAL_BRIDGES), so a bridge made again (after
    a reboot, say) is walled as it was, with no list of bridges to keep in step."""
    return f"{hostwide.INTERNAL_BRIDGE_PREFIX if internal else BRIDGE_PREFIX + '-'}{network_id[:7]}"


def _new_network(name: str, driver: str, bridge: str) -> Network:
    from minirun.timestamps import rfc3339_now

    return Network(id=os.urandom(32).hex(), name=name, driver=driver, created=rfc3339_now(), bridge=bridge)


def _is_running(member: Booking) -> bool:
    from minirun.procs import is_alive

    try:
        with open(os.path.join(member["store"], "containers", member["container"], "state.json"), "rb") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False
    return state.get("Status") == "running" and is_alive(state.get("Pid", 0), state.get("PidStartTime"))


# -- bridges: the host side ------------------------------------------------------------------


def bridge_dir(bridge: str) -> str:
    return os.path.join(HOST_DIR, "bridges", bridge)


def bridge_info(bridge: str) -> BridgeInfo | None:
    try:
        with open(os.path.join(bridge_dir(bridge), "net.json"), "rb") as f:
            info: BridgeInfo = json.load(f)
            return info
    except (OSError, ValueError):
        return None


def ensure_bridge(network: Network, store_root: str) -> BridgeInfo:
    """The network's bridge exists, with its address, and is up: {"subnet", "gateway", "index"}.
    The fast path reads two small files; making a bridge (pyroute2) happens once per boot."""
    info = bridge_info(network.bridge)
    if info is not None and _hardened(network.bridge):
        try:
            with open(f"/sys/class/net/{network.bridge}/ifindex", "rb") as f:
                return {**info, "index": int(f.read())}
        except FileNotFoundError:
            pass
    from minirun.net import bridge as device  # pyroute2: ~100 ms, only here

    os.makedirs(HOST_DIR, exist_ok=True)
    from minirun.net.nftables import ensure_table
    from minirun.store.fsutil import atomic_write, flocked

    with flocked(os.path.join(HOST_DIR, "lock")):  # one maker of bridges and chooser of subnets at a time
        info = bridge_info(network.bridge)
        if not ensure_table():  # the walls before the bridge carries a container (nftables.py)
            # docker's daemon does not start without iptables: a bridge without the walls would
            # forward between networks and from other hosts into its containers
            raise MinirunError(
                "bridge networks need nftables (the nft command and nf_tables in the kernel) to keep "
                "containers off other networks and hosts: install nftables, or use --network none or host"
            )
        existing = device.address_of(network.bridge)
        if existing is not None:  # made meanwhile, or by an earlier minirun whose records were lost
            subnet, gateway = existing
            info = {**(info or {}), "subnet": f"{int_to_ip(subnet[0])}/{subnet[1]}", "gateway": gateway}
            device.set_sysctls(network.bridge)
            device.keep_mac(network.bridge, gateway)
        else:
            reclaim_stale_bridges(exclude=network.bridge)
            subnet_text = (info or {}).get("subnet") or network.subnet
            used = device.host_subnets() + registered_subnets(exclude=network.bridge)
            if subnet_text:
                subnet = parse_subnet(subnet_text)
                clash = next((u for u in used if overlaps(subnet, u)), None)
                if clash is not None:
                    raise Conflict(
                        f"Pool overlaps with other one on this address space: {subnet_text} and "
                        f"{int_to_ip(clash[0])}/{clash[1]}"
                    )
            else:
                candidates = default_pool() if network.bridge == DEFAULT_BRIDGE else user_pool()
                free = free_subnet(candidates, used)
                if free is None:
                    raise MinirunError(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults"
                    )
                subnet = free
            gateway = (info or {}).get("gateway") or network.gateway or int_to_ip(subnet[0] + 1)
            info = {"subnet": f"{int_to_ip(subnet[0])}/{subnet[1]}", "gateway": gateway}
            device.create_bridge(network.bridge, gateway, subnet[1], int_to_ip(broadcast(*subnet)))
        owned = not network.predefined  # a user network's bridge belongs to its store; minirun0 to none
        info.update({"network": network.id if owned else "", "store": store_root if owned else ""})
        os.makedirs(bridge_dir(network.bridge), exist_ok=True)
        atomic_write(os.path.join(bridge_dir(network.bridge), "net.json"), json.dumps(info).encode(), durable=False)
    with open(f"/sys/class/net/{network.bridge}/ifindex", "rb") as f:
        return {**info, "index": int(f.read())}


def _hardened(bridge: str) -> bool:
    """Whether the bridge has our sysctls, MAC and walls (bridge.set_sysctls, bridge.keep_mac,
    nftables.py): a bridge an older minirun made still takes router advertisements and IPv6, its
    MAC follows its ports, and its table may lack walls added since; all are set again at its
    next start."""
    from minirun.net import bridge as device  # (its pyroute2 loads only in what makes changes)
    from minirun.net import nftables

    if not nftables.up_to_date() or not device.has_own_mac(bridge):
        return False
    try:
        for key, value in (("accept_ra", b"0"), ("disable_ipv6", b"1")):
            with open(f"/proc/sys/net/ipv6/conf/{bridge}/{key}", "rb") as f:
                if f.read().strip() != value:
                    return False
    except FileNotFoundError:
        return True  # no such bridge (the slow path makes it), or no IPv6 in this kernel
    return True


def registered_subnets(exclude: str = "") -> list[tuple[int, int]]:
    """Subnets of every minirun bridge on record, up or not."""
    found = []
    try:
        names = os.listdir(os.path.join(HOST_DIR, "bridges"))
    except FileNotFoundError:
        return []
    for name in names:
        info = bridge_info(name) if name != exclude else None
        if info and info.get("subnet"):
            try:
                found.append(parse_subnet(info["subnet"]))
            except UsageError:
                continue
    return found


def reclaim_stale_bridges(exclude: str = "") -> None:
    """Remove user bridges whose network's record is gone (a store deleted without `network rm`,
    as a failed test's may be), so they hold neither a device nor a subnet. Under the host lock."""
    try:
        names = os.listdir(os.path.join(HOST_DIR, "bridges"))
    except FileNotFoundError:
        return
    for name in names:
        info = bridge_info(name) if name != exclude else None
        if not info or not info.get("store") or not info.get("network"):
            continue  # the default bridge belongs to no store
        if os.path.exists(os.path.join(info["store"], "networks", info["network"] + ".json")):
            continue
        remove_bridge(name)


def remove_bridge(bridge: str) -> None:
    """The device and its address book (a user network's, on `network rm`)."""
    from minirun.net import bridge as device
    from minirun.store.fsutil import remove_tree

    device.delete_bridge(bridge)
    remove_tree(bridge_dir(bridge))


# -- address books -----------------------------------------------------------------------------


class AddressBook:
    """The addresses booked on one bridge, by any store on this host."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.dir = bridge_dir(bridge)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        from minirun.store.fsutil import flocked

        os.makedirs(self.dir, exist_ok=True)
        with flocked(os.path.join(self.dir, "lock")):
            yield

    def entries(self) -> list[Booking]:
        """Every booking as recorded, stale ones too ({"ip", "store", "container", ...})."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        entries = []
        for name in names:
            if name.count(".") != 3 or not name.replace(".", "").isdigit():
                continue
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            entry["ip"] = name
            entries.append(entry)
        return entries

    def members(self) -> list[Booking]:
        """Live bookings ({"ip", "store", "container", "name", "hostname"}); call under the lock.
        Stale ones (their container record is gone) are removed on the way."""
        live = []
        for entry in self.entries():
            if os.path.exists(
                os.path.join(
                    entry.get("store", "/nonexistent"), "containers", entry.get("container", "-"), "config.json"
                )
            ):
                live.append(entry)
            else:
                _unlink(os.path.join(self.dir, entry["ip"]))
        return live

    def allocate(
        self,
        subnet: str,
        gateway: str,
        store_root: str,
        container_id: str,
        name: str,
        hostname: str,
        aliases: list[str] | None = None,
        interface: str = "eth0",
        wanted: str = "",
        links: list[list[str]] | None = None,
    ) -> str:
        """This container's address: the one it already holds, else `wanted` (connect --ip) or the
        lowest free. Under the lock. `aliases`: more names of it for its peers' /etc/hosts
        (--network-alias); `interface`: its device inside (eth0 on its first network); `links`:
        its links on this network, [name, alias] (its own /etc/hosts: containers/links.py)."""
        members = self.members()
        for entry in members:
            if entry["store"] == store_root and entry["container"] == container_id:
                held: str = entry["ip"]
                return held
        network = parse_subnet(subnet)
        taken = {ip_to_int(e["ip"]) for e in members} | {ip_to_int(gateway)}
        address: int | None
        if wanted:
            address = ip_to_int(canonical_ip(wanted))
            if not in_subnet(address, network) or address in (network[0], broadcast(*network)):
                raise UsageError(f"invalid address {wanted}: it does not belong to the network's subnet {subnet}")
            if address in taken:
                raise Conflict(f"Address already in use: {wanted} on network {subnet}")
        else:
            address = first_free_address(network, taken)
        if address is None:
            raise MinirunError(f"no available IPv4 addresses on network {subnet} (bridge {self.bridge})")
        ip = int_to_ip(address)
        record: dict[str, object] = {"store": store_root, "container": container_id, "name": name, "hostname": hostname}
        if aliases:
            record["aliases"] = aliases
        if links:
            record["links"] = links
        if interface != "eth0":  # eth0's bookings leave it out, as those from before connect did
            record["interface"] = interface
        with open(os.path.join(self.dir, ip), "x") as f:  # O_EXCL: a booking is never overwritten
            json.dump(record, f)
        return ip

    def release(self, store_root: str, container_id: str) -> bool:
        """Under the lock; True if this container held an address here."""
        released = False
        for entry in self.entries():
            if entry.get("store") == store_root and entry.get("container") == container_id:
                _unlink(os.path.join(self.dir, entry["ip"]))
                released = True
        return released


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def bridges_of(store_root: str, container_id: str) -> list[str]:
    """Every bridge on which the container holds an address, whatever its record says (a
    connect after an --rm container's monitor took its record's copy): for teardown."""
    try:
        bridges = os.listdir(os.path.join(HOST_DIR, "bridges"))
    except FileNotFoundError:
        return []
    return [
        bridge
        for bridge in bridges
        if any(
            e.get("store") == store_root and e.get("container") == container_id for e in AddressBook(bridge).entries()
        )
    ]


def publisher_path(address: str) -> str:
    """The record of the process that published ports to `address` (portmap.py's)."""
    return os.path.join(HOST_DIR, "publishers", address)


def owner_of(address: str) -> Booking | None:
    """The booking of `address` on any minirun bridge, or None."""
    try:
        bridges = os.listdir(os.path.join(HOST_DIR, "bridges"))
    except FileNotFoundError:
        return None
    for bridge in bridges:
        try:
            with open(os.path.join(bridge_dir(bridge), address), "rb") as f:
                return dict(json.load(f), ip=address, bridge=bridge)
        except (OSError, ValueError):
            continue
    return None


def is_running(member: Booking) -> bool:
    """Whether the booking's container runs now (by its state and its PID 1's start time)."""
    return _is_running(member)
