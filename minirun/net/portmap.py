"""Published ports (-p): docker's spelling, how `ps`/`port` show them, and the host side.

The host side is nftables DNAT in minirun's own table `ip minirun` (no other table, chain or
interface of the host is touched). Four maps hold the bindings, keyed by (host address, port) or,
for ports published on every address, by port alone; each element leads to (container address,
port). Ports published on 127.0.0.1 work because minirun's bridges have route_localnet (see
net/bridge.py) and the postrouting chain masquerades DNATed loopback traffic leaving on
them: the container could not answer 127.0.0.1 itself. The table and the walls that keep
route_localnet from opening the host's loopback to containers are nftables.py's.

Every change happens under a host-wide flock, after reading the maps: a port another container
holds (from any store) is refused as docker refuses it. A container holds its ports from the
moment they are published, not only once it runs: its state says "running" only after PID 1 has
exec'd, so each publish also records the publishing process (pid and start time) in
/run/minirun/publishers/<address>. That process (the foreground CLI, or the monitor, which
stays PID 1's parent) lives as long as the container runs, and frees the ports when PID 1 exits
or fails to start. An element leading to an address whose publisher is gone and whose container
does not run is debris (a monitor killed before its cleanup) and is replaced. A container's
address is its own until `rm`, so "every element leading to my address" is exactly what to
remove when it stops, and what to replace when it starts again.

Where nftables is not there (no `nft` on PATH, or the kernel refuses the table), or when
MINIRUN_PORT_BACKEND=proxy asks for it, the ports go through a userspace proxy instead
(portproxy.py): the owner binds the host sockets itself and hands them to the proxy, its child.
NetworkSettings records the backend ("PortBackend"), the proxy (pid, start time) and the address
the ports lead to ("PortAddress") for cleanup.

Ports published to a running container (its default route moved to another network by `network
connect`/`disconnect`) are published by that short-lived command, not by the owner: the nft
elements outlive it as they are (a running container holds its address's ports), and a proxy is
made nobody's child (a double fork) that watches a pidfd of the container's PID 1 and goes when
that exits, as an owner's proxy goes with its owner.
"""

from __future__ import annotations

import os

from minirun import leanjson
from minirun.errors import Conflict, MinirunError, UsageError
from minirun.net import nftables
from minirun.net.nftables import nft_binary

TYPE_CHECKING = False  # not typing's: importing typing costs ~6 ms on the start path
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping
    from typing import Any, TypedDict

    # [host_ip ("" = every address), host_port (0 = picked at start), container_port, proto]: a
    # JSON array in config.json and state.json, so a list, and a list type cannot tell its items apart
    Binding = list[Any]
    # (proto, host_ip or "", host_port, container_ip, container_port): an element of the nft maps
    Element = tuple[str, str, int, str, int]

    class ProxyRecord(TypedDict):
        """The proxy process, by pid and start time (pids are reused)."""

        pid: int
        start: int | None

    class Backend(TypedDict, total=False):
        """What publish_ports adds to NetworkSettings for unpublish_ports."""

        PortBackend: str  # "nft" or "proxy"
        Proxy: ProxyRecord  # with "proxy"
        PortAddress: str  # the container address the ports lead to: its default route's network's


TABLE = nftables.TABLE
PROTOCOLS = ("tcp", "udp")


# -- docker's spelling (pure) --------------------------------------------------------------------


