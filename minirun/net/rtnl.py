"""The few rtnetlink requests a container start (veth pair, address, default route) and a
`network connect`/`disconnect` (the same, a link deleted) need, by hand on an AF_NETLINK socket.

Why not pyroute2, the project's netlink library: every module of it imports the whole package
first, ~100 ms here (`-X importtime`, pyroute2 0.9.7), and the issue allows --network bridge
30 ms on top of a start. pyroute2 stays for the rare, slow-path work (creating and removing
bridges, reading the host's routes: networks.py). This module loads only socket and struct,
which the start path has anyway.

Each request asks for an ACK and raises OSError(errno, "<what>: <strerror>") on a NACK.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLA_F_NESTED = 0x8000
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_HEADER = struct.Struct("=LHHLL")  # struct nlmsghdr


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def name_attr(name: str) -> bytes:
    return attr(IFLA_IFNAME, name.encode() + b"\0")


class Netlink:
    """A NETLINK_ROUTE socket (or another netlink `protocol`'s). It stays bound to the network
    namespace it was opened in, even after its owner moves to another: that is how PID 1 reaches
    the host's bridge from inside its own namespace."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        self.seq += 1
        self.sock.send(
            _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0) + body
        )
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, _, seq, _ = _HEADER.unpack_from(data, offset)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    error = struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    if error:
                        raise OSError(-error, f"{what}: {os.strerror(-error)}")
                    return
                offset += max(length + (-length % 4), _HEADER.size)

    def add_veth(self, name: str, mac: bytes, peer_name: str, peer_netns_fd: int) -> None:
        """`name` (with `mac`) here, its peer `peer_name` in the namespace of `peer_netns_fd`; both
        down (veth refuses IFF_UP at creation: the pair is linked only after both ends exist)."""
        peer = ifinfomsg() + name_attr(peer_name) + attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        data = attr(VETH_INFO_PEER | NLA_F_NESTED, peer)
        info = attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA | NLA_F_NESTED, data)
        body = ifinfomsg() + name_attr(name) + attr(IFLA_ADDRESS, mac) + attr(IFLA_LINKINFO | NLA_F_NESTED, info)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth pair {name}/{peer_name}")

    def delete_link(self, name: str) -> None:
        """`ip link del NAME` (a veth's peer goes with it)."""
        self.request(RTM_DELLINK, 0, ifinfomsg() + name_attr(name), f"delete {name}")

    def set_up(self, name: str, master: tuple[int, str] | None = None) -> None:
        """`ip link set NAME [master BRIDGE] up`; master is (index, name)."""
        body = ifinfomsg(flags=IFF_UP, change=IFF_UP) + name_attr(name)
        if master is not None:
            body += attr(IFLA_MASTER, struct.pack("=I", master[0]))
        self.request(RTM_NEWLINK, 0, body, f"set {name} up" + (f" in bridge {master[1]}" if master else ""))

    def add_address(self, index: int, address: str, prefixlen: int, broadcast: str, label: str) -> None:
        packed = socket.inet_aton(address)
        body = (
            struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, packed)
            + attr(IFA_ADDRESS, packed)
            + attr(IFA_BROADCAST, socket.inet_aton(broadcast))
        )
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {address}/{prefixlen} to {label}")

    def add_default_route(self, gateway: str, index: int) -> None:
        body = (
            struct.pack(
                "=BBBBBBBBI", socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
            )
            + attr(RTA_GATEWAY, socket.inet_aton(gateway))
            + attr(RTA_OIF, struct.pack("=I", index))
        )
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"add default route via {gateway}")
