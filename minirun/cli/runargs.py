"""`run`'s options, parsed without typer (a lean verb: cli/commands.py says why). docker's
spelling and meaning; errors are UsageError (exit 125)."""

from __future__ import annotations

import os

from minirun.cli.leanparser import REMAINDER, SUPPRESS, Parser
from minirun.errors import UsageError
from minirun.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.cli.runflags import RunFlags
    from minirun.containers.mountspec import MountSpec

DEFAULT_NETWORK = "bridge"  # as docker's; the others: none, host, container:NAME, a user network


def _no_flags() -> RunFlags:
    """RunOptions' default flags; runflags loads here, not with this module, which exec shares."""
    from minirun.cli.runflags import RunFlags

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
    publish: list[list]  # portmap.parse_publish's bindings
    resources: dict  # docker's HostConfig fields (resources.py)
    cap_add: list[str]
    cap_drop: list[str]
    privileged: bool
    security_opt: list[str]  # as recorded (privileges.parse_security_opts)
    devices: list[list]  # [host, container, permissions]
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

    DEFAULTS = {
        **dict.fromkeys(("rm", "detach", "read_only", "interactive", "tty", "privileged"), False),
        **dict.fromkeys(("name", "workdir", "user", "hostname", "detach_keys"), ""),
        **dict.fromkeys(("entrypoint", "log_driver", "healthcheck"), None),
        **dict.fromkeys(
            ("env", "volumes", "tmpfs", "publish", "cap_add", "cap_drop", "security_opt", "devices", "mounts"), list
        ),
        "volumes_from": list,
        **dict.fromkeys(("resources", "log_opts", "labels", "restart_policy"), dict),
        "network": DEFAULT_NETWORK,
        "sig_proxy": True,
        "flags": _no_flags,
    }


_DESCRIPTIONS = {
    "run": "Create and run a new container from an image.",
    "create": "Create a new container from an image (`start` runs it).",
}


