"""`run`'s (and `create`'s) options checked with docker's rules, into RunOptions: from the CLI's
parsed argv (cli/runargs.py) or from an Engine API create request (api/containerspec.py). Lean, as
the run path it is on: the heavier checks are imported when used; errors are UsageError (exit 125)."""

from __future__ import annotations

import os

from minirun.errors import UsageError
from minirun.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.containers.mountspec import MountSpec
    from minirun.frontend.runflags import RunFlags

DEFAULT_NETWORK = "bridge"  # as docker's; the others: none, host, container:NAME, a user network


def _no_flags() -> RunFlags:
    """RunOptions' default flags; runflags loads here, not with this module, which exec shares."""
    from minirun.frontend.runflags import RunFlags

    return RunFlags()


class RunOptions(Record):
    """What `run` (or `create`) was asked, parsed and checked."""

    image: str
    command: list[str]
    rm: bool
    detach: bool
    name: str
    env: list[str]  # resolved K=V, in order
    workdir: str
    user: str
    hostname: str
    volumes: list[MountSpec]  # -v, as mountspec.parse_volume reads it
    tmpfs: list[str]
    read_only: bool
    entrypoint: str | None
    interactive: bool
    tty: bool
    network: str
    more_networks: list[str]  # --network given again: the container is on these too (eth1...)
    publish: list[list]  # portmap.parse_publish's bindings
    resources: dict  # docker's HostConfig fields (resources.py)
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    security_opt: list[str]  # as recorded (privileges.parse_security_opts)
    devices: list[list]  # [host, container, permissions]
    device_cgroup_rules: list[str]  # --device-cgroup-rule, checked, as given
    log_driver: str | None
    log_opts: dict  # resolved against the store's defaults by run.py
    labels: dict  # --label-file, then -l (a later key wins)
    detach_keys: str  # run -it: docker's --detach-keys ("": ctrl-p,ctrl-q)
    sig_proxy: bool  # run -it: signals the client gets go on to PID 1
    mounts: list[MountSpec]  # --mount (mountspec.parse_mount)
    volumes_from: list[str]  # --volumes-from CONTAINER[:ro|rw], checked
    flags: RunFlags  # -P, --init, --ulimit, --sysctl, --pull... (runflags.py)
    restart_policy: dict  # --restart (restartpolicy.parse_policy); {}: no
    healthcheck: dict | None  # --health-*, --no-healthcheck (healthconfig.from_flags); None: the image's
    # only an Engine API request's (api/containerspec.py): Config.Volumes' paths, anonymous volumes
    # as the image's VOLUMEs; HostConfig.ConsoleSize [height, width] of a -t terminal ([]: unset)
    config_volumes: list[str]
    console_size: list[int]

    DEFAULTS = {
        **dict.fromkeys(("rm", "detach", "read_only", "interactive", "tty", "privileged"), False),
        **dict.fromkeys(("name", "workdir", "user", "hostname", "detach_keys"), ""),
        **dict.fromkeys(("entrypoint", "log_driver", "healthcheck"), None),
        **dict.fromkeys(
            ("env", "volumes", "tmpfs", "publish", "cap_add", "cap_drop", "security_opt", "devices", "mounts"), list
        ),
        "device_cgroup_rules": list,
        "volumes_from": list,
        "more_networks": list,
        "config_volumes": list,
        "console_size": list,
        **dict.fromkeys(("resources", "log_opts", "labels", "restart_policy"), dict),
        "network": DEFAULT_NETWORK,
        "sig_proxy": True,
        "flags": _no_flags,
    }