def parse_publish(spec: str) -> list[Binding]:
    """`[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (ports may be equal-length ranges) ->
    bindings [host_ip, host_port, container_port, proto]; host_ip "" means every address and
    host_port 0 a free port picked at start."""
    rest, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in PROTOCOLS:
        raise UsageError(f"invalid proto: {proto} (supported: tcp, udp)")
    if rest.startswith("["):
        raise UsageError(f"invalid publish spec {spec}: IPv6 host addresses are not supported")
    parts = rest.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise UsageError(f"invalid publish spec: {spec}")
    host_ip = parts[0] if len(parts) == 3 else ""
    host_text = parts[-2] if len(parts) >= 2 else ""
    if host_ip:
        from minirun.net.ipv4 import canonical_ip, shown_text

        try:
            host_ip = canonical_ip(host_ip)  # strict: it is written into an nft script and stored
        except UsageError:
            raise UsageError(f"invalid ip address: {shown_text(host_ip)}") from None
        if host_ip == "0.0.0.0":
            host_ip = ""
    container_ports = _port_range(parts[-1], "containerPort")
    host_ports = _port_range(host_text, "hostPort") if host_text else [0] * len(container_ports)
    if len(host_ports) != len(container_ports):  # (docker's host range for one container port is not supported)
        raise UsageError(f"invalid ranges specified for container and host Ports: {parts[-1]} and {host_text}")
    return [[host_ip, h, c, proto] for h, c in zip(host_ports, container_ports)]


def _port_range(text: str, what: str) -> list[int]:
    from minirun.net.ipv4 import shown_text

    low, dash, high = text.partition("-")
    # ASCII digits only, as docker's ParseUint: int() would take " 80", "8_0" and other scripts' digits
    if not all(part.isdigit() and part.isascii() for part in ((low, high) if dash else (low,))):
        raise UsageError(f"invalid {what}: {shown_text(text)}")
    first, last = int(low), int(high) if dash else int(low)
    if not (0 < first <= last <= 65535) or (what == "hostPort" and first == 0):
        raise UsageError(f"invalid {what}: {text}")
    return list(range(first, last + 1))


def shown_ip(host_ip: str) -> str:
    return host_ip or "0.0.0.0"


def ps_text(bindings: list[Binding]) -> str:
    """docker ps's PORTS: `127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp`."""
    return ", ".join(f"{shown_ip(ip)}:{h}->{c}/{p}" for ip, h, c, p in bindings)


def port_lines(bindings: list[Binding], private: str | None = None) -> list[str]:
    """docker port: `80/tcp -> 0.0.0.0:8080` lines; with PRIVATE_PORT[/PROTO] just `0.0.0.0:8080`."""
    if private is None:
        return [f"{c}/{p} -> {shown_ip(ip)}:{h}" for ip, h, c, p in sorted(bindings, key=lambda b: (b[2], b[3]))]
    port, _, proto = private.partition("/")
    proto = proto or "tcp"
    return [f"{shown_ip(ip)}:{h}" for ip, h, c, p in bindings if str(c) == port and p == proto]


def inspect_ports(bindings: list[Binding]) -> dict[str, list[dict[str, str]]]:
    """NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}."""
    ports: dict[str, list[dict[str, str]]] = {}
    for ip, h, c, p in bindings:
        ports.setdefault(f"{c}/{p}", []).append({"HostIp": shown_ip(ip), "HostPort": str(h)})
    return ports


