"""A container's side of its bridge networks. At start, in PID 1 (launch._child) with no round
trip to the parent: open_host_side() before the unshare keeps a netlink socket and an fd of the
host's network namespace (a netlink socket stays in the namespace it was opened in); attach()
inside the new namespace creates each veth pair with its other end already in the host's
namespace, plugs that end into its bridge, gives the inner end (eth0, then eth1... for the
networks it was connected to) its address, and eth0 the default route: the other networks are
reached by their subnet's route only, as docker routes them. The pairs die with the namespace.

On a running container, `network connect` plugs one more pair the same way from a thread that
steps into the container's namespace (setns(2) moves only the calling thread), and `disconnect`
deletes the host's end (its peer goes with it). What goes in a spec is decided by
containers/network.py."""

from __future__ import annotations

import os

from minirun.errors import MinirunError

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    from typing import TypedDict

    from minirun.net.rtnl import Netlink

    class InterfaceSpec(TypedDict):
        """One interface of the container on one bridge, made by containers/network.py."""

        bridge: str  # the host's bridge device and its index
        bridge_index: int
        veth: str  # the host's end of the pair
        ifname: str  # the container's end: eth0, eth1...
        address: str  # its address, with its prefix length and broadcast address
        prefixlen: int
        broadcast: str
        mac: str

    class NetSpec(TypedDict):
        """LaunchPlan.net, made by containers/network.py's prepare(): eth0 and its route, then
        the interfaces on the networks it was connected to."""

        bridge: str
        bridge_index: int
        veth: str
        address: str
        prefixlen: int
        broadcast: str
        gateway: str  # eth0's bridge's address: the default route ("" on an internal network)
        mac: str
        extra: list[InterfaceSpec]


def open_host_side() -> tuple[Netlink, int]:
    """Before unshare(CLONE_NEWNET): a netlink socket and an fd of the host's network namespace."""
    from minirun.net.rtnl import Netlink

    return Netlink(), os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def attach(net: NetSpec, host_side: tuple[Netlink, int]) -> None:
    """In the container's new network namespace: eth0 and the others, their peers on their
    bridges, addresses, eth0's default route."""
    from minirun.net.rtnl import Netlink

    host, host_ns = host_side
    inside: Netlink | None = None
    try:
        inside = Netlink()
        index = _plug(host, host_ns, inside, net, "eth0")
        if net["gateway"]:  # none on an internal network
            inside.add_default_route(net["gateway"], index)
        for spec in net.get("extra", ()):
            _plug(host, host_ns, inside, spec, spec["ifname"])
    except OSError as exc:
        raise MinirunError(f"container network: {exc.strerror or exc}") from None
    finally:
        for sock in (host, inside):
            if sock is not None:
                sock.close()
        os.close(host_ns)


def _plug(host: Netlink, host_ns: int, inside: Netlink, spec: InterfaceSpec | NetSpec, ifname: str) -> int:
    """One veth pair: `ifname` here (the calling thread's namespace), its peer on the bridge;
    the interface's index."""
    import socket

    inside.add_veth(ifname, bytes.fromhex(spec["mac"].replace(":", "")), spec["veth"], host_ns)
    _refuse_router_advertisements(ifname)
    _no_ipv6_on_host_end(spec["veth"], host_ns)
    host.set_up(spec["veth"], (spec["bridge_index"], spec["bridge"]))
    inside.set_up(ifname)
    index = socket.if_nametoindex(ifname)
    inside.add_address(index, spec["address"], spec["prefixlen"], spec["broadcast"], ifname)
    return index


def _refuse_router_advertisements(ifname: str) -> None:
    """Before the interface is up: a forged IPv6 router advertisement from another container on
    the bridge (a root given CAP_NET_RAW, docker's default) must not become this one's default
    route. /proc/sys/net is the calling thread's network namespace's."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/accept_ra", "w") as f:
            f.write("0")
    except FileNotFoundError:
        pass  # no IPv6 in this kernel


def _no_ipv6_on_host_end(veth: str, host_ns: int) -> None:
    """Before the pair is up: the host's end is a port of its bridge and needs no IPv6, which
    took what a port hands its own stack, frames sent to a link-local group MAC (nftables.py):
    a router advertisement sent so by a container's root with CAP_NET_RAW (docker's default)
    gave the host a default route through that container (CVE-2020-13401, past the bridge's
    refusal: bridge.py). The sysctl is the host's network namespace's: this thread steps there
    and back."""
    from minirun import linux

    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(host_ns, linux.CLONE_NEWNET)
        try:
            with open(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "w") as f:
                f.write("1")
        except FileNotFoundError:
            pass  # no IPv6 in this kernel
        finally:
            linux.setns(here, linux.CLONE_NEWNET)
    finally:
        os.close(here)


def plug_running(pid: int, spec: InterfaceSpec, gateway: str = "") -> None:
    """`network connect` on a running container: `spec`'s interface in PID 1's namespace (with
    the default route through `gateway`, if given: the container had no network left)."""
    host, host_ns = open_host_side()
    try:
        with _inside(pid, "cannot connect a container that is no longer running") as inside:
            index = _plug(host, host_ns, inside, spec, spec["ifname"])
            if gateway:
                inside.add_default_route(gateway, index)
    except OSError as exc:
        try:  # a pair half made goes: its host end takes the peer with it
            host.delete_link(spec["veth"])
        except OSError:
            pass
        raise MinirunError(f"container network: {exc.strerror or exc}") from None
    finally:
        host.close()
        os.close(host_ns)


def route_through(pid: int, gateway: str, ifname: str) -> None:
    """The default route of a running container through `gateway` on `ifname`: the network that
    carried it was disconnected, and the next one takes it over (as docker moves its gateway).
    None when `gateway` is "": the next one is an internal network."""
    import socket

    if not gateway:
        return

    try:
        with _inside(pid, "exited") as inside:
            inside.add_default_route(gateway, socket.if_nametoindex(ifname))
    except MinirunError:
        pass  # exited meanwhile: nothing left to route
    except OSError as exc:
        raise MinirunError(f"container network: {exc.strerror or exc}") from None


class _inside:  # noqa: N801  (used as a function: `with _inside(pid, ...) as netlink`)
    """This thread in PID 1's network namespace, with a netlink socket there, for the `with`
    block; then back in the host's. A container gone already is MinirunError(`gone`)."""

    def __init__(self, pid: int, gone: str) -> None:
        try:
            self.target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise MinirunError(gone) from None

    def __enter__(self) -> Netlink:
        from minirun import linux
        from minirun.net.rtnl import Netlink

        self.host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(self.target, linux.CLONE_NEWNET)
            try:
                self.netlink = Netlink()
            except BaseException:
                linux.setns(self.host_ns, linux.CLONE_NEWNET)
                raise
        except BaseException:
            self._close()
            raise
        return self.netlink

    def __exit__(self, *exc: object) -> None:
        from minirun import linux

        try:
            self.netlink.close()
            linux.setns(self.host_ns, linux.CLONE_NEWNET)  # this thread goes back to the host's
        finally:
            self._close()

    def _close(self) -> None:
        os.close(self.host_ns)
        os.close(self.target)


def unplug(veth: str) -> None:
    """`network disconnect` on a running container: the host's end of the pair goes, and the
    container's interface with it. Gone already (the container exited meanwhile) is fine."""
    import errno

    from minirun.net.rtnl import Netlink

    host = Netlink()
    try:
        host.delete_link(veth)
    except OSError as exc:
        if exc.errno != errno.ENODEV:
            raise MinirunError(f"container network: {exc.strerror or exc}") from None
    finally:
        host.close()
