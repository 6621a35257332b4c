"""Bridge devices on the host, through pyroute2: made once per boot (or per `network create`),
so its ~100 ms import never lands on an ordinary start (see rtnl.py for the per-start steps).

Forwarding and route_localnet are switched on for our bridges alone (per-interface sysctls):
forwarding lets a container's packets be routed beyond the bridge; route_localnet lets a port
published on 127.0.0.1 be DNATed to a container (portmap.py); nftables.py's walls, without which
no bridge is made (networks.ensure_bridge), keep containers from the host's loopback. IPv6 router
advertisements are refused on them, as docker refuses them on its bridges (CVE-2020-13401): a
container's root given CAP_NET_RAW (docker's default, not ours) could forge one, and it would
become a default route of the host's through that container (the host's end of a container's veth
pair, a port, has its IPv6 off for the same reason: net/attach.py). IPv6 is off on them altogether
(disable_ipv6): minirun gives containers IPv4 alone and its walls (nftables.py) are IPv4's, so a
host that forwards IPv6 forwarded what a container sent the bridge (an address and a route it
gave itself, or a frame of any source made with CAP_NET_RAW) past every wall, --internal's too.
The containers on a bridge still reach each other's link-local addresses: that is switching.
A bridge's MAC is set when it is made (bridge_mac), as docker sets its bridges': one left to the
kernel follows the lowest MAC among its ports, so it changed as containers came and went, and
every container on it sent to a MAC nobody had any more until it asked again (ARP).
No other host interface is touched.
"""

from __future__ import annotations

import socket

from minirun.errors import MinirunError

TYPE_CHECKING = False  # not typing's, as in the rest of net/; pyroute2 itself loads only on use
if TYPE_CHECKING:
    from pyroute2 import IPRoute  # no type information: mypy sees Any (see pyproject.toml)


def _ipr() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def create_bridge(name: str, gateway: str, prefixlen: int, broadcast: str) -> None:
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=bridge_mac(gateway))
        except NetlinkError as exc:
            if exc.code != 17:  # EEXIST: a bridge of ours without its address (address_of said so)
                raise MinirunError(f"create bridge {name}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
        try:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen, broadcast=broadcast)
            set_sysctls(name)
            ipr.link("set", index=index, state="up")
        except BaseException as exc:
            try:
                ipr.link("del", ifname=name)
            except NetlinkError:
                pass
            if isinstance(exc, NetlinkError):
                raise MinirunError(f"set up bridge {name}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
            raise


def bridge_mac(gateway: str) -> str:
    """The bridge's own MAC: its address's, by the scheme of containers' (ipv4.mac_for), and so
    never one of theirs: the gateway is never a container's address."""
    from minirun.net.ipv4 import mac_for

    return mac_for(gateway)


def has_own_mac(name: str) -> bool:
    """Whether the bridge's MAC was set by hand (addr_assign_type NET_ADDR_SET), so that the
    kernel keeps it; True for no such device (nothing to set)."""
    try:
        with open(f"/sys/class/net/{name}/addr_assign_type", "rb") as f:
            return f.read().strip() == b"3"
    except FileNotFoundError:
        return True


def keep_mac(name: str, gateway: str) -> None:
    """An existing bridge (an earlier minirun's, whose MAC the kernel chose) gets its own."""
    if not has_own_mac(name):
        with _ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], address=bridge_mac(gateway))


def set_sysctls(name: str) -> None:
    """Our sysctls of a bridge (see above), on a new one or one an earlier minirun made."""
    settings = {"ipv4/conf": {"forwarding": "1", "route_localnet": "1"}}
    settings["ipv6/conf"] = {"accept_ra": "0", "disable_ipv6": "1"}
    for family, values in settings.items():
        for key, value in values.items():
            try:
                with open(f"/proc/sys/net/{family}/{name}/{key}", "w") as f:
                    f.write(value)
            except FileNotFoundError:
                if family == "ipv4/conf":
                    raise  # (a kernel without IPv6 has no ipv6/conf)


def delete_bridge(name: str) -> None:
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code != 19:  # ENODEV: already gone
                raise MinirunError(f"delete bridge {name}: {exc.args[1] if len(exc.args) > 1 else exc}") from None


def address_of(name: str) -> tuple[tuple[int, int], str] | None:
    """((network, prefix), gateway) of an existing bridge's first IPv4 address; None if there is
    no such bridge. A device of that name that is not a bridge is an error."""
    from minirun.net.ipv4 import ip_to_int, mask

    with _ipr() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return None
        link = ipr.get_links(indexes[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind != "bridge":
            raise MinirunError(
                f"{name} exists on the host and is not a bridge ({kind or 'no kind'}): minirun will not use it"
            )
        for addr in ipr.get_addr(family=socket.AF_INET, index=indexes[0]):
            address, prefix = addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]
            return (ip_to_int(address) & mask(prefix), prefix), address
        return None


def host_subnets() -> list[tuple[int, int]]:
    """Destinations of the host's IPv4 routes, every table, the default route left out."""
    from minirun.net.ipv4 import ip_to_int

    found: list[tuple[int, int]] = []
    with _ipr() as ipr:
        for route in ipr.get_routes(family=socket.AF_INET):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] > 0:
                found.append((ip_to_int(dst), route["dst_len"]))
    return found


def link_names() -> list[str]:
    """Every network device of the host (tests check that no veth outlives its container)."""
    with _ipr() as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
