"""`run`'s options for what a service container needs beyond its command: -P and
--expose, --add-host and --dns*, --init, --ulimit, --shm-size, --stop-signal, --stop-timeout,
--group-add, --sysctl, --oom-score-adj, --network-alias, --cidfile, --pull, --platform,
--pid/--ipc/--uts host, --cgroupns. Parsed and checked
here with docker's words before anything is created; a container carries them as
containers/runconfig.py says. Lean, as runargs.py: the heavier checks are imported when used.
"""

from __future__ import annotations

import os

from minirun.errors import NotFound, UsageError
from minirun.records import Record

PULL_POLICIES = ("always", "missing", "never")


class RunFlags(Record):
    """These flags' values."""

    publish_all: bool
    expose: list[str]  # ["80/tcp", ...]
    extra_hosts: list[str]  # ["NAME:IP", ...]
    network_aliases: list[str]  # more names on a user network
    links: list[list[str]]  # --link: [name, alias] (containers/links.py)
    dns: list[str]
    dns_search: list[str]
    dns_options: list[str]
    init: bool
    ulimits: list[dict]  # [{"Name", "Soft", "Hard"}], one per name
    shm_size: int  # bytes; 0: docker's default
    stop_signal: str  # as given
    stop_timeout: int | None
    group_add: list[str]
    sysctls: dict[str, str]
    oom_score_adj: int  # --oom-score-adj; 0: unset
    cidfile: str
    pull: str
    platform: str  # os/arch[/variant] as given; "": any (a warning if not the host's)
    pid_mode: str
    ipc_mode: str
    runtime: str  # --runtime: an OCI runtime's path or name (containers/ociruntime.py)
    uts_mode: str
    cgroupns_mode: str  # --cgroupns: "host" or "private" (minirun's default, on v1 as on v2)
    DEFAULTS = {
        **dict.fromkeys(("publish_all", "init"), False),
        **dict.fromkeys(
            (
                "expose",
                "extra_hosts",
                "network_aliases",
                "links",
                "dns",
                "dns_search",
                "dns_options",
                "ulimits",
                "group_add",
            ),
            list,
        ),
        **dict.fromkeys(("stop_signal", "cidfile", "platform", "pid_mode", "ipc_mode", "uts_mode", "runtime"), ""),
        "cgroupns_mode": "private",
        "shm_size": 0,
        "oom_score_adj": 0,
        "stop_timeout": None,
        "sysctls": dict,
        "pull": "missing",
    }


