"""Exposed ports: docker's Config.ExposedPorts of a container (the image's EXPOSE, --expose and
-p's ports) and what -P publishes of them. Pure; network.prepare publishes the bindings."""

from __future__ import annotations

from minirun.errors import UsageError


def parse_expose(spec: str) -> list[str]:
    """`PORT[/PROTO]` or `FIRST-LAST[/PROTO]` -> ["80/tcp", ...] (docker's ExposedPorts keys)."""
    ports, slash, proto = spec.partition("/")
    proto = proto.lower() if slash else "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid proto in --expose {spec}: {proto} (supported: tcp, udp)")
    low, dash, high = ports.partition("-")
    numbers = (low, high) if dash else (low,)
    if not all(n.isascii() and n.isdigit() for n in numbers):
        raise UsageError(f"invalid range format for --expose: {spec}")
    first, last = int(low), int(high) if dash else int(low)
    if not 0 < first <= last <= 65535:
        raise UsageError(f"invalid range format for --expose: {spec}")
    return [f"{port}/{proto}" for port in range(first, last + 1)]


def exposed_ports(image_config: dict, expose: list[str], publish: list[list]) -> list[str]:
    """docker's Config.ExposedPorts of a new container: the image's EXPOSE, --expose and the
    ports -p publishes, each once, by port."""
    image_ports = image_config.get("ExposedPorts")
    keys = [k for k in image_ports if isinstance(k, str)] if isinstance(image_ports, dict) else []
    keys = [_port_key(k) for k in keys] + expose + [f"{c}/{p}" for _, _, c, p in publish]
    unique = dict.fromkeys(k for k in keys if k)
    return sorted(unique, key=lambda k: (int(k.split("/")[0]), k))


def _port_key(key: str) -> str:
    """An image's `80/tcp` (or `80`) checked; an image config came from outside: junk is dropped."""
    port, _, proto = key.partition("/")
    proto = proto or "tcp"
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535 and proto in ("tcp", "udp")):
        return ""
    return f"{int(port)}/{proto}"


def publish_all_bindings(exposed: list[str], published: list[list]) -> list[list]:
    """-P: a binding on every address, host port picked at start, for each exposed port that
    -p does not publish already (portmap's [host_ip, host_port, container_port, proto])."""
    taken = {(c, p) for _, _, c, p in published}
    bindings = []
    for key in exposed:
        port, _, proto = key.partition("/")
        if (int(port), proto) not in taken:
            bindings.append(["", 0, int(port), proto])
    return bindings
