"""`build`, a lean verb (cli/commands.py says why): options in, minirun.build.builder called,
its progress shown by cli/buildview.py. A fully cached rebuild is benchmarked against docker's
(scripts/bench_build.py), and typer's import alone costs about as much as docker's whole build."""

from __future__ import annotations

import contextlib
import os
import sys

from minirun.cli.leanparser import Parser
from minirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from minirun.build.builder import BuildOptions
    from minirun.store import Store


def parser() -> Parser:
    p = Parser(
        prog="minirun build",
        usage="minirun build [OPTIONS] PATH | -",
        description="Build an image from a Containerfile (Dockerfile): stages, a layer cache, .dockerignore.",
    )
    p.add_argument(
        "context",
        metavar="PATH | -",
        help="The build context: a directory, or - for a tar (or a lone Dockerfile) on stdin.",
    )
    p.add_argument(
        "-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="Name and optionally a tag (repeatable)."
    )
    p.add_argument(
        "-f",
        "--file",
        default=None,
        metavar="FILE",
        help="The Containerfile (default PATH/Containerfile, else PATH/Dockerfile); - reads it from stdin.",
    )
    p.add_argument(
        "--target", default="", metavar="STAGE", help="The stage to build (and the stages it needs); default the last."
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="A build-time variable (K alone: from the environment; repeatable).",
    )
    p.add_argument("--no-cache", action="store_true", help="Do not use the layer cache.")
    p.add_argument(
        "--pull",
        action="store_true",
        help="Pull each base image again (FROM, COPY --from) that names a registry or was pulled from one.",
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="Set metadata for an image (repeatable)."
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="Print only the image id; a failing RUN's output goes to stderr."
    )
    p.add_argument(
        "--progress",
        default="auto",
        metavar="MODE",
        help="auto (steps on a terminal, none in a pipe), plain, tty or quiet (as -q).  [default: %(default)s]",
    )
    return p


def build_command(argv: list[str], root: str | None) -> int:
    args = parser().parse_args(argv)
    from minirun.build.builder import BuildOptions, build_image
    from minirun.build.dockerfile import parse_build_args
    from minirun.cli.buildview import view_for
    from minirun.frontend.buildimages import find_image
    from minirun.store import Store
    from minirun.store.reference import parse_reference

    if args.context == "-" and args.file == "-":
        raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
    refs = [parse_reference(t) for t in args.tag]  # a bad tag fails before any step runs
    view = view_for(args.progress, args.quiet)
    store = Store(root)
    options = BuildOptions(
        context=args.context,
        dockerfile=args.file,
        tags=refs,
        build_args=parse_build_args(args.build_arg),
        no_cache=args.no_cache,
        labels=labels(args.label),
        target=args.target,
        pull=args.pull,
        find_image=find_image,
    )
    with stdin_context(store, options):
        result = build_image(store, options, view)
    if result.unused_args:
        print(f"[Warning] One or more build-args [{' '.join(result.unused_args)}] were not consumed", file=sys.stderr)
    if args.quiet or args.progress == "quiet":  # the id alone, as docker prints it
        sys.stdout.write(result.image.id + "\n")
        return 0
    sys.stdout.write(f"Successfully built {result.image.short_id}\n")
    sys.stdout.write("".join(f"Successfully tagged {name}\n" for name in result.tags))
    return 0


def labels(given: list[str]) -> dict[str, str]:
    """--label K=V, as run's -l reads them (run's parser loads only when one is given)."""
    if not given:
        return {}
    from minirun.frontend.runoptions import parse_labels

    return parse_labels(given, [])


@contextlib.contextmanager
def stdin_context(store: Store, options: BuildOptions) -> Iterator[None]:
    """`-f -`: the Dockerfile from stdin; `build -`: the context (a tar) or the Dockerfile from
    stdin. -f then names a file inside that context, as docker reads it."""
    if options.dockerfile == "-":
        from minirun.build.dockerfile import DOCKERFILE_LIMIT

        data = sys.stdin.buffer.read(DOCKERFILE_LIMIT + 1)
        if len(data) > DOCKERFILE_LIMIT:
            raise UsageError(f"the Dockerfile on stdin is larger than {DOCKERFILE_LIMIT >> 10} KiB")
        options.dockerfile, options.dockerfile_text = None, data.decode("utf-8", "surrogateescape")
    if options.context != "-":
        yield
        return
    from minirun.build.stdincontext import read_stdin_context, release

    stdin = read_stdin_context(store, sys.stdin.buffer)
    try:
        options.context, options.dockerfile_text = stdin.directory, stdin.dockerfile_text
        options.sent_context = True
        if options.dockerfile and stdin.dockerfile_text is None:
            options.dockerfile = os.path.join(stdin.directory, options.dockerfile)
        yield
    finally:
        release(store, stdin)