def run_options(ns, environ: dict[str, str] | None = None) -> RunOptions:
    """A parsed namespace of `run`'s options (cli/runargs.py's parser, or the Engine API's
    translation of a create request: api/containerspec.py) checked with docker's rules."""
    from minirun.frontend import runflags

    env = process_env(ns, environ)
    validate_hostname(ns.hostname)
    network, *more_networks = given_networks(ns.network)
    publish = parse_network_options(network, ns.hostname, ns.publish)
    volumes, mounts = parse_mount_options(ns.volume, ns.mount, ns.volumes_from)
    tmpfs = [parse_tmpfs(t) for t in ns.tmpfs]
    targets = [m.target for m in volumes + mounts] + [t.partition(":")[0] for t in tmpfs]
    if targets:  # rootfs.py loads ctypes: not for a run without mounts
        from minirun.runtime.rootfs import check_targets

        check_targets(targets)
    opts = RunOptions(
        image=ns.image,
        command=list(ns.command),
        rm=ns.rm,
        detach=getattr(ns, "detach", False),
        name=ns.name,
        env=env,
        workdir=ns.workdir,
        user=ns.user,
        hostname=ns.hostname,
        volumes=volumes,
        tmpfs=tmpfs,
        read_only=ns.read_only,
        entrypoint=ns.entrypoint,
        interactive=ns.interactive,
        tty=ns.tty,
        network=network,
        more_networks=more_networks,
        publish=publish,
        resources=resource_options(ns),
        privileged=ns.privileged,
        log_driver=ns.log_driver,
        labels=parse_labels(ns.label, ns.label_file),
        mounts=mounts,
        volumes_from=list(ns.volumes_from),
        flags=runflags.parse_flags(ns, network, ns.hostname, ns.publish),
        config_volumes=list(getattr(ns, "config_volumes", [])),
        console_size=list(getattr(ns, "console_size", [])),
    )
    if ns.log_opt:
        from minirun.containers.logconfig import parse_opts

        opts.log_opts = parse_opts(ns.log_opt)
    if ns.cap_add or ns.cap_drop or ns.security_opt:
        from minirun.runtime import privileges

        opts.cap_add, opts.cap_drop = (
            privileges.normalize_capabilities(ns.cap_add),
            privileges.normalize_capabilities(ns.cap_drop),
        )
        # (the Engine API's namespace says its seccomp values are profiles' JSON, not paths)
        opts.security_opt = privileges.parse_security_opts(ns.security_opt, getattr(ns, "inline_profiles", False))
    if opts.flags.cgroupns_mode == "host" and not ns.privileged and ({"CAP_SYS_ADMIN", "ALL"} & set(opts.cap_add)):
        # the host's cgroup namespace and the mount syscall: `mount -t cgroup` shows a v1
        # hierarchy's root, with the release_agent the host's root runs (CVE-2022-0492). docker
        # leaves that wall to AppArmor, which minirun does not have: refused
        raise UsageError(
            "conflicting options: --cgroupns host with CAP_SYS_ADMIN would let the container mount "
            "the host's cgroup hierarchies (use --privileged to mean it)"
        )
    if ns.device:
        from minirun.runtime.devices import parse_device

        opts.devices = [parse_device(d) for d in ns.device]
    if ns.device_cgroup_rule:
        from minirun.runtime.devices import parse_cgroup_rule

        for rule in ns.device_cgroup_rule:
            try:
                parse_cgroup_rule(rule)
            except ValueError:
                raise UsageError(
                    f'invalid argument "{rule}" for "--device-cgroup-rule" flag: invalid device cgroup format \'{rule}\''
                ) from None
        opts.device_cgroup_rules = list(ns.device_cgroup_rule)
    if getattr(ns, "detach_keys", ""):
        from minirun.containers.attachclient import parse_detach_keys

        parse_detach_keys(ns.detach_keys)  # refused now, before anything is created
        opts.detach_keys = ns.detach_keys
    opts.sig_proxy = getattr(ns, "sig_proxy", True)
    restart_health_options(ns, opts)
    return opts


def restart_health_options(ns, opts: RunOptions) -> None:
    """--restart (refused with --rm, as docker) and the healthcheck flags, parsed and checked."""
    if ns.restart not in ("", "no"):
        from minirun.containers.restartpolicy import parse_policy

        opts.restart_policy = parse_policy(ns.restart)
        if ns.rm:
            raise UsageError("conflicting options: cannot specify both --restart and --rm")
    timings = {
        name: getattr(ns, name)
        for name in ("health_interval", "health_timeout", "health_start_period", "health_start_interval")
    }
    if ns.health_cmd or ns.health_retries or ns.no_healthcheck or any(v is not None for v in timings.values()):
        from minirun.containers.healthconfig import from_flags

        opts.healthcheck = from_flags(ns.health_cmd, timings, ns.health_retries, ns.no_healthcheck)


def validate_hostname(hostname: str) -> None:
    """RFC 1123 names only: the hostname lands in the container's /etc/hosts and in the kernel
    (sethostname takes at most 64 bytes)."""
    labels = hostname.split(".")
    if hostname and (
        len(hostname) > 64
        or not all(
            0 < len(label) <= 63
            and label[0] != "-"
            and label[-1] != "-"
            and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
            for label in labels
        )
    ):
        raise UsageError(f"invalid hostname format: {hostname!r}")


def given_networks(given: str | list[str]) -> list[str]:
    """--network, once or more (a list from the CLI's parser, one name from the Engine API's):
    the default bridge when none; more than one only of bridge networks, each once, as docker 25."""
    networks = [given] if isinstance(given, str) else list(given) or [DEFAULT_NETWORK]
    if len(networks) > 1:
        if any(n in ("host", "none") or n.startswith("container:") for n in networks):
            raise UsageError("conflicting options: cannot attach both user-defined and non-user-defined network-modes")
        twice = next((n for i, n in enumerate(networks) if n in networks[:i]), None)
        if twice is not None:
            raise UsageError(f'network "{twice}" is specified multiple times')
    return networks