def port_bindings(bindings: list[Binding]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings: as asked (host port "" when docker would pick one)."""
    ports: dict[str, list[dict[str, str]]] = {}
    for ip, h, c, p in bindings:
        ports.setdefault(f"{c}/{p}", []).append({"HostIp": ip, "HostPort": str(h) if h else ""})
    return ports


# -- the host side: nftables or the proxy ---------------------------------------------------------

BACKEND_ENV = "MINIRUN_PORT_BACKEND"


class NftUnavailable(MinirunError):
    """nftables cannot hold minirun's table here: the proxy takes the ports instead."""


def _unsupported(exc: MinirunError) -> bool:
    """Only these failures mean the proxy may take over: after any other an element may well
    exist that the proxy would not see, and two containers would get one port."""
    return nftables.unsupported(exc.message)


def publish_ports(
    bindings: list[Binding],
    address: str,
    pid1: tuple[int, int | None] | None = None,
    proxy_cgroup: Callable[[], str | None] | None = None,
) -> tuple[list[Binding], Backend]:
    """Publish by the backend at hand: (bindings with the host ports picked, what to record in
    NetworkSettings for unpublish_ports). `pid1`: (pid, start time) of the container's PID 1 when
    it runs already (the ports follow its default route): a proxy then lives as long as it does.
    `proxy_cgroup`, asked only when a proxy starts: the cgroup every proxy's tasks share (the
    caller's to make: cgroups live a layer above this one), or None."""
    forced = os.environ.get(BACKEND_ENV, "")
    if forced not in ("", "nft", "proxy"):
        raise UsageError(f"invalid {BACKEND_ENV}: {forced!r} (supported: nft, proxy)")
    if forced == "nft" or (not forced and nft_binary() is not None):
        try:
            return publish(bindings, address), {"PortBackend": "nft", "PortAddress": address}
        except NftUnavailable:
            if forced:
                raise
    return _publish_by_proxy(bindings, address, pid1, proxy_cgroup() if proxy_cgroup else None)


def published_address(settings: Mapping[str, Any]) -> str:
    """The address the ports of `settings` lead to (a record from before "PortAddress": its own)."""
    return str(settings.get("PortAddress") or settings.get("IPAddress", ""))


def unpublish_ports(settings: Mapping[str, Any], still_ours: Callable[[], bool] | None = None) -> None:
    """Undo publish_ports: the proxy is killed whatever `still_ours` says (a new run has its own)."""
    if settings.get("Proxy"):
        stop_proxy(settings["Proxy"])
    if settings.get("PortBackend", "nft") == "nft":
        unpublish(published_address(settings), still_ours)


def _publish_by_proxy(
    bindings: list[Binding], address: str, pid1: tuple[int, int | None] | None, cgroup: str | None
) -> tuple[list[Binding], Backend]:
    from minirun.net.networks import HOST_DIR
    from minirun.store.fsutil import flocked

    sockets: list[socket.socket] = []
    try:
        resolved = [_bind_for_proxy(b, sockets) for b in bindings]
        os.makedirs(HOST_DIR, exist_ok=True)
        with flocked(os.path.join(HOST_DIR, "ports.lock")):
            _refuse_ports_dnated_elsewhere(resolved, address)
            specs = [(s.fileno(), p, address, c) for s, (_, _, c, p) in zip(sockets, resolved)]
            proxy = _spawn_proxy(specs, pid1, cgroup)
    finally:
        for sock in sockets:  # the proxy has its own copies
            sock.close()
    return resolved, {"PortBackend": "proxy", "Proxy": proxy, "PortAddress": address}


def _bind_for_proxy(binding: Binding, sockets: list[socket.socket]) -> Binding:
    """Bind (and listen on) the host socket the proxy serves. No SO_REUSEADDR on UDP: with it
    on both sides Linux lets a second socket bind the same port, and the port must stay taken."""
    import socket

    host_ip, host_port, container_port, proto = binding
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    sockets.append(sock)
    if proto == "tcp":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    else:  # from the first datagram on, which may come before the proxy runs
        from minirun.net.portproxy import IP_PKTINFO

        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    _bind(sock, host_ip, host_port)
    if proto == "tcp":
        sock.listen(128)
    return [host_ip, sock.getsockname()[1], container_port, proto]


def _refuse_ports_dnated_elsewhere(resolved: list[Binding], address: str) -> None:
    """A port a running container holds by DNAT is bound by nobody: the bind cannot see it."""
    if nft_binary() is None:
        return
    try:
        elements = list_elements() or []
    except MinirunError as exc:
        if _unsupported(exc):
            return  # no nftables in this kernel: nobody DNATs
        raise
    for ip, h, _, p in resolved:
        for eproto, eip, eport, target, _ in elements:
            if target == address or eproto != p or eport != h or (ip and eip and ip != eip):
                continue
            if publisher_alive(target) or _held_by_running_container(target):
                raise Conflict(f"Bind for {shown_ip(ip)}:{h} failed: port is already allocated")


def _spawn_proxy(
    specs: list[tuple[int, str, str, int]], pid1: tuple[int, int | None] | None, cgroup: str | None = None
) -> ProxyRecord:
    """portproxy.py as this process's child, given only the listening sockets: an inherited pipe
    (the monitor's log pipes, its ready fd) would keep its reader from ever seeing EOF. Given
    `pid1`, a running container's, it is nobody's child and watches a pidfd of that PID 1. Given
    `cgroup`, it joins that once its listeners run (portproxy.main)."""
    from minirun import linux
    from minirun.helpers import helper_argv
    from minirun.procs import start_time

    fds = sorted(spec[0] for spec in specs)
    ports = [f"{fd}/{proto}/{ip}/{port}" for fd, proto, ip, port in specs]
    if cgroup:
        from minirun.net.portproxy import CGROUP_ARG

        ports.insert(0, f"{CGROUP_ARG}{cgroup}")
    if pid1 is None:
        owner = linux.owner_pid()  # a monitor's launcher hands it to the monitor
        pid, _ = linux.fork_owned()
        if pid == 0:
            _exec_proxy(helper_argv("minirun.net.portproxy:main", str(owner), *ports), fds)
        return {"pid": pid, "start": start_time(pid)}
    try:
        watched = os.pidfd_open(pid1[0])
    except ProcessLookupError:
        raise MinirunError("the container is not running") from None
    read, write = os.pipe()
    try:
        try:
            if start_time(pid1[0]) != pid1[1]:  # the pidfd is of a later process with that pid
                raise MinirunError("the container is not running")
            argv = helper_argv("minirun.net.portproxy:main", f"@{watched}", *ports)
            middle = os.fork()  # it forks the proxy and exits: no caller (an API server) has to reap it
            if middle == 0:  # only os calls until the exec: a thread of the API server may have forked
                try:
                    pid = os.fork()
                    if pid == 0:
                        _exec_proxy(argv, [*fds, watched])
                    os.write(write, str(pid).encode())
                finally:
                    os._exit(0)
        finally:
            os.close(watched)
            os.close(write)
        os.waitpid(middle, 0)
        pid = int(os.read(read, 32) or b"0")
    finally:
        os.close(read)
    if pid <= 0:
        raise MinirunError("the port proxy could not be started")
    return {"pid": pid, "start": start_time(pid)}


def _exec_proxy(argv: list[str], fds: list[int]) -> None:
    """In a forked child: become the proxy, keeping only `fds` (never returns)."""
    import signal

    from minirun import linux

    try:
        os.setsid()  # the terminal's Ctrl-C is for the CLI and the container, not for us
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # launch.start blocks some; exec keeps a mask
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):  # `minirun run ... | cat` must not wait for the proxy's EOF
            os.dup2(null, target)
        for fd in fds:
            os.set_inheritable(fd, True)
        linux.close_fds(keep=fds)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)


