"""`import`, a lean verb (cli/commands.py says why): its benchmark is against `tar -x`."""

from __future__ import annotations

import sys

from minirun.cli.leanparser import Parser
from minirun.errors import NotFound, UsageError


def parser() -> Parser:
    p = Parser(prog="minirun import", description="Import the contents from a tarball to create a filesystem image.")
    p.add_argument("tarball", metavar="TARBALL|-", help="a rootfs tar (plain, gzip, zstd, xz, bzip2) or - for stdin")
    p.add_argument("name", nargs="?", default=None, metavar="NAME[:TAG]")
    p.add_argument("-m", "--message", default="", help="Set commit message for imported image")
    p.add_argument(
        "-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image"
    )
    return p


def import_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)

    from minirun.image.importer import import_tarball
    from minirun.store import Store
    from minirun.store.reference import parse_reference

    ref = parse_reference(args.name) if args.name else None
    store = Store(root)
    if args.tarball == "-":
        image = import_tarball(store, sys.stdin.buffer, ref, args.message, args.change)
    else:
        with open_named(args.tarball, "a tarball") as stream:
            image = import_tarball(store, stream, ref, args.message, args.change)
    from minirun import events

    events.record(store.root, "image", "import", image.id, {"name": str(ref) if ref else image.id})
    sys.stdout.write(image.id + "\n")
    return 0


def open_named(path: str, what: str):
    """The file an argument names, for reading; docker's words when it is not one (`what`: "a
    tarball", "an archive")."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not {what}") from None
