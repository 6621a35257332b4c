"""docker's links (`--link NAME[:ALIAS]`, compose's `links:`, an endpoint's Links).

On a user-defined network a link makes ALIAS name the linked container's address on that network,
for the linking container alone (docker's embedded DNS answers it to that one only): here a line
in the linker's own /etc/hosts, rewritten with the peers' whenever a member of the network comes
or goes. The linked container need not exist yet (docker resolves it when it appears).

On the default bridge (docker's legacy links) the linked container must exist at create and run
at the linker's start: ALIAS, its hostname and name go into the linker's /etc/hosts (rewritten
when it starts again), and its address, exposed ports, name and environment into the linker's
environment (ALIAS_PORT_5432_TCP=tcp://IP:5432, ALIAS_NAME=/linker/alias, ALIAS_ENV_X=...),
fixed at the linker's start as docker fixes them. Pure but for the lookups named so."""

from __future__ import annotations

from minirun.errors import Conflict, NotFound, UsageError

HOST_LINKS = (
    "conflicting options: host type networking can't be used with links. This would result in undefined behavior"
)
CONTAINER_LINKS = (
    "conflicting options: container type network can't be used with links. This would result in undefined behavior"
)


def parse_link(text: str) -> list[str]:
    """NAME[:ALIAS] -> [name, alias] (docker's opts.ParseLink: a leading / is dropped)."""
    parts = text.split(":")
    if not text or len(parts) > 2 or not all(parts):
        raise UsageError(f'invalid argument "{text}" for "--link" flag: bad format for links: {text}')
    name = parts[0].lstrip("/")
    alias = parts[1].lstrip("/") if len(parts) == 2 else name
    if not name or not alias:
        raise UsageError(f'invalid argument "{text}" for "--link" flag: bad format for links: {text}')
    return [name, alias]


def parse_links(texts: list[str]) -> list[list[str]]:
    """Every NAME[:ALIAS] given, parsed; a later link with the same alias replaces an earlier one."""
    return list({alias: [name, alias] for name, alias in map(parse_link, texts)}.values())


def check_mode(network: str) -> None:
    if network == "host":
        raise UsageError(HOST_LINKS)
    if network.startswith("container:"):
        raise UsageError(CONTAINER_LINKS)


def check_legacy(store, links: list[list[str]]) -> None:
    """At create on the default bridge: each linked container must exist (docker's error, an
    invalid parameter: 125), and none may run in the host's network."""
    if not links:
        return
    from minirun.containers.container import Containers

    containers = Containers(store)
    for name, _ in links:
        try:
            child = containers.find(name)
        except NotFound:
            raise UsageError(f"could not get container for {name}: No such container: {name}") from None
        if child.config.network == "host":
            raise UsageError(HOST_LINKS)


def matches(name: str, member: dict) -> bool:
    """Whether a link's NAME names this booking's container (its name, an alias on that
    network, or its id or a 12-character prefix of it)."""
    if name == member.get("name") or name in member.get("aliases", ()):
        return True
    return len(name) >= 12 and str(member.get("container", "")).startswith(name)


def hosts_lines(links: list[list[str]], members: list[dict], legacy: bool) -> str:
    """The linker's /etc/hosts lines for its links on one network whose other live bookings are
    `members`; a link to a container not on it now has none."""
    lines = []
    for name, alias in links:
        target = next((m for m in members if matches(name, m)), None)
        if target is None:
            continue
        if legacy:  # docker's: alias, the child's hostname, its name (unless the alias is it)
            names = [alias, target.get("hostname") or "", target.get("name") or ""]
        else:
            names = [alias, name]
        lines.append(f"{target['ip']}\t{' '.join(dict.fromkeys(n for n in names if n))}\n")
    return "".join(lines)


def legacy_env(linker_name: str, alias: str, ip: str, exposed: list[str], child_env: list[str]) -> list[str]:
    """docker's link environment variables for one legacy link (moby daemon/links)."""
    prefix = alias.upper().replace("-", "_")
    ports: list[tuple[int, str]] = []
    for exposed_key in exposed:
        digits, _, given_proto = exposed_key.partition("/")
        if digits.isdigit():
            ports.append((int(digits), (given_proto or "tcp").lower()))
    # tcp first, then by number: docker's order (its first is ALIAS_PORT)
    ports.sort(key=lambda p: (p[1] != "tcp", p[1], p[0]))
    env = []
    if ports:
        env.append(f"{prefix}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
    start = end = ports[0] if ports else None
    for i, (number, proto) in enumerate(ports):
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{key}={proto}://{ip}:{number}", f"{key}_ADDR={ip}", f"{key}_PORT={number}", f"{key}_PROTO={proto}"]
        assert start is not None and end is not None
        if i and number == end[0] + 1 and proto == start[1]:
            end = (number, proto)
            if i < len(ports) - 1:
                continue
        if end != start:  # a run of consecutive ports: docker adds its range
            key = f"{prefix}_PORT_{start[0]}_{start[1].upper()}"
            env += [
                f"{key}_START={start[1]}://{ip}:{start[0]}",
                f"{key}_PORT_START={start[0]}",
                f"{key}_END={end[1]}://{ip}:{end[0]}",
                f"{key}_PORT_END={end[0]}",
            ]
        start = end = (number, proto)
    env.append(f"{prefix}_NAME=/{linker_name}/{alias}")
    for item in child_env:
        name, eq, value = item.partition("=")
        if eq and name not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{name}={value}")
    return env


def start_env(store, container, links: list[list[str]]) -> list[str]:
    """At the linker's start on the default bridge: every linked container must run (docker's
    error); one removed since is left out. Its address is its booking on the default bridge."""
    from minirun.containers.container import Containers
    from minirun.containers.liveness import is_running, refresh
    from minirun.hostwide import DEFAULT_BRIDGE
    from minirun.net.networks import AddressBook

    containers = Containers(store)
    env: list[str] = []
    bookings = AddressBook(DEFAULT_BRIDGE).entries()
    for name, alias in links:
        try:
            child = refresh(containers, containers.find(name), reload=False)
        except NotFound:
            continue
        if not is_running(child):
            raise Conflict(f"Cannot link to a non running container: /{child.name} AS /{container.name}/{alias}")
        ip = next(
            (b["ip"] for b in bookings if b.get("store") == store.root and b.get("container") == child.id),
            "",
        )
        if ip:
            env += legacy_env(container.name, alias, ip, child.config.exposed_ports, child.config.env)
    return env


def with_env(link_env: list[str], env: list[str]) -> list[str]:
    """The link variables first, the container's own over them (docker's order)."""
    own = {item.partition("=")[0] for item in env}
    return [item for item in link_env if item.partition("=")[0] not in own] + list(env)