def stop_proxy(proxy: ProxyRecord) -> None:
    """Kill the proxy (by pid and start time: pids are reused) and wait until its sockets are
    closed, so the ports are free when this returns."""
    import signal
    import time

    from minirun.procs import is_alive, is_zombie

    pid, start = int(proxy["pid"]), proxy.get("start")
    if start is None or not is_alive(pid, start):
        _reap(pid)
        return
    os.kill(pid, signal.SIGKILL)
    if _reap(pid):
        return
    deadline = time.monotonic() + 5
    while is_alive(pid, start) and not is_zombie(pid) and time.monotonic() < deadline:  # another's child (rm -f)
        time.sleep(0.01)


def _reap(pid: int) -> bool:
    try:
        os.waitpid(pid, 0)
        return True
    except ChildProcessError:
        return False


# -- the nftables backend -------------------------------------------------------------------------


def publish(bindings: list[Binding], address: str) -> list[Binding]:
    """DNAT each binding to `address`; returns them with the host ports picked. Raises Conflict
    for a host port that is taken (by a host process or another container)."""
    from minirun.net.networks import HOST_DIR
    from minirun.store.fsutil import flocked

    resolved: list[Binding] = []
    for binding in bindings:  # host port 0: the kernel's pick may be one picked just before
        claimed = _pick(binding, resolved)
        if _overlaps(claimed, resolved):
            raise Conflict(f"Bind for {shown_ip(claimed[0])}:{claimed[1]} failed: port is already allocated")
        resolved.append(claimed)
    os.makedirs(HOST_DIR, exist_ok=True)
    with flocked(os.path.join(HOST_DIR, "ports.lock")):
        try:
            elements = list_elements()
        except MinirunError as exc:  # e.g. "Protocol not supported": no nf_tables in the kernel
            if not _unsupported(exc):
                raise
            raise NftUnavailable(str(exc)) from None
        creating = elements is None
        script = [nftables.table_script()]  # the walls too, also in a table an older minirun made
        elements = elements or []
        for element in elements:
            if element[3] == address:  # left from this container's previous run
                script.append(_delete(element))
        debris: set[str] = set()
        for i, binding in enumerate(bindings):
            stale = _stale_or_held(elements, address, resolved[i])
            if stale is None and binding[1]:  # asked for by number: docker's words
                raise Conflict(f"Bind for {shown_ip(binding[0])}:{binding[1]} failed: port is already allocated")
            if stale is None:  # host port 0, picked where a running container DNATs: another pick (docker's skips it)
                resolved[i] = _pick(binding, resolved[:i] + resolved[i + 1 :], elements, address)
                stale = _stale_or_held(elements, address, resolved[i]) or []
            ip, h, c, p = resolved[i]
            for element in stale:
                script.append(_delete(element))
                debris.add(element[3])
            script.append(_element("create", p, ip, h) + f" : {address} . {c} }}")
        _record_publisher(address)  # first: no element is ever left without it (network.book_address)
        try:
            nftables.nft(["-f", "-"], "\n".join(script) + "\n")
        except MinirunError as exc:
            if not creating or not _unsupported(exc):  # the table is there: a refused element is a real error
                raise
            raise NftUnavailable(str(exc)) from None
        for target in debris:
            _unlink(_publisher_path(target))
    return resolved


