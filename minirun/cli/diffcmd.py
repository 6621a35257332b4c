"""`diff`, a lean verb (cli/commands.py says why): docker's change list of a container."""

from __future__ import annotations

import sys

from minirun.cli.leanparser import Parser
from minirun.errors import UsageError


def parser() -> Parser:
    p = Parser(prog="minirun diff", description="Inspect changes to files or directories on a container's filesystem.")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--format", default=None, help="'json' for docker's API form")
    return p


def diff_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    if args.format not in (None, "json"):
        raise UsageError(f"unsupported --format {args.format!r} (use 'json')")

    from minirun.containers.container import Containers
    from minirun.frontend.containerdiff import container_changes
    from minirun.layer.changes import KIND_CODES
    from minirun.store import Store

    containers = Containers(Store(root))
    container = containers.find(args.container)
    found = container_changes(containers.store, container)
    if args.format == "json":
        from minirun import leanjson

        sys.stdout.write(leanjson.dumps([{"Kind": KIND_CODES[c.kind], "Path": c.path} for c in found]) + "\n")
    else:
        sys.stdout.write("".join(f"{c.kind} {c.path}\n" for c in found))
    return 0
