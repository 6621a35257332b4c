"""The typer app: parse arguments, call the library, render results, map errors to exit codes.
No logic lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer
from typer.exceptions import Abort as _Abort
from typer.exceptions import Exit as _Exit
from typer.exceptions import TyperException as _ParseError

from minirun.errors import EXIT_RUNTIME, MinirunError, NotFound, UsageError, one_line, report

app = typer.Typer(
    name="minirun",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="A container runtime on kernel overlayfs, with docker's verbs.",
)


class _Options:
    root: str | None = None
    debug: bool = False


options = _Options()


def _store():
    from minirun.store import Store

    return Store(options.root)


@app.callback()
def _global(
    root: str | None = typer.Option(
        None, "--root", envvar="MINIRUN_ROOT", help="Store directory (default /var/lib/minirun)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    options.root = root
    options.debug = debug


# -- images -------------------------------------------------------------------------------


@app.command("images")
def images(
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    all_: bool = typer.Option(False, "-a", "--all", help="Show all images (default hides intermediate images)."),
) -> None:
    """List images."""
    from minirun.cli.imageinfo import image_rows
    from minirun.humanize import human_size, image_age

    rows = image_rows(_store(), all_)
    if quiet:
        for row in rows:
            print(row.image.short_id)
        return
    _print_table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        [[r.repository, r.tag, r.image.short_id, image_age(r.image.created), human_size(r.size)] for r in rows],
    )


@app.command("history")
def history(
    image: str = typer.Argument(..., metavar="IMAGE"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Don't truncate output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only show image IDs."),
    format_: str | None = typer.Option(None, "--format", help="'json' or 'table'."),
) -> None:
    """Show the history of an image, newest first."""
    from minirun.cli.imageinfo import history_rows
    from minirun.humanize import ellipsis, human_size, image_age
    from minirun.image.embedded import find_image

    if format_ not in (None, "table", "json"):
        raise UsageError(f"unsupported --format {format_!r} (use 'table' or 'json')")
    store = _store()
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
    elif format_ == "json":
        for row in rows:
            print(
                json.dumps(
                    {
                        "Comment": row.comment,
                        "CreatedAt": row.created,
                        "CreatedBy": created_by(row.created_by),
                        "CreatedSince": image_age(row.created) if row.created else "",
                        "ID": shown_id(row.image_id),
                        "Size": human_size(row.size),
                    },
                    sort_keys=True,
                )
            )
    else:
        _print_table(
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


@app.command("rmi")
def rmi(
    images_: list[str] = typer.Argument(..., metavar="IMAGE...", help="Images to remove."),
    force: bool = typer.Option(False, "-f", "--force", help="Force removal of the image."),
) -> None:
    """Remove images: untag, and delete layers nothing uses any more."""
    store = _store()

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
    from minirun.image.embedded import find_image
    from minirun.store.reference import parse_reference

    ref = parse_reference(target)
    if ref.digest is not None:
        raise UsageError(f"refusing to create a tag with a digest reference: {target}")
    store = _store()
    image = find_image(store, source)
    with store.locked():
        store.images.get(image.id)  # still there: an rmi may have run meanwhile
        store.images.tag(ref, image.id)


@app.command("inspect")
def inspect(
    names: list[str] = typer.Argument(..., metavar="NAME|ID..."),
    type_: str | None = typer.Option(None, "--type", help="'container' or 'image' (default: a container first)."),
) -> None:
    """Show low-level information on containers or images as JSON."""
    from minirun.cli.containerinfo import inspect_container
    from minirun.cli.imageinfo import inspect_image
    from minirun.containers.container import Containers
    from minirun.containers.liveness import refresh
    from minirun.image.embedded import find_image

    if type_ not in (None, "container", "image"):
        raise UsageError(f'"{type_}" is not a valid value for --type')
    store = _store()
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
    print(json.dumps(documents, indent=4))


# -- the lean verbs ---------------------------------------------------------------------------
# main.py sends import, run, exec, ps and diff to their own argparse parsers before typer loads (their
# start time is benchmarked); these entries only list them in `minirun --help`.

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _lean_verb(name: str, summary: str) -> None:
    def command(ctx: typer.Context) -> None:
        from minirun.cli.main import run_lean

        raise typer.Exit(run_lean(name, list(ctx.args), options.root, options.debug))

    command.__doc__ = summary
    app.command(name, context_settings=_PASS_THROUGH, add_help_option=False)(command)


_lean_verb("import", "Import a rootfs tarball as a one-layer image (docker import).")
_lean_verb("run", "Create and run a new container from an image (see `minirun run --help`).")
_lean_verb("exec", "Execute a command in a running container (see `minirun exec --help`).")
_lean_verb("ps", "List containers (see `minirun ps --help`).")
_lean_verb("diff", "Inspect changes to files or directories on a container's filesystem.")


# -- plumbing -----------------------------------------------------------------------------
# (container verbs live in cli_containers.py and register on `app` when it is imported below)


def confirm_removal(what: str, force: bool) -> bool:
    """docker's prune prompt, asked only on a terminal and without -f."""
    if force or not sys.stdin.isatty():
        return True
    answer = input(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    from minirun.cli.tables import render_table

    sys.stdout.write(render_table(headers, rows))


def act_on_each(names: list[str], action: Callable[[str], None]) -> None:
    """docker's verbs on several objects: act on each in turn, a failure reported on its own line
    without stopping the rest, then exit 125 if any failed."""
    failed = False
    for name in names:
        try:
            action(name)
        except MinirunError as exc:
            report(exc)
            failed = True
    if failed:
        raise typer.Exit(EXIT_RUNTIME)


def main(argv: list[str] | None = None) -> None:
    import minirun.cli.app_archive  # noqa: F401  (these register their verbs on `app`)
    import minirun.cli.app_build  # noqa: F401
    import minirun.cli.app_containers  # noqa: F401
    import minirun.cli.app_inspect_fs  # noqa: F401  (registers trace and system df)
    import minirun.cli.app_network  # noqa: F401  (network create/ls/rm/inspect, port)
    import minirun.cli.app_registry  # noqa: F401  (pull, push, login, logout)
    import minirun.cli.app_resources  # noqa: F401  (update, stats)

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="minirun", standalone_mode=False)
    except _Exit as exc:
        code = exc.exit_code
    except _ParseError as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            code = 0
        else:  # docker answers bad flags with 125, not click's 2
            print(f"minirun: error: {one_line(exc.format_message())}", file=sys.stderr)
            code = EXIT_RUNTIME
    except _Abort:
        code = 130
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        code = report(exc, debug)
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