_PICKS = 20  # picks of a free host port (host port 0) before giving up


def _pick(binding: Binding, others: list[Binding], elements: list[Any] | None = None, address: str = "") -> Binding:
    """`binding` with its host port claimed (_claim_host_port); for host port 0, picked again
    while the pick overlaps one of `others` or, given the table's `elements`, a port a running
    container holds by DNAT (no socket is bound there for the kernel to see)."""
    for _ in range(_PICKS):
        picked = _claim_host_port(binding)
        held = elements is not None and _stale_or_held(elements, address, picked) is None
        if binding[1] or not (_overlaps(picked, others) or held):
            return picked
    raise Conflict(f"Bind for {shown_ip(binding[0])}:0 failed: no free port found")


def _overlaps(binding: Binding, others: list[Binding]) -> bool:
    """Whether one of `others` (a container's bindings before this one) publishes `binding`'s
    protocol and host port on all addresses, or on `binding`'s own address."""
    ip, h, _, p = binding
    return any(op == p and oh == h and (not oip or (ip and ip == oip)) for oip, oh, _, op in others)


def _stale_or_held(elements: list[Any], address: str, binding: Binding) -> list[Any] | None:
    """The elements of other addresses on `binding`'s host port, to delete: left by containers
    that are gone. None if a running container holds one."""
    ip, h, _, p = binding
    stale = []
    for element in elements:
        eproto, eip, eport, target = element[0], element[1], element[2], element[3]
        if target == address or eproto != p or eport != h or (ip and eip and ip != eip):
            continue
        if publisher_alive(target) or _held_by_running_container(target):
            return None
        stale.append(element)
    return stale


