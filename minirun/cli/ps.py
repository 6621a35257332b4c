"""`ps`, a lean verb (cli/commands.py says why): docker ps's columns, statuses and flags."""

from __future__ import annotations

import sys

from minirun.cli.leanparser import Parser


def parser() -> Parser:
    p = Parser(prog="minirun ps", description="List containers.")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument(
        "--format", default=None, help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)"
    )
    p.add_argument(
        "-n", "--last", type=int, default=-1, metavar="INT", help="Show n last created containers (includes all states)"
    )
    p.add_argument(
        "-l", "--latest", action="store_true", help="Show the latest created container (includes all states)"
    )
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="FILTER",
        help="Filter output based on conditions provided",
    )
    return p


def ps_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    last = 1 if args.latest else args.last
    if args.format is not None:  # formatting.py only for a format: the plain table needs none of it
        from minirun.cli.formatting import check

        check(args.format)

    from minirun.containers.container import Containers
    from minirun.containers.listindex import listing
    from minirun.containers.liveness import refresh
    from minirun.frontend.containerinfo import ps_json, ps_rows
    from minirun.store import Store

    store = Store(root)
    containers = Containers(store)
    listed = [refresh(containers, c, reload=False, record=False) for c in listing(containers)]
    show_all = args.all
    if args.filter:
        from minirun.frontend.filters import PS_KEYS, Filters, container_filter, shows_every_state

        filters = Filters(args.filter, PS_KEYS)
        keep = container_filter(filters, store, listed)
        listed = [c for c in listed if keep(c)]
        show_all = show_all or shows_every_state(filters)
    if args.quiet:  # ids alone: no row text to make, no size to walk
        from minirun.frontend.containerinfo import ps_id, ps_shown

        sys.stdout.write("".join(ps_id(c, args.no_trunc) + "\n" for c in ps_shown(listed, show_all, last)))
        return 0
    rows = ps_rows(listed, show_all, args.no_trunc, last)
    if args.size or ".Size" in (args.format or ""):  # docker sizes only when asked or shown
        from minirun.frontend.containerinfo import size_text

        for row in rows:
            row.size = size_text(store, row.container)

    def table() -> None:
        from minirun.cli.tables import render_table

        headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        cells = [[r.id, r.image, r.command, r.created, r.status, r.ports, r.names] for r in rows]
        if args.size:  # docker's last column
            headers.append("SIZE")
            for line, row in zip(cells, rows):
                line.append(row.size)
        sys.stdout.write(render_table(headers, cells))

    if args.format is None:
        table()
        return 0
    from minirun.cli.formatting import is_default, write

    documents: list[dict] = [] if is_default(args.format) else [ps_json(row) for row in rows]  # the table needs none
    write(args.format, documents, PS_HEADERS, table)
    return 0


# docker's table headers of ps's placeholders (its formatter's)
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
}
