"""Verbs that look at the layered filesystem: `trace` (how the merged
view answers for one path) and `system df` (what the store takes on disk, layers counted once)."""

from __future__ import annotations

import json
import sys

import typer

from minirun.cli.typerapp import confirm_removal, new_app, open_store, print_deleted, print_table
from minirun.errors import NotFound, UsageError

app = new_app()

system_app = new_app(help="Manage minirun.")
app.add_typer(system_app, name="system")


@app.command("trace")
def trace_command(
    target: str = typer.Argument(..., metavar="IMAGE|CONTAINER"),
    path: str = typer.Argument(..., metavar="PATH", help="A path in the container's view; a relative one starts at /."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Don't truncate CREATED BY."),
    format_: str | None = typer.Option(None, "--format", help="'json' or 'table'."),
) -> None:
    """Show how the union filesystem answers for PATH, layer by layer from the top."""
    from minirun.containers.container import Containers
    from minirun.image.embedded import find_image
    from minirun.image.trace import container_layers, image_layers, mount_notes, short_created_by, trace

    if format_ not in (None, "table", "json"):
        raise UsageError(f"unsupported --format {format_!r} (use 'table' or 'json')")
    store = open_store()
    container = None
    try:  # a container first, as inspect does
        container = Containers(store).find(target)
    except NotFound:
        pass
    if container is not None:
        layers = container_layers(store, container)
        kind, ident = "container", container.id
    else:
        image = find_image(store, target)
        layers = image_layers(store, image)
        kind, ident = "image", image.id
    result = trace(layers, path)
    if container is not None:
        result.notes += mount_notes(container, result.resolved)

    if format_ == "json":
        document = {"Type": kind, "ID": ident, **result.to_json()}
        print(json.dumps(document, indent=4, ensure_ascii=False))
        return
    for hop in result.hops:
        print(f"{hop.path} is a symlink -> {hop.target} ({hop.layer}): followed in the merged view")
    if result.hops:
        print(f"tracing {result.resolved}")
    print_table(
        ["LAYER", "CREATED BY", "ACTION", "DETAIL"],
        [[r.layer, short_created_by(r.created_by, no_trunc), r.action, r.detail] for r in result.rows],
    )
    print(result.verdict)
    for note in result.notes:
        print(note)


@system_app.command("df")
def system_df(
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show detailed information on space usage."),
    format_: str | None = typer.Option(
        None, "--format", help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    ),
) -> None:
    """Show disk usage: images (each layer counted once), containers (their own upper dirs), volumes."""
    from minirun.cli.formatting import check, write
    from minirun.containers.diskusage import disk_usage, reclaimable_text
    from minirun.containers.mounts import mount_points
    from minirun.frontend.containerinfo import command_text, status_text
    from minirun.humanize import human_size, image_age, time_ago

    check(format_)
    usage = disk_usage(open_store())
    if not verbose:
        cells = [
            [r.type, str(r.total), str(r.active), human_size(r.size, 4), reclaimable_text(r)] for r in usage.summary()
        ]
        documents = [dict(zip(("Type", "TotalCount", "Active", "Size", "Reclaimable"), row)) for row in cells]
        headers = {
            "Type": "TYPE",
            "TotalCount": "TOTAL",
            "Active": "ACTIVE",
            "Size": "SIZE",
            "Reclaimable": "RECLAIMABLE",
        }
        write(
            format_, documents, headers, lambda: print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], cells)
        )
        return
    # docker's precisions: image and container SIZE 3 digits, SHARED/UNIQUE SIZE 4
    print("Images space usage:\n")
    print_table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
        [
            [
                i.repository,
                i.tag,
                i.image.short_id,
                image_age(i.image.created) if i.image.created else "",
                human_size(i.size),
                human_size(i.shared_size, 4),
                human_size(i.unique_size, 4),
                str(i.containers),
            ]
            for i in usage.images
        ],
    )
    print("\nLayers space usage:\n")
    print_table(
        ["LAYER", "SIZE", "USED BY"],
        [[layer.short_id, human_size(layer.size), str(layer.images)] for layer in usage.layers],
    )
    print(f"\nTotal: {len(usage.layers)} layers, {human_size(usage.layers_size, 4)} on disk, each stored once")
    print("\nContainers space usage:\n")
    print_table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
        [
            [
                u.container.id[:12],
                u.container.config.image_ref,
                command_text(u.container, truncate=True),
                str(sum(1 for m in mount_points(u.container.config) if m.get("Driver") == "local")),
                human_size(u.size),
                time_ago(u.container.config.created),
                status_text(u.container),
                u.container.name,
            ]
            for u in usage.containers
        ],
    )
    print("\nLocal Volumes space usage:\n")
    print_table(["VOLUME NAME", "LINKS", "SIZE"], [[v.name, str(v.links), human_size(v.size)] for v in usage.volumes])
    print("\nBuild cache usage: 0B\n")
    print_table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], [])
    sys.stdout.flush()


