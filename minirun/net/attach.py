"""PID 1's side of a bridge network, run in launch._child with no round trip to the parent:
open_host_side() before the unshare keeps a netlink socket and an fd of the host's network
namespace (a netlink socket stays in the namespace it was opened in); attach() inside the new
namespace creates the veth pair with its other end already in the host's namespace, plugs that
end into the bridge, and gives eth0 its address and default route. The veth pair dies with the
namespace. What goes in `net` is decided before the fork by containers/network.py."""

from __future__ import annotations

import os

from minirun.errors import MinirunError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from typing import TypedDict

    from minirun.net.rtnl import Netlink

    class NetSpec(TypedDict):
        """LaunchPlan.net, made by containers/network.py's prepare()."""

        bridge: str  # the host's bridge device and its index
        bridge_index: int
        veth: str  # the host's end of the pair; eth0 inside
        address: str  # eth0's, with its prefix length and broadcast address
        prefixlen: int
        broadcast: str
        gateway: str  # the bridge's address: the default route
        mac: str


def open_host_side() -> tuple[Netlink, int]:
    """Before unshare(CLONE_NEWNET): a netlink socket and an fd of the host's network namespace."""
    from minirun.net.rtnl import Netlink

    return Netlink(), os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def attach(net: NetSpec, host_side: tuple[Netlink, int]) -> None:
    """In the container's new network namespace: eth0, its peer on the bridge, address, route."""
    import socket

    from minirun.net.rtnl import Netlink

    host, host_ns = host_side
    inside: Netlink | None = None
    try:
        inside = Netlink()
        inside.add_veth("eth0", bytes.fromhex(net["mac"].replace(":", "")), net["veth"], host_ns)
        host.set_up(net["veth"], (net["bridge_index"], net["bridge"]))
        inside.set_up("eth0")
        index = socket.if_nametoindex("eth0")
        inside.add_address(index, net["address"], net["prefixlen"], net["broadcast"], "eth0")
        inside.add_default_route(net["gateway"], index)
    except OSError as exc:
        raise MinirunError(f"container network: {exc.strerror or exc}") from None
    finally:
        for sock in (host, inside):
            if sock is not None:
                sock.close()
        os.close(host_ns)
