"""`images`, a lean verb (cli/commands.py says why): docker images' columns and flags. Listing
images is as frequent as listing containers, and typer's import alone costs more than the verb's
budget (scripts/bench_cli.py)."""

from __future__ import annotations

import sys

from minirun.cli.leanparser import SUPPRESS, Parser


def parser() -> Parser:
    p = Parser(prog="minirun images", usage="minirun images [OPTIONS] [REPOSITORY[:TAG]]", description="List images.")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs.")
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images).")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="FILTER",
        help="Filter output based on conditions provided.",
    )
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output.")
    p.add_argument(
        "--format", default=None, help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    )
    p.add_argument("--digests", action="store_true", help="Show digests.")
    p.add_argument("repository", nargs="?", default=None, metavar="REPOSITORY[:TAG]", help=SUPPRESS)
    return p


def images_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    from minirun.cli.formatting import check, write

    check(args.format)
    from minirun.frontend.imageinfo import image_rows
    from minirun.humanize import human_size, image_age
    from minirun.store import Store

    store = Store(root)
    rows = image_rows(store, args.all)
    # docker's REPOSITORY[:TAG] argument is a reference filter
    filter_args = args.filter + ([f"reference={args.repository}"] if args.repository else [])
    if filter_args:
        from minirun.frontend.filters import IMAGE_KEYS, Filters, image_filter

        keep = image_filter(Filters(filter_args, IMAGE_KEYS), store)
        rows = [r for r in rows if keep(r.image, None if r.repository == "<none>" else f"{r.repository}:{r.tag}")]

    def shown_id(row) -> str:
        return row.image.id if args.no_trunc else row.image.short_id

    def digest_of(row) -> str:
        """The digest this row's repository knows the image by (docker's DIGEST column)."""
        for ref in store.images.repo_digests(row.image.id):
            name, _, digest = ref.rpartition("@")
            if name == row.repository:
                return digest
        return "<none>"

    if args.quiet:
        sys.stdout.write("".join(shown_id(row) + "\n" for row in rows))
        return 0

    def document(r) -> dict:
        size = human_size(r.size)
        return {
            "Containers": "N/A",
            "CreatedAt": r.image.created,
            "CreatedSince": image_age(r.image.created),
            "Digest": digest_of(r),
            "ID": shown_id(r),
            "Repository": r.repository,
            "SharedSize": "N/A",
            "Size": size,
            "Tag": r.tag,
            "UniqueSize": "N/A",
            "VirtualSize": size,
        }

    def table() -> None:
        from minirun.cli.tables import render_table

        headers = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        cells = [[r.repository, r.tag, shown_id(r), image_age(r.image.created), human_size(r.size)] for r in rows]
        if args.digests:  # docker puts the column after TAG
            headers.insert(2, "DIGEST")
            for line, r in zip(cells, rows):
                line.insert(2, digest_of(r))
        sys.stdout.write(render_table(headers, cells))

    write(args.format, [document(r) for r in rows], IMAGE_HEADERS, table)
    return 0


# docker's table headers of images' placeholders (its formatter's)
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "VirtualSize": "VIRTUAL SIZE",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}