image_app = new_app(help="Manage images.")
app.add_typer(image_app, name="image")


@image_app.command("prune")
def image_prune(
    all_: bool = typer.Option(False, "-a", "--all", help="Remove all unused images, not just dangling ones."),
    filter_: list[str] = typer.Option(
        [], "--filter", help="Provide filter values (e.g. 'until=<timestamp>', 'label=<key>=<value>')."
    ),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation."),
) -> None:
    """Remove unused images."""
    from minirun.frontend.filters import Filters
    from minirun.frontend.imageinfo import PRUNE_KEYS, prune_images
    from minirun.humanize import human_size

    Filters(filter_, PRUNE_KEYS)  # a bad filter is refused before the question
    if not confirm_removal("all dangling images" if not all_ else "all images without at least one container", force):
        return
    lines, freed = prune_images(open_store(), filter_, all_)
    print_deleted("Images", [line[0].lower() + line[1:] for line in lines])
    print(f"Total reclaimed space: {human_size(freed)}")


@system_app.command("prune")
def system_prune(
    all_: bool = typer.Option(False, "-a", "--all", help="Remove all unused images, not just dangling ones."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation."),
    volumes: bool = typer.Option(False, "--volumes", help="Prune anonymous volumes."),
) -> None:
    """Remove stopped containers, unused networks and dangling (or, with -a, unused) images;
    with --volumes, the anonymous volumes no container uses."""
    from minirun.containers import lifecycle
    from minirun.containers.container import Containers
    from minirun.humanize import human_size
    from minirun.net.networks import Networks

    what = (
        "all stopped containers, all networks not used by at least one container, "
        + ("all anonymous volumes not used by at least one container, " if volumes else "")
        + "and all "
        + ("images without at least one container associated to them" if all_ else "dangling images")
    )
    if not confirm_removal(what, force):
        return
    store = open_store()
    containers = Containers(store)
    removed, freed = lifecycle.prune(containers)
    print_deleted("Containers", removed)
    print_deleted("Networks", Networks(store).prune({c.config.network for c in containers.all()}))
    if volumes:
        from minirun.containers.mounts import prune_volumes

        removed_volumes, volumes_freed = prune_volumes(store, lambda v: not v.anonymous)
        print_deleted("Volumes", removed_volumes)
        freed += volumes_freed
    lines, images_freed = store.prune_images(all_)
    print_deleted("Images", [line[0].lower() + line[1:] for line in lines])
    print(f"Total reclaimed space: {human_size(freed + images_freed)}")


@system_app.command("check")
def system_check(
    repair: bool = typer.Option(False, "--repair", help="Remove what is orphaned or broken, and say what."),
    quick: bool = typer.Option(False, "--quick", help="Skip reading every layer's bytes against its diff_id."),
) -> None:
    """Check the store and what minirun keeps on the host: layers, images, containers, orphans."""
    from minirun.containers.syscheck import run_check

    lines, code = run_check(open_store(), repair, verify_layers=not quick)
    print("\n".join(lines))
    raise typer.Exit(code)


@system_app.command("boot")
def system_boot() -> None:
    """Start the containers a restart policy brings back after a reboot (always, and
    unless-stopped ones not stopped by the user), as docker's daemon does when it starts. For
    an init system: contrib/minirun-boot.service. Prints each name started."""
    from minirun.containers import autostart
    from minirun.containers.container import Containers

    raise typer.Exit(autostart.boot(Containers(open_store())))


@system_app.command("shutdown")
def system_shutdown(
    time_: int = typer.Option(10, "-t", "--time", help="Seconds to wait for each container before killing it."),
) -> None:
    """Stop every running container, not as stopped by the user: `system boot` starts the
    unless-stopped ones again (docker's daemon shutdown). Prints each name stopped."""
    from minirun.containers import autostart
    from minirun.containers.container import Containers

    for name in autostart.shutdown(Containers(open_store()), time_):
        print(name)


@system_app.command("service")
def system_service(
    uri: str | None = typer.Argument(
        None, metavar="[URI]", help="unix:///PATH to listen on (default unix://$MINIRUN_RUN_DIR/minirun.sock)."
    ),
    time_: int = typer.Option(5, "-t", "--time", help="Seconds without a request before the service exits (0: never)."),
) -> None:
    """Serve the Docker Engine API on a unix socket, for the docker CLI (DOCKER_HOST), docker-py
    and the like. The socket is root's alone (0600): whoever reaches it is root."""
    from minirun.errors import UsageError

    if time_ < 0:
        raise UsageError("--time must not be negative")
    try:
        from minirun.api.server import default_uri, serve
    except ModuleNotFoundError as exc:  # aiohttp: scripts/setup.sh installs it
        raise UsageError(f"the Engine API needs {exc.name}: run scripts/setup.sh") from None
    raise typer.Exit(serve(uri or default_uri(), time_, open_store().root))
