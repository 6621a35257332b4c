"""`build` on the typer app: options in, minirun.build.builder called, its progress rendered.

On a terminal each step shows as docker's classic builder prints it (`Step 2/5 : RUN ...`,
` ---> Using cache`, ` ---> <id>`), styled; in a pipe, or with -q, only the final
`Successfully built` / `Successfully tagged` lines are printed. A RUN's own output goes
straight through (with -q it is kept aside and shown on stderr if the step fails).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

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
    context: str = typer.Argument(
        ..., metavar="PATH | -", help="The build context: a directory, or - for a tar (or a lone Dockerfile) on stdin."
    ),
    tag: list[str] = typer.Option([], "-t", "--tag", help="Name and optionally a tag, NAME[:TAG] (repeatable)."),
    file: str | None = typer.Option(
        None,
        "-f",
        "--file",
        help="The Containerfile (default PATH/Containerfile, else PATH/Dockerfile); - reads it from stdin.",
    ),
    target: str = typer.Option("", "--target", help="The stage to build (and the stages it needs); default the last."),
    build_arg: list[str] = typer.Option(
        [], "--build-arg", help="A build-time variable, K=V (K alone: from the environment)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the layer cache."),
    pull: bool = typer.Option(
        False,
        "--pull",
        help="Pull each base image again (FROM, COPY --from) that names a registry or was pulled from one.",
    ),
    label: list[str] = typer.Option([], "--label", help="Set metadata for an image, K=V (repeatable)."),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Print only the image id; a failing RUN's output goes to stderr."
    ),
    progress: str = typer.Option(
        "auto", "--progress", help="auto (steps on a terminal, none in a pipe), plain, tty or quiet (as -q)."
    ),
) -> None:
    """Build an image from a Containerfile (Dockerfile): stages, a layer cache, .dockerignore."""
    from minirun.build.builder import BuildOptions, build_image
    from minirun.build.dockerfile import parse_build_args
    from minirun.cli.runargs import parse_labels
    from minirun.store.reference import parse_reference

    if context == "-" and file == "-":
        raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
    refs = [parse_reference(t) for t in tag]  # a bad tag fails before any step runs
    view = _view(progress, quiet)
    store = open_store()
    build_options = BuildOptions(
        context=context,
        dockerfile=file,
        tags=refs,
        build_args=parse_build_args(build_arg),
        no_cache=no_cache,
        labels=parse_labels(label, []),
        target=target,
        pull=pull,
        find_image=_find_image,
    )
    with _stdin_context(store, build_options):
        result = build_image(store, build_options, view)
    if result.unused_args:
        print(f"[Warning] One or more build-args [{' '.join(result.unused_args)}] were not consumed", file=sys.stderr)
    if quiet or progress == "quiet":  # the id alone, as docker prints it
        print(result.image.id)
        return
    print(f"Successfully built {result.image.short_id}")
    for name in result.tags:
        print(f"Successfully tagged {name}")


@contextlib.contextmanager
def _stdin_context(store, options) -> Iterator[None]:
    """`-f -`: the Dockerfile from stdin; `build -`: the context (a tar) or the Dockerfile from
    stdin. -f then names a file inside that context, as docker reads it."""
    from minirun.build.dockerfile import DOCKERFILE_LIMIT
    from minirun.build.stdincontext import read_stdin_context, release

    if options.dockerfile == "-":
        data = sys.stdin.buffer.read(DOCKERFILE_LIMIT + 1)
        if len(data) > DOCKERFILE_LIMIT:
            raise UsageError(f"the Dockerfile on stdin is larger than {DOCKERFILE_LIMIT >> 10} KiB")
        options.dockerfile, options.dockerfile_text = None, data.decode("utf-8", "surrogateescape")
    if options.context != "-":
        yield
        return
    stdin = read_stdin_context(store, sys.stdin.buffer)
    try:
        options.context, options.dockerfile_text = stdin.directory, stdin.dockerfile_text
        if options.dockerfile and stdin.dockerfile_text is None:
            options.dockerfile = os.path.join(stdin.directory, options.dockerfile)
        yield
    finally:
        release(store, stdin)


def _find_image(store, name: str, pull: bool):
    """FROM's and COPY --from's image: the store's; pulled when missing and the name has a
    registry, and with --pull again when it names a registry or was pulled from one (an image
    built or loaded here, or an embedded one, is used as it is: there is nowhere to pull it from)."""
    from minirun.build.builder import local_image
    from minirun.errors import NotFound
    from minirun.store.reference import parse_reference

    remote = parse_reference(name).domain is not None
    try:
        image = local_image(store, name)
    except NotFound:
        if not remote:
            raise
        return _pull(store, name)
    if pull and (remote or store.images.repo_digests(image.id)):
        return _pull(store, name)
    return image


def _pull(store, name: str):
    from minirun import events
    from minirun.distribution.pull import pull

    result = pull(store, name)
    events.record(store.root, "image", "pull", result.image.id, {"name": result.reference})
    return result.image
