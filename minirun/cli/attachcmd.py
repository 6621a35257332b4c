"""`attach`, a lean verb (cli/commands.py): the terminal joined to a running container's stdio
through its monitor (containers/attachclient.py); exits with the container's exit code, or 0
once the detach keys are typed."""

from __future__ import annotations

from minirun.cli.leanparser import Parser


def parser() -> Parser:
    from minirun.cli.runargs import add_bool_option

    p = Parser(
        prog="minirun attach",
        usage="minirun attach [OPTIONS] CONTAINER",
        description="Attach local standard input, output, and error streams to a running container.",
    )
    p.add_argument(
        "--detach-keys", default="", metavar="KEYS", help="Override the key sequence for detaching a container"
    )
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    add_bool_option(
        p, "--sig-proxy", True, "Proxy all received signals to the process (default; --sig-proxy=false: not)"
    )
    p.add_argument("container", metavar="CONTAINER")
    return p


def attach_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    from minirun.containers.attachclient import attach, parse_detach_keys
    from minirun.containers.container import Containers
    from minirun.store import Store

    keys = parse_detach_keys(args.detach_keys)
    containers = Containers(Store(root))
    container = containers.find(args.container)
    return attach(containers, container, stdin=not args.no_stdin, sig_proxy=args.sig_proxy, keys=keys)
