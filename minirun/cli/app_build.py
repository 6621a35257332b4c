"""`build` on the typer app: options in, minirun.build.builder called, its progress rendered.

On a terminal each step shows as docker's classic builder prints it (`Step 2/5 : RUN ...`,
` ---> Using cache`, ` ---> <id>`), styled; in a pipe, or with -q, only the final
`Successfully built` / `Successfully tagged` lines are printed. A RUN's own output goes
straight through (with -q it is kept aside and shown on stderr if the step fails).
"""

from __future__ import annotations

import os
import sys
import time

import typer

from minirun.build.builder import Progress
from minirun.cli.typerapp import new_app, open_store
from minirun.errors import UsageError

app = new_app()

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_PROGRESS_MODES = ("auto", "plain", "tty", "quiet")


class _View(Progress):
    def __init__(self, console, styled: bool, capture: bool) -> None:
        self.console = console  # None: no step lines
        self.styled = styled
        self.capture = capture
        self._captured: BinaryIO | None = None
        self._null = -1
        self._step_started = time.monotonic()

    def _line(self, text, style: str | None = None) -> None:
        if self.console is not None:
            self.console.print(
                text, style=style if self.styled else None, markup=False, highlight=False, soft_wrap=True
            )

    def step(self, number: int, total: int, text: str) -> None:
        self._step_started = time.monotonic()
        if self.console is None:
            return
        from rich.text import Text

        self._line(Text.assemble((f"Step {number}/{total} : ", "bold blue" if self.styled else ""), text))

    def using_cache(self) -> None:
        self._line(" ---> Using cache", "green")

    def running_in(self, container_id: str) -> None:
        self._line(f" ---> Running in {container_id[:12]}", "dim")

    def removing(self, container_id: str) -> None:
        self._line(f"Removing intermediate container {container_id[:12]}", "dim")

    def image(self, image_id: str) -> None:
        if self.console is None:
            return
        from rich.text import Text

        text = Text(f" ---> {image_id.split(':', 1)[-1][:12]}", style="yellow" if self.styled else "")
        if self.styled:  # the terminal view also says how long the step took
            text.append(f"  {time.monotonic() - self._step_started:.2f}s", style="dim")
        self._line(text)

    def run_stdio(self) -> tuple[int, int, int] | None:
        if self.console is not None:
            self.console.file.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        if not self.capture:
            return None
        import tempfile

        if self._captured is None:
            self._captured = tempfile.TemporaryFile()
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._captured.seek(0)
        self._captured.truncate()
        fd = self._captured.fileno()
        return (self._null, fd, fd)

    def run_done(self, failed: bool) -> None:
        if self.capture and failed and self._captured is not None:
            self._captured.seek(0)
            sys.stderr.buffer.write(self._captured.read())
            sys.stderr.flush()


def _view(mode: str, quiet: bool) -> _View:
    if mode not in _PROGRESS_MODES:
        raise UsageError(f"invalid --progress {mode!r} (use {', '.join(_PROGRESS_MODES)})")
    if quiet or mode == "quiet":
        return _View(None, False, capture=True)
    if mode == "auto" and not sys.stdout.isatty():
        return _View(None, False, capture=False)
    from rich.console import Console

    if mode == "plain":
        return _View(Console(color_system=None, force_terminal=False, highlight=False), False, capture=False)
    return _View(Console(force_terminal=True if mode == "tty" else None, highlight=False), True, capture=False)


@app.command("build")
def build(
    context: str = typer.Argument(..., metavar="PATH", help="The build context: the directory COPY and ADD read from."),
    tag: list[str] = typer.Option([], "-t", "--tag", help="Name and optionally a tag, NAME[:TAG] (repeatable)."),
    file: str | None = typer.Option(
        None, "-f", "--file", help="The Containerfile (default PATH/Containerfile, else PATH/Dockerfile)."
    ),
    build_arg: list[str] = typer.Option(
        [], "--build-arg", help="A build-time variable, K=V (K alone: from the environment)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the layer cache."),
    label: list[str] = typer.Option([], "--label", help="Set metadata for an image, K=V (repeatable)."),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Print only the final lines; a failing RUN's output goes to stderr."
    ),
    progress: str = typer.Option(
        "auto", "--progress", help="auto (steps on a terminal, none in a pipe), plain, tty or quiet."
    ),
) -> None:
    """Build an image from a Containerfile (Dockerfile), with a layer cache."""
    from minirun.build.builder import BuildOptions, build_image, parse_build_args
    from minirun.store.reference import parse_reference

    refs = [parse_reference(t) for t in tag]  # a bad tag fails before any step runs
    from minirun.cli.runargs import parse_labels

    build_options = BuildOptions(
        context=context,
        dockerfile=file,
        tags=refs,
        build_args=parse_build_args(build_arg),
        no_cache=no_cache,
        labels=parse_labels(label, []),
    )
    view = _view(progress, quiet)
    result = build_image(open_store(), build_options, view)
    if result.unused_args:
        print(f"[Warning] One or more build-args [{' '.join(result.unused_args)}] were not consumed", file=sys.stderr)
    print(f"Successfully built {result.image.short_id}")
    for name in result.tags:
        print(f"Successfully tagged {name}")
