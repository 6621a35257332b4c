"""Resource verbs of the typer app: `update` changes a container's limits
(live, if it runs) and `stats` shows what its cgroups use."""

from __future__ import annotations

import sys

import typer

from minirun.cli.typerapp import act_on_each, new_app, open_store
from minirun.errors import MinirunError, UsageError

app = new_app()


def _containers():
    from minirun.containers.container import Containers

    return Containers(open_store())


@app.command("update")
def update(
    names: list[str] = typer.Argument(..., metavar="CONTAINER..."),
    memory: str | None = typer.Option(None, "-m", "--memory", help="Memory limit"),
    memory_swap: str | None = typer.Option(
        None, "--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap"
    ),
    memory_reservation: str | None = typer.Option(None, "--memory-reservation", help="Memory soft limit"),
    cpus: str | None = typer.Option(None, "--cpus", help="Number of CPUs"),
    cpu_shares: str | None = typer.Option(None, "-c", "--cpu-shares", help="CPU shares (relative weight)"),
    cpuset_cpus: str | None = typer.Option(None, "--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)"),
    pids_limit: str | None = typer.Option(
        None, "--pids-limit", help="Tune container pids limit (set -1 for unlimited)"
    ),
    blkio_weight: str | None = typer.Option(
        None, "--blkio-weight", help="Block IO (relative weight), between 10 and 1000, or 0 to disable"
    ),
    restart: str | None = typer.Option(
        None,
        "--restart",
        help="Restart policy to apply when a container exits (no, on-failure[:N], always, unless-stopped)",
    ),
) -> None:
    """Update configuration of one or more containers (their resource limits)."""
    from minirun.containers.resources import discard_unsupported, parse_options, update_container

    given = {
        "memory": memory,
        "memory_swap": memory_swap,
        "memory_reservation": memory_reservation,
        "cpus": cpus,
        "cpu_shares": cpu_shares,
        "cpuset_cpus": cpuset_cpus,
        "pids_limit": pids_limit,
        "blkio_weight": blkio_weight,
    }
    if all(value is None for value in given.values()) and restart is None:
        raise UsageError("you must provide one or more flags when using this command")
    changes = parse_options(given) if any(value is not None for value in given.values()) else None
    for warning in discard_unsupported(changes or {}):
        print(f"WARNING: {warning}", file=sys.stderr)
    policy = None
    if restart is not None:
        from minirun.containers.restartpolicy import parse_policy

        policy = parse_policy(restart or "no")
    containers = _containers()

    def one(name: str) -> None:
        try:
            container = containers.find(name)
            if policy is not None:
                from minirun.containers.autostart import set_policy

                set_policy(containers, container, policy)
            if changes is not None:
                update_container(containers, container, changes)
        except MinirunError as exc:
            raise MinirunError(f"Cannot update container {name}: {exc.message}") from None
        print(name)

    act_on_each(names, one)


@app.command("stats")
def stats(
    names: list[str] | None = typer.Argument(None, metavar="[CONTAINER...]"),
    all_: bool = typer.Option(False, "-a", "--all", help="Show all containers (default shows just running)"),
    no_stream: bool = typer.Option(False, "--no-stream", help="Disable streaming stats and only pull the first result"),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate output"),
    format_: str | None = typer.Option(
        None, "--format", help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    ),
) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    import time

    from minirun.cli.formatting import check, write
    from minirun.cli.tables import render_table
    from minirun.containers import stats as stats_
    from minirun.containers.liveness import refresh

    check(format_)
    containers = _containers()

    def chosen() -> list:
        if names:
            return [refresh(containers, containers.find(n), record=False) for n in names]
        found = [refresh(containers, c, reload=False, record=False) for c in containers.all()]
        found.sort(key=lambda c: c.config.created, reverse=True)
        return [c for c in found if all_ or c.state.get("Status") == "running"]

    shown = chosen()
    before = {c.id: stats_.take(c) for c in shown}
    try:
        while True:
            time.sleep(stats_.INTERVAL)
            rows, after = [], {}
            for container in shown:
                after[container.id] = stats_.take(container)
                previous = before.get(container.id) or after[container.id]
                rows.append(stats_.row(container, previous, after[container.id], no_trunc))
            if not no_stream:
                sys.stdout.write("\033[2J\033[H")  # docker redraws the table in place
            documents = [dict(zip(STATS_FIELDS, cells), Container=cells[0]) for cells in rows]
            table = render_table(stats_.HEADERS, rows)

            def default(table: str = table) -> None:
                sys.stdout.write(table)

            write(format_, documents, STATS_HEADERS, default)
            sys.stdout.flush()
            if no_stream:
                return
            before = after
            shown = chosen()
    except KeyboardInterrupt:
        return


# docker's stats placeholders, in the order of the table's columns, and their table headers
STATS_FIELDS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
STATS_HEADERS = {
    "Container": "CONTAINER",
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
