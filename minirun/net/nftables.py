"""minirun's own nftables table `ip minirun` (hostwide.NFT_TABLE): its definition, and running nft.

The table holds the published ports (portmap.py's maps and NAT chains) and the walls docker puts
up with its iptables chains, for minirun's bridges alone (interfaces named BRIDGE_PREFIX*, as
are the host's ends of containers' veth pairs):
- guard_prerouting drops what a container sends to or from 127.0.0.0/8. Our bridges have
  route_localnet (a port published on 127.0.0.1 is DNATed out of the host's loopback), which
  would otherwise hand a container with CAP_NET_RAW the host's loopback-only services (a frame
  for 127.0.0.1 sent to the bridge's MAC: CVE-2020-8558), or let it pass for 127.0.0.1 to them.
  It also drops what comes in by any other interface with a source address of one of our
  bridges (another host forging a container's address), or addressed to one: nothing comes so
  but from another host that routes a bridge's subnet through this one (a published port is
  reached at the host's address, and replies to what containers send past it come to the
  host's, both translated after this table), and conntrack relates an ICMP error to a
  connection by the datagram it quotes, whoever sends it, so guard_forward's `related` let
  such a host's errors in (docker 28 drops what comes for a container's address by another
  interface in its raw table too). It drops what comes in by a bridge with a source address
  not routed back through it (a container forging another's, or another network's, for the
  host or to be forwarded: a strict reverse-path check, as the host routes). And it drops all
  that comes in by the host's end of a container's veth pair itself (named
  PREFIX_<hex>: hostwide.VETH_PREFIX). That end is a port of its bridge, and what the bridge
  switches or takes for the host comes in by the bridge; but a frame sent to a link-local group
  MAC (01:80:c2:00:00:0X, STP's, LLDP's: a bridge forwards none of some) is handed to the port's
  own stack, so a container with CAP_NET_RAW sent the host datagrams of any source address that
  way, past the reverse-path check (and past the proxy's look at its client's address:
  portproxy.py). The port's IPv6, which took router advertisements so, is off (net/attach.py).
- guard_forward keeps traffic out of a bridge unless it comes from that bridge (docker's
  DOCKER-ISOLATION and its FORWARD drop): a container on one network never reaches one on
  another, nor does another host that routes to a bridge's subnet. Replies to a container's
  own connections and DNATed (published) ports pass. `fib daddr . iif oif missing` says "the
  destination is not on the interface this came in by" without naming each bridge, so a
  network made or removed never touches the rules.
  Conntrack's word that a packet is a reply is not taken for one bridge to another, nor for a
  container's packet with another's source address (dropped in raw prerouting, above):
  with CAP_NET_RAW a container (or another host) can make up the connection it answers, a
  datagram "from" the victim's port to its own, routed back by this host (docker drops
  bridge-to-bridge traffic before it looks at conntrack, and all but its own bridge's traffic
  to a container's address in its raw table). Nor is its word that an ICMP error is related to
  a published port's connection: it looks at the error's destination and the datagram quoted,
  not at who sends it, so a container of a third network sent the container that published
  the port errors "about" another's connection to it (a connected UDP socket's ECONNREFUSED, a
  smaller path MTU). No router stands between a container and the host; from another host
  such an error is a router's, and passes as a reply's.
- guard_forward also walls in an --internal network first (docker's `! -d SUBNET -i BRIDGE -j
  DROP`, ahead of its port rules): nothing its containers send leaves its bridge but for the host
  itself, a published port of another network's included (portproxy.py turns such a client
  away where the proxy serves the ports). (Nothing from elsewhere enters it
  anyway: the rules above drop it, no port is published there, and no reply is due.) Its bridge
  is known by its name, PREFIX.<id> (networks.bridge_name).
- the NAT postrouting chain gives what a container sends past its bridge the host's address
  (docker's `-s SUBNET ! -o BRIDGE -j MASQUERADE`): the other side has no route back to a
  bridge's subnet. The replies come back through the host only where it forwards IPv4 on the
  interface they arrive by (net.ipv4.ip_forward, which docker's daemon turns on and minirun
  leaves as it finds it).
- the NAT prerouting chain never DNATs a packet for 127.0.0.0/8: one arriving from outside is
  another host's (the host's own go through the output chain), and a port published on
  127.0.0.1 is the host's alone, as docker 28 keeps it.

The script is idempotent: every chain is flushed and written again, maps are only added, so it
brings a table made by an older minirun up to date without touching its published ports. The
script last written is kept in RUN_DIR (gone with the table at reboot): a start on a bridge that
exists already writes the table again when that record is not today's script (up_to_date), so
walls a newer minirun adds reach a host whose bridges an older one made.
"""

