"""Image verbs on typer: history, rmi, tag, and inspect (of images and containers alike)."""

from __future__ import annotations

import json

import typer

from minirun.cli.typerapp import act_on_each, new_app, open_store, print_table
from minirun.errors import NotFound, UsageError

app = new_app()


@app.command("history")
def history(
    image: str = typer.Argument(..., metavar="IMAGE"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Don't truncate output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    format_: str | None = typer.Option(
        None, "--format", help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    ),
) -> None:
    """Show the history of an image, newest first."""
    from minirun.cli.formatting import check, write
    from minirun.frontend.imageinfo import history_rows
    from minirun.humanize import ellipsis, human_size, image_age
    from minirun.image.embedded import find_image

    check(format_)
    store = open_store()
    rows = history_rows(store, find_image(store, image))

    def shown_id(image_id: str | None) -> str:
        if image_id is None:
            return "<missing>"
        return image_id if no_trunc else image_id.split(":", 1)[1][:12]

    def created_by(text: str) -> str:
        text = text.replace("\t", " ")
        return text if no_trunc else ellipsis(text, 45)

    if quiet:
        for row in rows:
            print(shown_id(row.image_id))
        return
    documents = [
        {
            "Comment": row.comment,
            "CreatedAt": row.created,
            "CreatedBy": created_by(row.created_by),
            "CreatedSince": image_age(row.created) if row.created else "",
            "ID": shown_id(row.image_id),
            "Size": human_size(row.size),
        }
        for row in rows
    ]

    def table() -> None:
        print_table(
            ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            [
                [
                    shown_id(r.image_id),
                    image_age(r.created) if r.created else "",
                    created_by(r.created_by),
                    human_size(r.size),
                    r.comment,
                ]
                for r in rows
            ],
        )

    write(format_, documents, HISTORY_HEADERS, table)


HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


@app.command("rmi")
def rmi(
    images_: list[str] = typer.Argument(..., metavar="IMAGE...", help="Images to remove."),
    force: bool = typer.Option(False, "-f", "--force", help="Force removal of the image."),
) -> None:
    """Remove images: untag, and delete layers nothing uses any more."""
    store = open_store()

    def remove(text: str) -> None:
        for line in store.remove_image(text, force=force):
            print(line)

    act_on_each(images_, remove)


@app.command("tag")
def tag(
    source: str = typer.Argument(..., metavar="SOURCE_IMAGE[:TAG]"),
    target: str = typer.Argument(..., metavar="TARGET_IMAGE[:TAG]"),
) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    from minirun.frontend.imagetag import tag_image

    tag_image(open_store(), source, target)


@app.command("inspect")
def inspect(
    names: list[str] = typer.Argument(..., metavar="NAME|ID..."),
    type_: str | None = typer.Option(None, "--type", help="'container' or 'image' (default: a container first)."),
    format_: str | None = typer.Option(None, "-f", "--format", help="A Go TEMPLATE run on each object ('json')."),
) -> None:
    """Show low-level information on containers or images as JSON."""
    from minirun.containers.container import Containers
    from minirun.containers.liveness import refresh
    from minirun.frontend.containerinfo import inspect_container
    from minirun.frontend.imageinfo import inspect_image
    from minirun.image.embedded import find_image

    if type_ not in (None, "container", "image"):
        raise UsageError(f'"{type_}" is not a valid value for --type')
    from minirun.cli.formatting import check

    check(format_)
    store = open_store()
    containers = Containers(store)
    documents = []
    for name in names:
        if type_ != "image":
            try:
                documents.append(inspect_container(store, refresh(containers, containers.find(name), record=False)))
                continue
            except NotFound:
                if type_ == "container":
                    raise
        documents.append(inspect_image(store, find_image(store, name)))
    from minirun.cli.formatting import write_one_each

    if not write_one_each(format_, documents):
        print(json.dumps(documents, indent=4))