def parser(verb: str = "run") -> Parser:
    """`run`'s options; `create` has the same but those of running it (-d, --detach-keys, --sig-proxy)."""
    p = Parser(
        prog=f"minirun {verb}",
        add_help=False,
        usage=f"minirun {verb} [OPTIONS] IMAGE [COMMAND] [ARG...]",
        description=_DESCRIPTIONS[verb],
    )
    p.add_argument("--help", action="help", help="Show this message and exit.")
    if verb == "run":
        p.add_argument("-d", "--detach", action="store_true", help="Run container in background and print container ID")
        p.add_argument(
            "--detach-keys", default="", metavar="KEYS", help="Override the key sequence for detaching a container"
        )
        add_bool_option(
            p, "--sig-proxy", True, "Proxy received signals to the process (default; --sig-proxy=false: not)"
        )
    p.add_argument("--rm", action="store_true", help="Automatically remove the container when it exits")
    p.add_argument("--name", default="", help="Assign a name to the container")
    p.add_argument("-l", "--label", action="append", default=[], help="Set meta data on a container (K=V)")
    p.add_argument("--label-file", action="append", default=[], help="Read in a line delimited file of labels")
    add_process_options(p)
    p.add_argument("-h", "--hostname", default="", help="Container host name")
    p.add_argument(
        "-v", "--volume", action="append", default=[], help="Bind mount a volume ([HOST_PATH|NAME:]DST[:ro|rw,nocopy])"
    )
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        help="Attach a filesystem mount (type=bind|volume|tmpfs,source=,target=,readonly,volume-opt=,tmpfs-size=,...)",
    )
    p.add_argument(
        "--volumes-from", action="append", default=[], help="Mount volumes from the specified container(s) ([:ro|rw])"
    )
    p.add_argument(
        "--tmpfs",
        action="append",
        default=[],
        help="Mount a tmpfs directory (TARGET[:size=..,mode=..,uid=..,gid=..,ro,exec,dev,suid])",
    )
    p.add_argument("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    p.add_argument("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    add_resource_options(p)
    p.add_argument("--cap-add", action="append", default=[], help="Add Linux capabilities (or ALL)")
    p.add_argument("--cap-drop", action="append", default=[], help="Drop Linux capabilities (or ALL)")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to this container")
    p.add_argument(
        "--security-opt",
        action="append",
        default=[],
        help="Security options (seccomp=PROFILE.json|unconfined, no-new-privileges[=true|false])",
    )
    p.add_argument(
        "--device", action="append", default=[], help="Add a host device to the container (HOST[:CONTAINER][:rwm])"
    )
    p.add_argument("--log-driver", default=None, help="Logging driver for the container (json-file, local, none)")
    p.add_argument("--log-opt", action="append", default=[], help="Log driver options (max-size, max-file, compress)")
    p.add_argument(
        "--network",
        "--net",
        default=DEFAULT_NETWORK,
        help="Connect a container to a network (bridge, none, host, container:NAME, or a user network)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        help="Publish a container's port(s) to the host ([HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])",
    )
    from minirun.cli.runflags import add_options  # here: exec shares this module, not run's flags

    add_options(p)
    add_restart_health_options(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND")
    return p


def parse_run_args(argv: list[str], environ: dict[str, str] | None = None, verb: str = "run") -> RunOptions:
    from minirun.cli import runflags

    ns = parser(verb).parse_args(argv)
    env = process_env(ns, environ)
    validate_hostname(ns.hostname)
    publish = parse_network_options(ns.network, ns.hostname, ns.publish)
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
        network=ns.network,
        publish=publish,
        resources=resource_options(ns),
        privileged=ns.privileged,
        log_driver=ns.log_driver,
        labels=parse_labels(ns.label, ns.label_file),
        mounts=mounts,
        volumes_from=list(ns.volumes_from),
        flags=runflags.parse_flags(ns, ns.network, ns.hostname, ns.publish),
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
        opts.security_opt = privileges.parse_security_opts(ns.security_opt)
    if ns.device:
        from minirun.runtime.devices import parse_device

        opts.devices = [parse_device(d) for d in ns.device]
    if getattr(ns, "detach_keys", ""):
        from minirun.containers.attachclient import parse_detach_keys

        parse_detach_keys(ns.detach_keys)  # refused now, before anything is created
        opts.detach_keys = ns.detach_keys
    opts.sig_proxy = getattr(ns, "sig_proxy", True)
    restart_health_options(ns, opts)
    return opts


def add_bool_option(p: Parser, name: str, default: bool, help_text: str) -> None:
    """A docker boolean flag: `--x` and `--x=true` set it, `--x=false` clears it (argparse
    matches a whole `--x=false` before it splits at `=`; a bare `--x` never takes the next word)."""
    dest = name.lstrip("-").replace("-", "_")
    p.add_argument(name, dest=dest, action="store_true", default=default, help=help_text)
    p.add_argument(f"{name}=true", dest=dest, action="store_true", help=SUPPRESS)
    p.add_argument(f"{name}=false", dest=dest, action="store_false", help=SUPPRESS)


def add_restart_health_options(p: Parser) -> None:
    p.add_argument(
        "--restart",
        default="no",
        metavar="POLICY",
        help="Restart policy when the container exits (no, on-failure[:N], always, unless-stopped)",
    )
    p.add_argument("--health-cmd", default="", metavar="CMD", help="Command to run to check health")
    p.add_argument(
        "--health-interval",
        default=None,
        metavar="DURATION",
        help="Time between running the check (ms|s|m|h) (default 30s)",
    )
    p.add_argument(
        "--health-timeout",
        default=None,
        metavar="DURATION",
        help="Maximum time to allow one check to run (ms|s|m|h) (default 30s)",
    )
    p.add_argument(
        "--health-retries",
        type=int,
        default=0,
        metavar="INT",
        help="Consecutive failures needed to report unhealthy (default 3)",
    )
    p.add_argument(
        "--health-start-period",
        default=None,
        metavar="DURATION",
        help="Start period for the container to initialize before counting retries (ms|s|m|h) (default 0s)",
    )
    p.add_argument(
        "--health-start-interval",
        default=None,
        metavar="DURATION",
        help="Time between running the check during the start period (ms|s|m|h) (default 5s)",
    )
    p.add_argument("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")


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


def add_resource_options(p: Parser) -> None:
    from minirun.containers.resources import add_options

    add_options(p)


def resource_options(ns) -> dict:
    """--memory and friends, parsed and checked with docker's defaults (nothing is created before)."""
    from minirun.containers.resources import FLAGS, for_run, parse_options

    return for_run(parse_options({key: getattr(ns, key) for key in FLAGS}))


def add_process_options(p: Parser) -> None:
    """The options `run` and `exec` share for the process they start."""
    p.add_argument(
        "-e", "--env", action="append", default=[], help="Set environment variables (K=V, or K from the host)"
    )
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", default="", help="Working directory inside the container")
    p.add_argument("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")


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
    items = [line for path in files for line in _text_lines(path, "label file")] + list(labels)
    result: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise UsageError(f"invalid label {item!r}: an empty key")
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