from __future__ import annotations

import os

from minirun import hostwide
from minirun.errors import MinirunError

TABLE = hostwide.NFT_TABLE
_BRIDGES = f'"{hostwide.BRIDGE_PREFIX}*"'
INTERNAL_BRIDGES = f'"{hostwide.INTERNAL_BRIDGE_PREFIX}*"'
_VETHS = f'"{hostwide.VETH_PREFIX}*"'
_MAP = "{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }"
_ANY_MAP = "{ type inet_service : ipv4_addr . inet_service; }"
# (chain, its base-chain spec or "", its rules)
_CHAINS = (
    (
        "publish",
        "",
        (
            "dnat ip to ip daddr . tcp dport map @tcp4",
            "dnat ip to ip daddr . udp dport map @udp4",
            "dnat ip to tcp dport map @tcp_any",
            "dnat ip to udp dport map @udp_any",
        ),
    ),
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
        ("ip daddr != 127.0.0.0/8 fib daddr type local jump publish",),
    ),
    ("output", "type nat hook output priority -100; policy accept;", ("fib daddr type local jump publish",)),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        (
            f"ip saddr 127.0.0.0/8 ct status dnat oifname {_BRIDGES} masquerade",
            f"iifname {_BRIDGES} oifname != {_BRIDGES} masquerade",
        ),
    ),
    (
        "guard_prerouting",
        "type filter hook prerouting priority raw; policy accept;",
        (
            f"iifname {_VETHS} drop",
            f"iifname {_BRIDGES} ip daddr 127.0.0.0/8 drop",
            f"iifname {_BRIDGES} ip saddr 127.0.0.0/8 drop",
            f"iifname != {_BRIDGES} fib saddr oifname {_BRIDGES} drop",
            f"iifname != {_BRIDGES} fib daddr oifname {_BRIDGES} drop",
            f"iifname {_BRIDGES} fib saddr . iif oif missing drop",
        ),
    ),
    (
        "guard_forward",
        "type filter hook forward priority filter; policy accept;",
        (
            f"iifname {INTERNAL_BRIDGES} fib daddr . iif oif missing drop",
            f"oifname {_BRIDGES} ct status dnat ct state new,established accept",
            f"iifname {_BRIDGES} oifname {_BRIDGES} fib daddr . iif oif missing drop",
            f"oifname {_BRIDGES} ct state established,related accept",
            f"oifname {_BRIDGES} fib daddr . iif oif missing drop",
        ),
    ),
)


def table_script() -> str:
    """The table, its maps and every chain with its rules, for `nft -f -` (see above)."""
    lines = [f"add table ip {TABLE}"]
    lines += [f"add map ip {TABLE} {proto}4 {_MAP}" for proto in ("tcp", "udp")]
    lines += [f"add map ip {TABLE} {proto}_any {_ANY_MAP}" for proto in ("tcp", "udp")]
    for chain, spec, rules in _CHAINS:
        lines.append(f"add chain ip {TABLE} {chain}" + (f" {{ {spec} }}" if spec else ""))
        lines.append(f"flush chain ip {TABLE} {chain}")
        lines += [f"add rule ip {TABLE} {chain} {rule}" for rule in rules]
    return "\n".join(lines) + "\n"


