"""Volume verbs of the typer app: volume create/ls/inspect/rm/prune (docker's, local driver)."""

from __future__ import annotations

import json

import typer

from minirun.cli.typerapp import act_on_each, confirm_removal, new_app, open_store, print_deleted, print_table
from minirun.errors import UsageError

app = new_app()

volume_app = new_app(help="Manage volumes.")
app.add_typer(volume_app, name="volume")

VOLUME_HEADERS = {
    "Name": "VOLUME NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Links": "LINKS",
    "Size": "SIZE",
    "Availability": "AVAILABILITY",
    "Group": "GROUP",
    "Status": "STATUS",
}


@volume_app.command("create")
def volume_create(
    name: str = typer.Argument("", metavar="[VOLUME]"),
    driver: str = typer.Option("local", "-d", "--driver", help="Specify volume driver name (local only)."),
    labels: list[str] = typer.Option([], "--label", help="Set metadata for a volume (KEY=VALUE)."),
    options: list[str] = typer.Option(
        [], "-o", "--opt", help="Set driver specific options: type=tmpfs|none, device=..., o=size=...|bind."
    ),
    name_option: str = typer.Option("", "--name", hidden=True, help="Specify volume name."),
) -> None:
    """Create a volume. Without a name: an anonymous one, named by 64 hex digits."""
    from minirun.containers.mounts import check_driver, create_volume
    from minirun.frontend.runoptions import key_values

    if name and name_option and name != name_option:
        raise UsageError("conflicting options: either specify --name or provide positional arg, not both")
    check_driver(driver)
    volume, _ = create_volume(
        open_store(), name or name_option, key_values(labels, "label"), key_values(options, "option")
    )
    print(volume.name)


@volume_app.command("ls")
def volume_ls(
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only display volume names."),
    format_: str | None = typer.Option(
        None, "--format", help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    ),
    filter_: list[str] = typer.Option(
        [], "-f", "--filter", help="Filter output based on conditions provided (dangling, driver, label, name)."
    ),
) -> None:
    """List volumes."""
    from minirun.cli.formatting import check, write
    from minirun.frontend.volumeinfo import list_volumes

    check(format_)
    volumes = list_volumes(open_store(), filter_)
    if quiet:
        for volume in volumes:
            print(volume.name)
        return
    documents = [
        {
            "Availability": "N/A",
            "Driver": v.driver,
            "Group": "N/A",
            "Labels": ",".join(f"{k}={val}" for k, val in sorted((v.labels or {}).items())),
            "Links": "N/A",
            "Mountpoint": v.mountpoint,
            "Name": v.name,
            "Scope": "local",
            "Size": "N/A",
            "Status": "N/A",
        }
        for v in volumes
    ]
    write(
        format_,
        documents,
        VOLUME_HEADERS,
        lambda: print_table(["DRIVER", "VOLUME NAME"], [[v.driver, v.name] for v in volumes]),
    )


volume_app.command("list", hidden=True)(volume_ls)  # docker's alias


@volume_app.command("inspect")
def volume_inspect(
    names: list[str] = typer.Argument(..., metavar="VOLUME..."),
    format_: str | None = typer.Option(None, "-f", "--format", help="A Go TEMPLATE run on each volume ('json')."),
) -> None:
    """Display detailed information on one or more volumes."""
    from minirun.cli.formatting import check, write_one_each
    from minirun.store.volumes import VolumeStore

    check(format_)
    volumes = VolumeStore(open_store().root)
    documents = [volumes.get(name).to_json() for name in names]
    if not write_one_each(format_, documents):
        print(json.dumps(documents, indent=4))


@volume_app.command("rm")
def volume_rm(
    names: list[str] = typer.Argument(..., metavar="VOLUME..."),
    force: bool = typer.Option(
        False,
        "-f",
        "--force",
        help="Force the removal (a volume that does not exist is no error; one in use still is).",
    ),
) -> None:
    """Remove one or more volumes. A volume any container uses (running or not) cannot be removed."""
    from minirun.containers.mounts import remove_volume

    store = open_store()

    def one(name: str) -> None:
        remove_volume(store, name, force)
        print(name)

    act_on_each(names, one)


volume_app.command("remove", hidden=True)(volume_rm)  # docker's alias


@volume_app.command("prune")
def volume_prune(
    all_: bool = typer.Option(False, "-a", "--all", help="Remove all unused volumes, not just anonymous ones."),
    filter_: list[str] = typer.Option([], "--filter", help="Provide filter values (label=, label!=)."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation."),
) -> None:
    """Remove unused local volumes. The anonymous ones, or with -a every one no container uses."""
    from minirun.frontend.filters import Filters
    from minirun.frontend.volumeinfo import PRUNE_KEYS, prune_volumes
    from minirun.humanize import human_size

    everything = all_ or bool(Filters(filter_, PRUNE_KEYS).boolean("all"))
    what = "all" if everything else "anonymous"
    if not confirm_removal(f"{what} local volumes not used by at least one container", force):
        return
    removed, freed = prune_volumes(open_store(), filter_, everything)
    print_deleted("Volumes", removed)
    print(f"Total reclaimed space: {human_size(freed)}")
