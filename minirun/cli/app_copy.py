"""`cp`: copy files and directories between a container and the host (containers/copy.py)."""

from __future__ import annotations

import os
import sys

import typer

from minirun.cli.typerapp import new_app, open_store
from minirun.errors import UsageError

app = new_app()


@app.command("cp")
def cp(
    source: str = typer.Argument(..., metavar="SRC"),
    destination: str = typer.Argument(..., metavar="DEST"),
    archive: bool = typer.Option(False, "-a", "--archive", help="Archive mode (copy all uid/gid information)."),
    follow_link: bool = typer.Option(False, "-L", "--follow-link", help="Always follow symbol link in SRC_PATH."),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Suppress the summary (it is printed only when stdout is a terminal)."
    ),
) -> None:
    """Copy files/folders between a container and the local filesystem.

    \b
    minirun cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
    minirun cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH

    Use '-' as the source to read a tar archive from stdin and extract it to a directory
    destination in a container. Use '-' as the destination to stream a tar archive of a
    container source to stdout. The container may be running or stopped.
    """
    from minirun.containers import copy
    from minirun.containers.container import Containers

    if not source:
        raise UsageError("source can not be empty")
    if not destination:
        raise UsageError("destination can not be empty")
    src_container, src_path = copy.split_cp_arg(source)
    dst_container, dst_path = copy.split_cp_arg(destination)
    if src_container and dst_container:
        raise UsageError("copying between containers is not supported")
    if not src_container and not dst_container:
        raise UsageError("must specify at least one container source")
    containers = Containers(open_store())
    if src_container:
        container = containers.find(src_container)
        local = dst_path if dst_path == "-" else _absolute(dst_path)
        if local == "-" and sys.stdout.isatty():
            raise UsageError("cowardly refusing to write a tar archive to a terminal: redirect stdout")
        copied = copy.copy_from_container(
            containers, container, src_path, local, archive=archive, follow=follow_link, stdout=sys.stdout.buffer
        )
        shown = local
    else:
        container = containers.find(dst_container)
        local = src_path if src_path == "-" else _absolute(src_path)
        copied = copy.copy_to_container(
            containers, container, local, dst_path, archive=archive, follow=follow_link, stdin=sys.stdin.buffer
        )
        shown = f"{dst_container}:{dst_path}"
    if not quiet and local != "-" and sys.stdout.isatty():
        from minirun.humanize import human_size

        print(f"Successfully copied {human_size(copied)} to {shown}", file=sys.stderr)


def _absolute(path: str) -> str:
    """docker's resolveLocalPath: absolute, its trailing `/` or `/.` kept."""
    from minirun.containers.copy import preserve_trailing

    return preserve_trailing(os.path.abspath(path), path)
