"""`run`'s options, parsed without typer (a lean verb: cli/commands.py says why). docker's
spelling and meaning; the checks are frontend/runoptions.py's (the Engine API's create shares
them); errors are UsageError (exit 125)."""

from __future__ import annotations

from minirun.cli.leanparser import REMAINDER, SUPPRESS, Parser
from minirun.frontend.runoptions import RunOptions, run_options

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
        help="Security options (seccomp=PROFILE.json|unconfined|builtin, no-new-privileges[=true|false])",
    )
    p.add_argument(
        "--device", action="append", default=[], help="Add a host device to the container (HOST[:CONTAINER][:rwm])"
    )
    p.add_argument(
        "--device-cgroup-rule",
        action="append",
        default=[],
        help="Add a rule to the cgroup allowed devices list ('c|b|a MAJOR:MINOR rwm', * for any number)",
    )
    p.add_argument("--log-driver", default=None, help="Logging driver for the container (json-file, local, none)")
    p.add_argument("--log-opt", action="append", default=[], help="Log driver options (max-size, max-file, compress)")
    p.add_argument(
        "--network",
        "--net",
        action="append",
        default=[],
        help="Connect a container to a network (bridge, none, host, container:NAME, or user networks)",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        help="Publish a container's port(s) to the host ([HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])",
    )
    from minirun.frontend.runflags import add_options  # here: exec shares this module, not run's flags

    add_options(p)
    add_restart_health_options(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND")
    return p


def parse_run_args(argv: list[str], environ: dict[str, str] | None = None, verb: str = "run") -> RunOptions:
    return run_options(parser(verb).parse_args(argv), environ)


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


def add_resource_options(p: Parser) -> None:
    from minirun.containers.resources import add_options

    add_options(p)
    add_bool_option(p, "--oom-kill-disable", False, "Disable OOM Killer (cgroup v1 memory only)")


def add_process_options(p: Parser) -> None:
    """The options `run` and `exec` share for the process they start."""
    p.add_argument(
        "-e", "--env", action="append", default=[], help="Set environment variables (K=V, or K from the host)"
    )
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", default="", help="Working directory inside the container")
    p.add_argument("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