def unpublish(address: str, still_ours: Callable[[], bool] | None = None) -> None:
    """Remove every element leading to `address` (the container's, since it holds the address);
    `still_ours()`, asked under the lock, may call it off."""
    from minirun.net.networks import HOST_DIR
    from minirun.store.fsutil import flocked

    if not os.path.isdir(HOST_DIR):
        return
    with flocked(os.path.join(HOST_DIR, "ports.lock")):
        if still_ours is not None and not still_ours():
            return
        ours = [e for e in list_elements() or [] if e[3] == address]
        if ours:
            nftables.nft(["-f", "-"], "\n".join(_delete(e) for e in ours) + "\n")
        _unlink(_publisher_path(address))


# -- who published: held from the publish on, before the container's state says running -----------


def _publisher_path(address: str) -> str:
    from minirun.net.networks import publisher_path

    return publisher_path(address)


def _record_publisher(address: str) -> None:
    """Under the ports lock: this process published the ports leading to `address`."""
    from minirun.procs import start_time
    from minirun.store.fsutil import atomic_write

    path = _publisher_path(address)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pid = os.getpid()
    atomic_write(path, leanjson.dumps({"pid": pid, "start": start_time(pid)}).encode(), durable=False)


def publisher_alive(address: str) -> bool:
    """Whether the process that published the ports leading to `address` still lives (by pid
    and start time: pids are reused)."""
    from minirun.procs import is_alive

    try:
        with open(_publisher_path(address), "rb") as f:
            record = leanjson.load(f)
        pid, start = int(record["pid"]), record["start"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return start is not None and is_alive(pid, start)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def list_elements() -> list[Element] | None:
    """(proto, host_ip or "", host_port, container_ip, container_port) of every published port;
    None when the table does not exist yet."""
    code, out, err = nftables.run_nft(["-j", "list", "table", "ip", TABLE])
    if code != 0:
        if b"No such file or directory" in err:
            return None
        raise MinirunError(f"nft list table ip {TABLE}: {err.decode(errors='replace').strip()}")
    found: list[Element] = []
    for item in leanjson.loads(out).get("nftables", []):
        m = item.get("map")
        if not m or m.get("table") != TABLE:
            continue
        proto = m["name"][:3]  # tcp4, udp4, tcp_any, udp_any
        for key, value in m.get("elem", []):
            host_ip, host_port = (key["concat"][0], key["concat"][1]) if isinstance(key, dict) else ("", key)
            found.append((proto, host_ip, int(host_port), value["concat"][0], int(value["concat"][1])))
    return found


def _element(verb: str, proto: str, host_ip: str, host_port: int) -> str:
    if host_ip:
        return f"{verb} element ip {TABLE} {proto}4 {{ {host_ip} . {host_port}"
    return f"{verb} element ip {TABLE} {proto}_any {{ {host_port}"


def _delete(element: Element) -> str:
    return _element("delete", element[0], element[1], element[2]) + " }"


def in_use(address: str) -> bool:
    """Whether ports published to `address` belong to a running container, or to a start that is
    publishing them now (system check leaves those alone)."""
    return _held_by_running_container(address) or publisher_alive(address)


def _held_by_running_container(address: str) -> bool:
    from minirun.net.networks import is_running, owner_of

    owner = owner_of(address)
    return owner is not None and is_running(owner)


def _claim_host_port(binding: Binding) -> Binding:
    """docker refuses a port some host process listens on: try to bind it (and pick a free
    one for host port 0); nothing stays bound, the DNAT takes the traffic."""
    import socket

    host_ip, host_port, container_port, proto = binding
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(sock, host_ip, host_port)
        return [host_ip, sock.getsockname()[1], container_port, proto]


def _bind(sock: socket.socket, host_ip: str, host_port: int) -> None:
    """Bind a host port as docker reports it: a taken one is "port is already allocated"."""
    try:
        sock.bind((host_ip or "0.0.0.0", host_port))
    except OSError as exc:
        if exc.errno == 98:  # EADDRINUSE
            raise Conflict(f"Bind for {shown_ip(host_ip)}:{host_port} failed: port is already allocated") from None
        raise MinirunError(f"Bind for {shown_ip(host_ip)}:{host_port} failed: {exc.strerror}") from None