def ensure_table() -> bool:
    """The table with its walls, before a bridge of ours carries a container; False where
    nftables cannot hold it (no nft, or a kernel without nf_tables): no bridge is made then."""
    if nft_binary() is None:
        return False
    from minirun.atomicfile import atomic_write
    from minirun.store.fsutil import flocked

    os.makedirs(hostwide.RUN_DIR, exist_ok=True)
    script = table_script()
    with flocked(os.path.join(hostwide.RUN_DIR, "ports.lock")):  # portmap's: one writer of the table
        code, _, err = run_nft(["-f", "-"], script)
        if code == 0:
            atomic_write(_record(), script.encode(), durable=False)
    if code == 0:
        return True
    message = err.decode(errors="replace").strip()
    if unsupported(message):
        return False
    raise MinirunError("nft: " + (message.splitlines()[0] if message else f"exit {code}"))


def up_to_date() -> bool:
    """Whether the table was last written with this minirun's script (see above) and is still
    there: an `nft flush ruleset` (a firewall's reload, say) takes it and every wall with it,
    while the record stays."""
    try:
        with open(_record(), "rb") as f:
            if f.read() != table_script().encode():
                return False
    except FileNotFoundError:
        return False
    return _table_exists()


_NETLINK_NETFILTER = 12
_NFT_MSG_GETTABLE = (10 << 8) | 1  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
_NFTA_TABLE_NAME = 1


def _table_exists() -> bool:
    """One nf_tables request on a netlink socket (the start path asks it: no nft process). Only
    the kernel's "no such table" says no: an answer it cannot give leaves the table as written."""
    import errno
    import socket
    import struct

    from minirun.net.rtnl import Netlink, attr

    try:
        link = Netlink(_NETLINK_NETFILTER)
    except OSError:
        return True
    try:
        body = struct.pack("=BBH", socket.AF_INET, 0, 0) + attr(_NFTA_TABLE_NAME, TABLE.encode() + b"\0")
        link.request(_NFT_MSG_GETTABLE, 0, body, f"nft table {TABLE}")
    except OSError as exc:
        return exc.errno != errno.ENOENT
    finally:
        link.close()
    return True


def _record() -> str:
    return os.path.join(hostwide.RUN_DIR, "walls.nft")


# What nft says on a kernel without nf_tables (or without its ip family).
_UNSUPPORTED = ("not supported", "No such file or directory", "Operation not permitted")


def unsupported(message: str) -> bool:
    return any(text in message for text in _UNSUPPORTED)


def nft_binary() -> str | None:
    for directory in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]:
        path = os.path.join(directory or ".", "nft")
        if os.access(path, os.X_OK):
            return path
    return None


def nft(args: list[str], script: str | None = None) -> bytes:
    code, out, err = run_nft(args, script)
    if code != 0:
        text = err.decode(errors="replace").strip().splitlines()
        raise MinirunError("nft: " + (text[0] if text else f"exit {code}"))
    return out


def run_nft(args: list[str], stdin: str | None = None) -> tuple[int, bytes, bytes]:
    """nft, by posix_spawn and pipes: the subprocess module costs ~12 ms of imports."""
    binary = nft_binary()
    if binary is None:
        raise MinirunError("publishing ports needs nftables (the nft command): not found")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        if stdin:
            data = stdin.encode()
            if len(data) > 65536:
                raise MinirunError("nft script too long")
            os.write(in_w, data)
        os.close(in_w)
        in_w = -1
        actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        pid = os.posix_spawn(binary, [binary, *args], os.environ, file_actions=actions)
    finally:
        for fd in (in_r, in_w, out_w, err_w):
            if fd >= 0:
                os.close(fd)
    try:
        out = _read_all(out_r)
        err = _read_all(err_r)
    finally:
        os.close(out_r)
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