def add_options(p) -> None:
    p.add_argument("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    p.add_argument("--expose", action="append", default=[], help="Expose a port or a range of ports")
    p.add_argument(
        "--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip, host:host-gateway)"
    )
    p.add_argument("--dns", action="append", default=[], help="Set custom DNS servers")
    p.add_argument(
        "--network-alias", "--net-alias", action="append", default=[], help="Add network-scoped alias for the container"
    )
    p.add_argument("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    p.add_argument("--link", action="append", default=[], help="Add link to another container (name[:alias])")
    p.add_argument("--dns-option", action="append", default=[], help="Set DNS options")
    p.add_argument(
        "--init", action="store_true", help="Run an init inside the container that forwards signals and reaps processes"
    )
    p.add_argument("--ulimit", action="append", default=[], help="Ulimit options (name=soft[:hard], e.g. nofile=1024)")
    p.add_argument("--shm-size", default=None, help="Size of /dev/shm (default 64m)")
    p.add_argument("--stop-signal", default=None, help="Signal to stop the container (default SIGTERM)")
    p.add_argument("--stop-timeout", default=None, help="Timeout (in seconds) to stop a container (default 10)")
    p.add_argument("--group-add", action="append", default=[], help="Add additional groups to join")
    p.add_argument(
        "--sysctl", action="append", default=[], help="Sysctl options (namespaced keys: net.*, kernel.shm*...)"
    )
    p.add_argument("--oom-score-adj", default=None, help="Tune host's OOM preferences (-1000 to 1000)")
    p.add_argument("--cidfile", default="", help="Write the container ID to the file")
    p.add_argument(
        "--pull", default="missing", help='Pull image before running ("always", "missing", "never") (default "missing")'
    )
    p.add_argument("--platform", default="", help="Set platform if server is multi-platform capable (linux/ARCH)")
    p.add_argument("--pid", default="", help="PID namespace to use (host)")
    p.add_argument("--ipc", default="", help="IPC mode to use (private, shareable, host)")
    p.add_argument("--uts", default="", help="UTS namespace to use (host)")
    p.add_argument(
        "--cgroupns",
        default="",
        help="Cgroup namespace to use (host|private): 'host' the host's, 'private' its own (default private)",
    )
    p.add_argument(
        "--runtime", default="", help="OCI runtime to run the container with (runc, crun, minirun-oci, a path)"
    )


def parse_flags(ns, network: str, hostname: str, publish: list[str]) -> RunFlags:
    """The parsed namespace's values checked, alone and against --network and -h as docker
    checks them. Pure, but for --init's look for tini on the host."""
    flags = RunFlags(
        publish_all=ns.publish_all,
        init=ns.init,
        cidfile=ns.cidfile,
        pull=ns.pull,
        platform=ns.platform,
        pid_mode=_namespace_mode("pid", ns.pid, ("host",)),
        ipc_mode=_namespace_mode("ipc", ns.ipc, ("host", "private", "shareable")),
        uts_mode=_namespace_mode("uts", ns.uts, ("host",)),
        runtime=ns.runtime,
        cgroupns_mode=_cgroupns_mode(ns.cgroupns),
    )
    if flags.pull not in PULL_POLICIES:
        raise UsageError(f'invalid pull option: \'{flags.pull}\': must be one of "always", "missing" or "never"')
    if flags.platform:
        from minirun.image.embedded import host_architecture

        if parse_platform(flags.platform)[1] != host_architecture():  # before any pull: nothing here emulates
            raise UsageError(f"platform {flags.platform} cannot run on this linux/{host_architecture()} host")
    if flags.cidfile and os.path.lexists(flags.cidfile):  # before any pull (created by open_cidfile)
        raise UsageError(_cidfile_found(flags.cidfile))
    if flags.runtime:
        from minirun.containers.runtimestate import find_runtime

        find_runtime(flags.runtime)  # before anything is created: docker's "unknown or invalid runtime name"
    if flags.uts_mode == "host" and hostname:
        raise UsageError("conflicting options: hostname and the UTS mode")
    _network_flags(ns, flags, network, publish)
    _process_flags(ns, flags)
    if ns.sysctl:
        from minirun.runtime.kernelsettings import check_sysctls, parse_sysctl

        flags.sysctls = dict(parse_sysctl(s) for s in ns.sysctl)
        check_sysctls(flags.sysctls, network, flags.ipc_mode)
    if flags.init:
        from minirun.containers.runconfig import check_init_binary

        check_init_binary()
    return flags


def _cgroupns_mode(value: str) -> str:
    """--cgroupns: docker's default is the daemon's (host on a cgroup v1 host, private on v2);
    minirun keeps every container in a cgroup namespace of its own unless asked (DESIGN's walls)."""
    if value not in ("", "host", "private"):
        raise UsageError("--cgroupns: invalid CGROUP mode")  # docker's CLI's words
    return value or "private"


def _namespace_mode(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value and value not in allowed:
        shown = ", ".join(allowed)
        raise UsageError(f"invalid --{name} mode {value!r}: supported are {shown} (no container:NAME)")
    return value


def _network_flags(ns, flags: RunFlags, network: str, publish: list[str]) -> None:
    if network.startswith("container:"):
        # the network, hosts and resolv.conf are the other container's (docker's checks)
        if ns.add_host:
            raise UsageError("conflicting options: custom host-to-IP mapping and the network mode")
        if ns.dns or ns.dns_search or ns.dns_option:
            raise UsageError("conflicting options: dns and the network mode")
        if ns.publish_all:
            raise UsageError("conflicting options: port publishing and the container type network mode")
        if ns.expose:
            raise UsageError("conflicting options: port exposing and the container type network mode")
    if ns.publish_all and not publish and network in ("host", "none"):
        import sys

        print(f"WARNING: Published ports are discarded when using {network} network mode", file=sys.stderr)
    if ns.expose:
        from minirun.containers.exposedports import parse_expose

        flags.expose = [key for spec in ns.expose for key in parse_expose(spec)]
    if ns.network_alias:
        from minirun.containers import dnsfiles

        # docker's rule: a default bridge, none, host or container: network has no aliases
        if network in ("bridge", "none", "host", "default") or network.startswith("container:"):
            raise UsageError("network-scoped alias is supported only for containers in user defined networks")
        flags.network_aliases = list(dict.fromkeys(dnsfiles.parse_alias(a) for a in ns.network_alias))
    if ns.link:
        from minirun.containers import links

        links.check_mode(network)
        flags.links = links.parse_links(ns.link)
    if ns.add_host or ns.dns or ns.dns_search or ns.dns_option:
        from minirun.containers import dnsfiles

        flags.extra_hosts = [dnsfiles.parse_add_host(h) for h in ns.add_host]
        flags.dns = [dnsfiles.parse_dns(a) for a in ns.dns]
        flags.dns_search = [dnsfiles.parse_dns_search(d) for d in ns.dns_search]
        flags.dns_options = [dnsfiles.parse_dns_option(o) for o in ns.dns_option]


def _process_flags(ns, flags: RunFlags) -> None:
    if ns.ulimit:
        from minirun.runtime.kernelsettings import parse_ulimit

        by_name = {}
        for spec in ns.ulimit:
            limit = parse_ulimit(spec)
            by_name[limit["Name"]] = limit  # a later one of the same name wins, as docker's
        flags.ulimits = list(by_name.values())
    if ns.shm_size is not None:
        from minirun.containers.resources import ram_in_bytes

        size = ram_in_bytes(ns.shm_size) if ns.shm_size else None
        if size is None:
            raise UsageError(f"invalid size: '{ns.shm_size}'")
        flags.shm_size = size
    if ns.stop_signal is not None:
        from minirun.containers.lifecycle import signal_number

        signal_number(ns.stop_signal)  # "invalid signal: X"
        flags.stop_signal = ns.stop_signal
    if ns.stop_timeout is not None:
        text = ns.stop_timeout.strip()
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
            raise UsageError(f"invalid --stop-timeout {ns.stop_timeout!r}: a whole number of seconds")
        flags.stop_timeout = int(text)
    if ns.oom_score_adj is not None:
        text = ns.oom_score_adj
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise UsageError(
                f'invalid argument "{text}" for "--oom-score-adj" flag: strconv.ParseInt: parsing "{text}": invalid syntax'
            )
        if not -1000 <= int(text) <= 1000:  # the daemon's check, its words
            raise UsageError(f"Invalid value {int(text)}, range for oom score adj is [-1000, 1000]")
        flags.oom_score_adj = int(text)
    for group in ns.group_add:
        if not group or ":" in group or not group.isprintable() or any(c.isspace() for c in group):
            raise UsageError(f"invalid --group-add {group!r}: a group name or a gid")
    flags.group_add = list(ns.group_add)


def parse_platform(text: str) -> tuple[str, str, str]:
    """`os[/arch[/variant]]` -> (os, arch, variant), lower case; only linux runs here."""
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise UsageError(f"invalid platform {text!r}: os[/arch[/variant]], e.g. linux/amd64")
    if parts[0] != "linux":
        raise UsageError(f"invalid platform {text!r}: only linux containers run here")
    from minirun.image.embedded import host_architecture

    arch = parts[1] if len(parts) > 1 else host_architecture()
    return parts[0], {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch), (parts[2:] or [""])[0]


def uts_hostname(flags: RunFlags) -> str:
    """--uts host: the container's hostname is the host's, as docker records it."""
    return os.uname().nodename if flags.uts_mode == "host" else ""


def config_fields(flags: RunFlags, image_config: dict, publish: list[list]) -> dict:
    """ContainerConfig's fields for these flags; the image's STOPSIGNAL and EXPOSE come along,
    as docker copies them into the container's Config."""
    from minirun.containers.exposedports import exposed_ports

    return {
        "extra_hosts": flags.extra_hosts,
        "network_aliases": flags.network_aliases,
        "links": flags.links,
        "dns": flags.dns,
        "dns_search": flags.dns_search,
        "dns_options": flags.dns_options,
        "init": flags.init,
        "ulimits": flags.ulimits,
        "shm_size": flags.shm_size,
        "stop_signal": flags.stop_signal or _image_stop_signal(image_config),
        "stop_timeout": flags.stop_timeout,
        "group_add": flags.group_add,
        "sysctls": flags.sysctls,
        "oom_score_adj": flags.oom_score_adj,
        "pid_mode": flags.pid_mode,
        "ipc_mode": flags.ipc_mode,
        "uts_mode": flags.uts_mode,
        "cgroupns_mode": flags.cgroupns_mode,
        "runtime": flags.runtime,
        "publish_all": flags.publish_all,
        "exposed_ports": exposed_ports(image_config, flags.expose, publish),
    }


def _image_stop_signal(image_config: dict) -> str:
    """The image's STOPSIGNAL if it is one (an image config came from outside)."""
    name = image_config.get("StopSignal")
    if not isinstance(name, str) or not name:
        return ""
    from minirun.containers.lifecycle import signal_number

    try:
        signal_number(name)
    except UsageError:
        return ""
    return name


def resolv_conf(flags: RunFlags, host: bytes) -> bytes:
    if not (flags.dns or flags.dns_search or flags.dns_options):
        return host
    from minirun.containers.dnsfiles import resolv_conf as rebuilt

    return rebuilt(host, flags.dns, flags.dns_search, flags.dns_options)


# -- --cidfile ----------------------------------------------------------------------------------


def open_cidfile(path: str) -> int | None:
    """docker's --cidfile: refused if the file exists (another container may own it), created
    empty now, before the container; the id goes in once it exists. None without the flag."""
    if not path:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise UsageError(_cidfile_found(path)) from None
    except OSError as exc:
        raise UsageError(f"failed to create the container ID file {path}: {exc.strerror}") from None


def _cidfile_found(path: str) -> str:
    return f"container ID file found, make sure the other container isn't running or delete {path}"


def write_cidfile(fd: int | None, container_id: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, container_id.encode())
    finally:
        os.close(fd)


def discard_cidfile(fd: int | None, path: str) -> None:
    """The container was never created: the file goes, as docker removes it."""
    if fd is None:
        return
    os.close(fd)
    try:
        os.unlink(path)
    except OSError:
        pass


# -- the image: --pull and --platform -----------------------------------------------------------


def resolve_image(store, text: str, flags: RunFlags):
    """The image to run, by --pull: `missing` pulls one the store lacks (an embedded recipe is
    built, never pulled), `always` pulls first, `never` only looks. Then --platform: an image of
    another platform is refused when one was asked for, and only warned about otherwise, as docker."""
    from minirun.image.embedded import find_image

    image = None
    if flags.pull != "always":
        try:
            image = find_image(store, text)
        except NotFound:
            if flags.pull == "never":
                raise
    if image is None:
        image = _pull(store, text, missing=flags.pull == "missing")
    check_platform(image.config, flags.platform, text)
    return image


def _pull(store, text: str, missing: bool):
    import sys

    from minirun import events
    from minirun.distribution.pull import pull
    from minirun.errors import MinirunError
    from minirun.store.reference import parse_reference

    shown = str(parse_reference(text))
    view = _PullLines(f"Unable to find image '{shown}' locally" if missing else "")
    try:
        result = pull(store, text, view=view)  # type: ignore[arg-type]
    except MinirunError as exc:
        if missing and not view.started:  # nothing found: docker's first line, then why
            raise NotFound(f"No such image: {shown} (pulling it: {exc.message})") from None
        raise
    finally:
        sys.stderr.flush()
    events.record(store.root, "image", "pull", result.image.id, {"name": result.reference})
    return result.image


class _PullLines:
    """run's pull progress on stderr (stdout is the container's), as docker prints it; held
    back until a layer moves, so a pull that finds nothing leaves only the error line."""

    def __init__(self, first: str) -> None:
        self.held = [first] if first else []
        self.started = False

    def line(self, text: str) -> None:
        if self.started:
            self._write(text)
        else:
            self.held.append(text)

    def layer_status(self, short_id: str, text: str) -> None:
        if not self.started:
            self.started = True
            for held in self.held:
                self._write(held)
        self._write(f"{short_id}: {text}")

    def layer_started(self, short_id: str, total: int) -> None:
        pass

    def layer_progress(self, short_id: str, count: int) -> None:
        pass

    @staticmethod
    def _write(text: str) -> None:
        import sys

        sys.stderr.write(text + "\n")


def check_platform(image_config: dict, wanted: str, text: str) -> None:
    from minirun.image.embedded import host_architecture

    os_, arch = image_config.get("os") or "linux", image_config.get("architecture") or ""
    variant = image_config.get("variant") or ""
    if wanted:
        want_os, want_arch, want_variant = parse_platform(wanted)
        if (os_, arch) != (want_os, want_arch) or (want_variant and variant and variant != want_variant):
            actual = "/".join(p for p in (os_, arch, variant) if p)
            raise UsageError(
                f"image with reference {text} was found but does not match the specified platform: "
                f"wanted {wanted}, actual: {actual}"
            )
    elif arch and arch != host_architecture():
        import sys

        print(
            f"WARNING: The requested image's platform ({os_}/{arch}) does not match the detected host "
            f"platform (linux/{host_architecture()}) and no specific platform was requested",
            file=sys.stderr,
        )
