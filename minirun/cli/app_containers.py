"""Container verbs of the typer app: stop, kill, rm, start, wait, logs,
rename, top, pause, unpause, container prune. `run`, `exec` and `ps` take the lean path
in main.py."""

from __future__ import annotations

import os
import sys

import typer

from minirun.cli.typerapp import act_on_each, new_app, open_store, print_deleted
from minirun.errors import MinirunError

app = new_app()


def _containers():
    from minirun.containers.container import Containers

    return Containers(open_store())


def _each(names: list[str], action) -> None:
    """docker's multi-container verbs: act on each, print the name as given, report failures."""
    containers = _containers()

    def one(name: str) -> None:
        action(containers, containers.find(name))
        print(name)

    act_on_each(names, one)


@app.command("stop")
def stop(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    time_: int | None = typer.Option(
        None, "-t", "--time", help="Seconds to wait before killing the container (default: its --stop-timeout, or 10)."
    ),
) -> None:
    """Stop running containers: the stop signal, then SIGKILL after the grace period."""
    from minirun.containers import lifecycle
    from minirun.containers.runconfig import stop_signal_of, stop_timeout

    _each(names, lambda cs, c: lifecycle.stop(cs, c, stop_timeout(c.config, time_), stop_signal_of(cs, c)))


@app.command("kill")
def kill(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    signal_: str = typer.Option("KILL", "-s", "--signal", help="Signal to send to the container."),
) -> None:
    """Kill running containers."""
    from minirun.containers import lifecycle
    from minirun.containers.runconfig import stop_signal_of

    number = lifecycle.signal_number(signal_)
    _each(names, lambda cs, c: lifecycle.kill(cs, c, number, stop_signal_of(cs, c)))


@app.command("restart")
def restart(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    time_: int | None = typer.Option(
        None,
        "-t",
        "--timeout",
        "--time",
        help="Seconds to wait before killing the container (default: its --stop-timeout, or 10).",
    ),
    signal_: str | None = typer.Option(None, "-s", "--signal", help="Signal to send to the container."),
) -> None:
    """Restart containers: stop (as `stop`), then start; stopped ones are just started."""
    from minirun.containers import autostart, lifecycle
    from minirun.containers.runconfig import stop_signal_of, stop_timeout

    number = lifecycle.signal_number(signal_) if signal_ else None
    _each(
        names,
        lambda cs, c: autostart.restart(cs, c, stop_timeout(c.config, time_), number or stop_signal_of(cs, c)),
    )


@app.command("rm")
def rm(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    force: bool = typer.Option(False, "-f", "--force", help="Force the removal of a running container."),
    volumes: bool = typer.Option(
        False, "-v", "--volumes", help="Remove anonymous volumes associated with the container."
    ),
) -> None:
    """Remove containers: their writable layer, records and logs."""
    from minirun.containers import lifecycle

    _each(names, lambda cs, c: lifecycle.remove(cs, c, force, volumes))


@app.command("start")
def start(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    attach: bool = typer.Option(False, "-a", "--attach", help="Attach STDOUT/STDERR and forward signals."),
    interactive: bool = typer.Option(False, "-i", "--interactive", help="Attach container's STDIN."),
    detach_keys: str = typer.Option("", "--detach-keys", help="Override the key sequence for detaching a container."),
) -> None:
    """Start stopped containers (the same command, on the same writable layer); with -a or -i,
    attached to the one named, exiting with its exit code."""
    # attached from before PID 1 starts: containers/attachclient.py
    from minirun.containers import lifecycle

    if not (attach or interactive):
        _each(names, lambda cs, c: lifecycle.start(cs, c))
        return
    if len(names) != 1:
        raise MinirunError("you cannot start and attach multiple containers at once")
    from minirun.containers.attachclient import parse_detach_keys, start_attached

    keys = parse_detach_keys(detach_keys)
    containers = _containers()
    raise typer.Exit(start_attached(containers, containers.find(names[0]), stdin=interactive, keys=keys))


