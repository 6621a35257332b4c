"""Network verbs of the typer app: network create/ls/rm/inspect/connect/disconnect, and port."""

from __future__ import annotations

import json

import typer

from minirun.cli.typerapp import act_on_each, confirm_removal, new_app, open_store, print_deleted, print_table
from minirun.errors import NotFound

app = new_app()

network_app = new_app(help="Manage networks.")
app.add_typer(network_app, name="network")


def _networks(store=None):
    from minirun.net.networks import Networks

    return Networks(store or open_store())


@network_app.command("create")
def network_create(
    name: str = typer.Argument(..., metavar="NETWORK"),
    subnet: str | None = typer.Option(
        None, "--subnet", help="Subnet in CIDR format (default: a free /24 of 10.67.0.0/16)."
    ),
    gateway: str | None = typer.Option(
        None, "--gateway", help="IPv4 gateway for the subnet (default: its first address)."
    ),
    driver: str = typer.Option("bridge", "-d", "--driver", help="Driver to manage the network (bridge only)."),
    labels: list[str] = typer.Option([], "--label", help="Set metadata on a network (KEY=VALUE)."),
    internal: bool = typer.Option(False, "--internal", help="Restrict external access to the network."),
) -> None:
    """Create a network: a bridge of its own, with its own subnet."""
    from minirun.frontend.networkinfo import create_network
    from minirun.frontend.runoptions import key_values

    network = create_network(open_store(), name, subnet, gateway, driver, key_values(labels, "label"), internal)
    print(network.id)


@network_app.command("ls")
def network_ls(
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only display network IDs."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate the output."),
    format_: str | None = typer.Option(
        None, "--format", help="'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's placeholders)."
    ),
    filter_: list[str] = typer.Option([], "-f", "--filter", help="Filter output based on conditions provided."),
) -> None:
    """List networks."""
    from minirun.cli.formatting import check, write
    from minirun.frontend.networkinfo import list_networks

    check(format_)
    networks = list_networks(open_store(), filter_)
    shown = [(n.id if no_trunc else n.id[:12], n) for n in networks]
    if quiet:
        for id_, _ in shown:
            print(id_)
        return
    documents = [
        {
            "CreatedAt": n.created,
            "Driver": n.driver,
            "ID": id_,
            "IPv6": "false",
            "Internal": "true" if n.internal else "false",
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
            "Name": n.name,
            "Scope": "local",
        }
        for id_, n in shown
    ]
    write(
        format_,
        documents,
        NETWORK_HEADERS,
        lambda: print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], [[i, n.name, n.driver, "local"] for i, n in shown]
        ),
    )


NETWORK_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}


network_app.command("list", hidden=True)(network_ls)  # docker's alias


@network_app.command("rm")
def network_rm(names: list[str] = typer.Argument(..., metavar="NETWORK...")) -> None:
    """Remove networks (their bridge too); refused while a running container uses one."""
    from minirun.frontend.networkinfo import remove_network

    store = open_store()

    def one(name: str) -> None:
        remove_network(store, name)
        print(name)

    act_on_each(names, one)


network_app.command("remove", hidden=True)(network_rm)  # docker's alias


@network_app.command("prune")
def network_prune(
    filter_: list[str] = typer.Option([], "--filter", help="Provide filter values (label=, label!=, until=)."),
    force: bool = typer.Option(False, "-f", "--force", help="Do not prompt for confirmation."),
) -> None:
    """Remove all custom networks not used by at least one container."""
    from minirun.frontend.networkinfo import prune_networks

    if confirm_removal("all custom networks not used by at least one container", force):
        print_deleted("Networks", prune_networks(open_store(), filter_))


@network_app.command("connect")
def network_connect(
    network: str = typer.Argument(..., metavar="NETWORK"),
    container: str = typer.Argument(..., metavar="CONTAINER"),
    aliases: list[str] = typer.Option([], "--alias", help="Add network-scoped alias for the container."),
    ip: str = typer.Option("", "--ip", help="IPv4 address (e.g., 172.30.100.104)."),
    links: list[str] = typer.Option([], "--link", help="Add link to another container."),
) -> None:
    """Connect a container to a network (now if it runs, else at its next start)."""
    from minirun.containers.netconnect import connect

    connect(open_store(), container, network, aliases, ip, links)


@network_app.command("disconnect")
def network_disconnect(
    network: str = typer.Argument(..., metavar="NETWORK"),
    container: str = typer.Argument(..., metavar="CONTAINER"),
    force: bool = typer.Option(False, "-f", "--force", help="Force the container to disconnect from a network."),
) -> None:
    """Disconnect a container from a network."""
    from minirun.containers.netconnect import disconnect

    disconnect(open_store(), container, network, force)


@network_app.command("inspect")
def network_inspect(
    names: list[str] = typer.Argument(..., metavar="NETWORK..."),
    format_: str | None = typer.Option(None, "-f", "--format", help="A Go TEMPLATE run on each network ('json')."),
) -> None:
    """Show networks as JSON, with their running containers."""
    from minirun.cli.formatting import check, write_one_each
    from minirun.frontend.networkinfo import network_document

    check(format_)
    store = open_store()
    networks = _networks(store)
    documents = [network_document(store, networks.find(name)) for name in names]
    if not write_one_each(format_, documents):
        print(json.dumps(documents, indent=4))


@app.command("port")
def port(
    name: str = typer.Argument(..., metavar="CONTAINER"),
    private: str | None = typer.Argument(None, metavar="[PRIVATE_PORT[/PROTO]]"),
) -> None:
    """List port mappings or a specific mapping for the container."""
    from minirun.containers.container import Containers
    from minirun.containers.liveness import refresh
    from minirun.containers.network import published
    from minirun.net.portmap import port_lines

    containers = Containers(open_store())
    container = refresh(containers, containers.find(name), record=False)
    lines = port_lines(published(container), private)
    if private is not None and not lines:
        shown = private if "/" in private else f"{private}/tcp"
        raise NotFound(f"No public port '{shown}' published for {name}")
    for line in lines:
        print(line)
