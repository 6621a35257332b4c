"""`load` and `save` on the typer app: archives in and out, as docker's CLI takes and prints them.

load reads stdin unless -i names a file; on a terminal each layer gets a rich progress row
(quiet in pipes and with -q); the result lines are docker's (`Loaded image: NAME:TAG`, or
`Loaded image ID: sha256:...` for an untagged image). save writes to stdout unless -o names a file,
and refuses a terminal as docker does.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import typer

from minirun.cli.typerapp import new_app, open_store
from minirun.errors import NotFound, UsageError

app = new_app()


class _Bars:
    """One rich progress row per layer (and one for reading a piped archive): archive_index.Progress,
    duck-typed so that other verbs need not import the load machinery."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.tasks: dict[str, tuple[int, int]] = {}  # layer -> (task, total)
        self.spool_task: int | None = None
        self.spooled_bytes = 0

    def spooled(self, nbytes: int) -> None:
        if self.spool_task is None:
            self.spool_task = self.progress.add_task("Reading archive", total=None)
        self.spooled_bytes += nbytes
        self.progress.advance(self.spool_task, nbytes)

    def layer_started(self, key: str, total: int) -> None:
        if self.spool_task is not None:  # the archive is all in: its row is complete
            self.progress.update(self.spool_task, total=self.spooled_bytes)
            self.spool_task = None
        self.tasks[key] = (self.progress.add_task(f"{_short(key)}: Loading layer", total=total), total)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.progress.advance(self.tasks[key][0], nbytes)

    def layer_finished(self, key: str, note: str) -> None:
        task, total = self.tasks[key]
        self.progress.update(task, description=f"{_short(key)}: {note}", completed=total)


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


@app.command("load")
def load(
    input_: str | None = typer.Option(None, "-i", "--input", help="Read from tar archive file, instead of STDIN."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Suppress the load output."),
) -> None:
    """Load an image from a tar archive or STDIN (docker save and OCI layout archives)."""
    from minirun.distribution.imageload import load_archive

    if input_ is None and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is empty")
    store = open_store()
    stream: BinaryIO
    if input_ is not None:
        try:
            stream = open(input_, "rb")
        except FileNotFoundError:
            raise NotFound(f"open {input_}: no such file or directory") from None
        except IsADirectoryError:
            raise UsageError(f"{input_} is a directory, not an archive") from None
    else:
        stream = sys.stdin.buffer
    with stream:
        if quiet or not sys.stdout.isatty():
            loaded = load_archive(store, stream)
        else:
            from rich.progress import BarColumn, DownloadColumn, TextColumn
            from rich.progress import Progress as Rich

            with Rich(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), transient=False) as bars:
                loaded = load_archive(store, stream, _Bars(bars))  # type: ignore[arg-type]  # duck-typed Progress
    from minirun import events

    for image in loaded:
        events.record(store.root, "image", "load", image.image_id, {"name": (image.refs or [image.image_id])[0]})
        for name, old_id in image.replaced:
            print(f"The image {name} already exists, renaming the old one with ID {old_id} to empty string")
        for name in image.refs:
            print(f"Loaded image: {name}")
        if not image.refs:
            print(f"Loaded image ID: {image.image_id}")


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