def parse_network_options(network: str, hostname: str, publish: list[str]) -> list[list]:
    """docker's checks of --network against -h and -p; returns the -p bindings. Whether a named
    network exists is the store's question (run.py)."""
    if not network:
        raise UsageError("invalid network: an empty name")
    if network.startswith("container:"):
        if not network[len("container:") :]:
            raise UsageError("invalid network mode: container: needs a container name or ID")
        if hostname:
            raise UsageError("conflicting options: hostname and the network mode")
        if publish:
            raise UsageError("conflicting options: port publishing and the container type network mode")
    if not publish:
        return []
    from minirun.net.portmap import parse_publish

    bindings = [b for spec in publish for b in parse_publish(spec)]
    if network in ("host", "none"):
        import sys

        print(f"WARNING: Published ports are discarded when using {network} network mode", file=sys.stderr)
        return []
    return bindings


def resource_options(ns) -> dict:
    """--memory and friends, parsed and checked with docker's defaults (nothing is created before)."""
    from minirun.containers.resources import FLAGS, for_run, parse_options

    return for_run(parse_options({key: getattr(ns, key, None) for key in FLAGS}))


def process_env(ns, environ: dict[str, str] | None) -> list[str]:
    """--env-file then -e, resolved against the host's environment; checks -w as docker does."""
    host_env = os.environ if environ is None else environ
    env: list[str] = []
    for path in ns.env_file:
        env += read_env_file(path, host_env)
    for item in ns.env:
        env += env_item(item, host_env)
    if ns.workdir and not ns.workdir.startswith("/"):
        raise UsageError(f"the working directory '{ns.workdir}' is invalid, it needs to be an absolute path")
    return env


def env_item(item: str, host_env) -> list[str]:
    """`K=V` as is; a bare `K` takes the host's value, or is dropped when the host has none."""
    if "=" in item:
        if item.startswith("="):
            raise UsageError(f"invalid environment variable: {item}")
        return [item]
    if not item:
        raise UsageError("invalid environment variable: empty name")
    return [f"{item}={host_env[item]}"] if item in host_env else []


def parse_labels(labels: list[str], files: list[str]) -> dict[str, str]:
    """docker's -l K=V (K alone: an empty value) and --label-file (one per line, # comments), the
    files first; a key given twice keeps its last value."""
    return key_values([line for path in files for line in _text_lines(path, "label file")] + list(labels), "label")


def key_values(items: list[str], what: str) -> dict[str, str]:
    """K=V words, docker's way (--label, a volume's -o): a key alone has an empty value, a key
    given twice keeps its last one; an empty key is refused, named as `what`."""
    result: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise UsageError(f"invalid {what} {item!r}: an empty key")
        result[key] = value
    return result


def _text_lines(path: str, what: str) -> list[str]:
    """A small text file's meaningful lines: no blank ones, no # comments."""
    from minirun.store.fsutil import read_capped

    try:
        text = read_capped(path, ENV_FILE_LIMIT, what).decode("utf-8")
    except OSError as exc:
        raise UsageError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    stripped = (line.lstrip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


ENV_FILE_LIMIT = 1 << 20  # execve takes ~2 MiB of arguments and environment in all


def read_env_file(path: str, host_env) -> list[str]:
    return [item for line in _text_lines(path, "env file") for item in env_item(line, host_env)]


def parse_mount_options(volumes: list[str], mounts: list[str], volumes_from: list[str]):
    """-v, --mount and --volumes-from, checked now (mountspec.py): nothing is created for a
    mistake. Which volume a name means is decided at create time (containers/mounts.py)."""
    if not (volumes or mounts or volumes_from):
        return [], []
    from minirun.containers.mountspec import parse_mount, parse_volume, parse_volumes_from

    for spec in volumes_from:
        parse_volumes_from(spec)
    return [parse_volume(v) for v in volumes], [parse_mount(m) for m in mounts]


def parse_tmpfs(spec: str) -> str:
    """TARGET[:OPTIONS], normalized; the options are checked now (rootfs.tmpfs_mount), so a
    mistake is refused before anything is created, never ignored."""
    target, sep, options = spec.partition(":")
    if not target.startswith("/") or target == "/":
        raise UsageError(f"invalid tmpfs destination: '{spec}'")
    from minirun.runtime.rootfs import tmpfs_mount

    tmpfs_mount(spec)
    return os.path.normpath(target) + (f":{options}" if sep and options else "")
