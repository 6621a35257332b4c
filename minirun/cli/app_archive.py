"""`save` on the typer app: writes to stdout unless -o names a file, and refuses a terminal as
docker does (`load`, its other half, is a lean verb: loadcmd.py)."""

from __future__ import annotations

import os
import sys

import typer

from minirun.cli.typerapp import new_app, open_store
from minirun.errors import UsageError

app = new_app()


@app.command("save")
def save(
    images: list[str] = typer.Argument(..., metavar="IMAGE...", help="Images to save (name[:tag] or id)."),
    output: str | None = typer.Option(None, "-o", "--output", help="Write to a file, instead of STDOUT."),
) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from minirun import events
    from minirun.distribution.imagesave import save_images, save_to_file

    store = open_store()
    if output:  # docker: an empty -o means stdout
        save_to_file(store, images, output)
    else:
        if sys.stdout.isatty():
            raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        sys.stdout.flush()
        with open(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 20) as out:
            save_images(store, images, out)
    for name in images:
        events.record(store.root, "image", "save", name, {"name": name})
