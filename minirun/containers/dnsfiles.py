"""What `--add-host`, `--dns`, `--dns-search` and `--dns-option` put into a container's /etc/hosts
and /etc/resolv.conf, as docker writes them. The checks and the texts are pure; the CLI checks
the flags before anything is created, container.py and network.py write the files.

`--add-host NAME:host-gateway` stands for the address of the host on the container's bridge
(its network's gateway; the default bridge's for a container on no bridge), as docker's
host-gateway stands for docker0's address.
"""

from __future__ import annotations

import os

from minirun.errors import UsageError

HOST_GATEWAY = "host-gateway"


def parse_add_host(spec: str) -> str:
    """`NAME:IP` or `NAME=IP` (IP may be in brackets, or host-gateway) -> `NAME:IP`, as docker
    records it in HostConfig.ExtraHosts."""
    name, sep, address = spec.partition("=")
    if not sep:
        name, sep, address = spec.partition(":")
    if not sep or not name or ":" in name or not _is_word(name):
        raise UsageError(f"bad format for add-host: {spec!r}")
    if address != HOST_GATEWAY:
        if len(address) > 2 and address[0] == "[" and address[-1] == "]":
            address = address[1:-1]
        if not is_ip(address):
            raise UsageError(f"invalid IP address in add-host: {address!r}")
    return f"{name}:{address}"


def parse_alias(alias: str) -> str:
    """A --network-alias: one word of a hosts line."""
    if not _is_word(alias):
        raise UsageError(f"invalid network alias: {alias!r}")
    return alias


def _is_word(text: str) -> bool:
    """No whitespace or control character: each value becomes one field of one line."""
    return bool(text) and text.isprintable() and not any(c.isspace() for c in text)


def is_ip(text: str) -> bool:
    import ipaddress  # ~2 ms: only with --add-host or --dns

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_dns(address: str) -> str:
    if not is_ip(address.strip()):
        raise UsageError(f"IP address is not correctly formatted: {address}")
    return address.strip()


def parse_dns_search(domain: str) -> str:
    """docker's domain check; `.` alone means no search domain."""
    domain = domain.strip(" ")
    if domain == ".":
        return domain
    labels = domain.rstrip(".").split(".")
    if (
        len(domain) >= 255
        or not any(c.isalpha() for c in domain)
        or not all(
            label
            and label.isascii()
            and all(c.isalnum() or c == "-" for c in label)
            and label[0] != "-"
            and label[-1] != "-"
            for label in labels
        )
    ):
        raise UsageError(f"{domain} is not a valid domain")
    return domain


def parse_dns_option(option: str) -> str:
    if not _is_word(option):
        raise UsageError(f"invalid DNS option {option!r}: one word such as ndots:2")
    return option


def resolv_conf(host: bytes, dns: list[str], search: list[str], options: list[str]) -> bytes:
    """The host's resolv.conf as is, or, with any of the flags, docker's rebuilt one: each of
    nameserver, search and options from the flags where given, else from the host's file."""
    if not (dns or search or options):
        return host
    servers, domains, host_options = [], [], []
    for line in host.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields and fields[0] in ("search", "domain"):
            domains = fields[1:]  # the last one wins, as for the resolver
        elif fields and fields[0] == "options":
            host_options += fields[1:]
    search = search or domains
    lines = [f"nameserver {s}" for s in dns or servers]
    if search and search != ["."]:
        lines.append("search " + " ".join(d for d in search if d != "."))
    if options or host_options:
        lines.append("options " + " ".join(options or host_options))
    return ("\n".join(lines) + "\n").encode()


def extra_hosts_text(extra_hosts: list[str], gateway: str) -> str:
    """docker's lines for --add-host (`IP\\tNAME`), host-gateway as `gateway`."""
    lines = []
    for entry in extra_hosts:
        name, _, address = entry.partition(":")
        lines.append(f"{gateway if address == HOST_GATEWAY else address}\t{name}\n")
    return "".join(lines)


def recorded_extra_hosts(store_root: str, container_id: str) -> list[str]:
    """A container's ExtraHosts from its config.json (the hosts file of a peer on a user network
    is rewritten by whoever joins or leaves it); [] when there is none or the record is damaged."""
    from minirun.store.fsutil import read_record

    try:
        config = read_record(os.path.join(store_root, "containers", container_id, "config.json"))
    except Exception:
        return []
    extra = config.get("extra_hosts") if isinstance(config, dict) else None
    return [e for e in extra if isinstance(e, str)] if isinstance(extra, list) else []