@app.command("wait")
def wait(names: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
    """Block until containers stop, then print their exit codes."""
    from minirun.containers import lifecycle

    containers = _containers()

    def one(name: str) -> None:
        container = lifecycle.wait_for_exit(containers, containers.find(name))
        print(container.state.get("ExitCode", 0))

    act_on_each(names, one)


@app.command("logs")
def logs(
    name: str = typer.Argument(..., metavar="CONTAINER"),
    follow: bool = typer.Option(False, "-f", "--follow", help="Follow log output until the container exits."),
    tail: str | None = typer.Option(None, "-n", "--tail", help="Number of lines to show from the end ('all')."),
    timestamps: bool = typer.Option(False, "-t", "--timestamps", help="Show timestamps."),
    since: str | None = typer.Option(
        None, "--since", help="Show logs since a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)."
    ),
    until: str | None = typer.Option(
        None, "--until", help="Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)."
    ),
) -> None:
    """Fetch the logs of a container (stdout to stdout, stderr to stderr)."""
    from minirun.containers import liveness
    from minirun.containers.logs import show_logs
    from minirun.errors import UsageError
    from minirun.humanize import parse_timestamp
    from minirun.timestamps import rfc3339_ns

    def stamp(option: str, value: str | None) -> str:
        try:
            return rfc3339_ns(parse_timestamp(value)) if value else ""
        except UsageError as exc:
            raise UsageError(f"{option}: {exc.message}") from None

    lines: int | None = None
    if tail not in (None, "all"):
        if not tail.lstrip("-").isdigit():
            raise UsageError(f"invalid value for --tail: {tail!r}")
        lines = max(int(tail), 0) if int(tail) >= 0 else None
    since_stamp, until_stamp = stamp("--since", since), stamp("--until", until)
    containers = _containers()
    container = containers.find(name)

    def still_running() -> bool:
        if not os.path.isdir(container.dir):  # removed (--rm): nothing more will come
            return False
        return liveness.is_running(liveness.refresh(containers, container, record=False))

    show_logs(container, lines, timestamps, follow, still_running, since=since_stamp, until=until_stamp)


@app.command("rename")
def rename(
    name: str = typer.Argument(..., metavar="CONTAINER"), new_name: str = typer.Argument(..., metavar="NEW_NAME")
) -> None:
    """Rename a container."""
    from minirun.containers import lifecycle

    containers = _containers()
    lifecycle.rename(containers, containers.find(name), new_name)


@app.command("top", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def top(ctx: typer.Context, name: str = typer.Argument(..., metavar="CONTAINER [ps OPTIONS]")) -> None:
    """Display the running processes of a container: the host's ps (-ef unless options are given)."""
    from minirun.cli.tables import render_table
    from minirun.containers import liveness
    from minirun.containers.top import top as ps_top

    containers = _containers()
    container = liveness.refresh(containers, containers.find(name), record=False)
    if not liveness.is_running(container):
        raise MinirunError(f"container {container.id} is not running")
    titles, rows = ps_top(container, list(ctx.args))
    sys.stdout.write(render_table(titles, rows, min_width=20))  # docker's tabwriter for top: 20, not 10


container_app = new_app(help="Manage containers.")
app.add_typer(container_app, name="container")


@container_app.command("prune")
def container_prune(force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation.")) -> None:
    """Remove all stopped containers."""
    from minirun.cli.typerapp import confirm_removal
    from minirun.containers import lifecycle
    from minirun.humanize import human_size

    if not confirm_removal("all stopped containers", force):
        return
    removed, freed = lifecycle.prune(_containers())
    print_deleted("Containers", removed)
    print(f"Total reclaimed space: {human_size(freed)}")


@app.command("commit")
def commit(
    name: str = typer.Argument(..., metavar="CONTAINER"),
    repository: str | None = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
    message: str = typer.Option("", "-m", "--message", help="Commit message."),
    author: str = typer.Option("", "-a", "--author", help='Author (e.g. "Jane Doe <jane@example.com>").'),
    change: list[str] = typer.Option([], "-c", "--change", help="Apply a Dockerfile instruction to the image."),
    pause: bool = typer.Option(
        True,
        "--pause/--no-pause",
        "-p",
        show_default=False,
        help="Pause the container during commit (--pause=false: read it running).",
    ),
) -> None:
    """Create a new image from a container's changes (its upper dir becomes a layer)."""
    from minirun.containers.commit import commit_container
    from minirun.image.instructions import apply_changes
    from minirun.store.reference import parse_reference

    ref = parse_reference(repository) if repository else None
    apply_changes({}, list(change))  # a bad -c fails before any work
    containers = _containers()
    container = containers.find(name)
    image = commit_container(
        containers.store, container, message=message, author=author, changes=change, ref=ref, pause=pause
    )
    from minirun.containers.container import record_event

    record_event(containers.store.root, container, "commit", comment=message)
    print(image.id)


@app.command("export")
def export(
    name: str = typer.Argument(..., metavar="CONTAINER"),
    output: str | None = typer.Option(None, "-o", "--output", help="Write to a file, instead of STDOUT."),
) -> None:
    """Export a container's filesystem (the merged view) as a tar archive."""
    import os

    from minirun.containers.commit import export_container
    from minirun.store.fsutil import remove_tree

    containers = _containers()
    container = containers.find(name)
    if output is None:
        if sys.stdout.isatty():
            raise MinirunError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        export_container(containers.store, container, sys.stdout.buffer)
        return
    # a temp name beside the target, renamed on success: never a half-written archive
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as out:
            export_container(containers.store, container, out)
        os.replace(tmp, output)
    except BaseException:
        remove_tree(tmp)
        raise


@app.command("pause")
def pause(names: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
    """Pause all processes within one or more containers."""
    from minirun.containers.pause import pause as pause_container

    _each(names, pause_container)


@app.command("unpause")
def unpause(names: list[str] = typer.Argument(..., metavar="CONTAINER...")) -> None:
    """Unpause all processes within one or more containers."""
    from minirun.containers.pause import unpause as unpause_container

    _each(names, unpause_container)
