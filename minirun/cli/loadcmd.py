"""`load`, a lean verb (cli/commands.py says why): its benchmark is against `tar -x` of the same
layers, where typer's import alone was ~5 % of the time.

It reads stdin unless -i names a file; on a terminal each layer gets a rich progress row (quiet in
pipes and with -q); the result lines are docker's (`Loaded image: NAME:TAG`, or
`Loaded image ID: sha256:...` for an untagged image)."""

from __future__ import annotations

import sys

from minirun.cli.leanparser import Parser
from minirun.errors import UsageError

TYPE_CHECKING = False  # typing costs ~6 ms to import
if TYPE_CHECKING:
    from typing import BinaryIO


def parser() -> Parser:
    p = Parser(
        prog="minirun load",
        usage="minirun load [OPTIONS]",
        description="Load an image from a tar archive or STDIN (docker save and OCI layout archives).",
    )
    p.add_argument("-i", "--input", dest="input", default=None, help="Read from tar archive file, instead of STDIN.")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output.")
    return p


def load_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    from minirun.distribution.imageload import load_archive
    from minirun.store import Store

    if args.input is None and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is empty")
    store = Store(root)
    stream: BinaryIO
    if args.input is not None:
        from minirun.cli.importcmd import open_named

        stream = open_named(args.input, "an archive")
    else:
        stream = sys.stdin.buffer
    with stream:
        if args.quiet or not sys.stdout.isatty():
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
    return 0


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
