"""`/networks/...`: list, inspect, create, delete, prune, with the library calls and documents of
`network ls/inspect/create/rm` (frontend/networkinfo.py). A container is on one network, the one
it was created on (docker's NetworkingConfig with its Aliases): connect and disconnect answer
501, as minirun has no `network connect`."""

from __future__ import annotations

from aiohttp import web

from minirun.api.common import as_json, blocking, body, filters, store
from minirun.api.errors import ApiError


async def list_(request: web.Request) -> web.Response:
    from minirun.frontend.networkinfo import list_networks, network_document

    words = filters(request)

    def documents() -> list[dict]:
        s = store(request)
        # without their containers, as docker lists them (API >= 1.28)
        return [network_document(s, n, with_containers=False) for n in list_networks(s, words)]

    return as_json(await blocking(documents))


async def inspect(request: web.Request) -> web.Response:
    from minirun.frontend.networkinfo import network_document
    from minirun.net.networks import Networks

    def document() -> dict:
        s = store(request)
        return network_document(s, Networks(s).find(request.match_info["id"]))

    return as_json(await blocking(document))


def _create_options(config: dict) -> dict:
    """A NetworkCreateRequest as network create's options; what minirun cannot do is a 400."""
    name = config.get("Name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "network name is required")
    for key in ("Internal", "EnableIPv6", "Ingress", "ConfigOnly"):
        if config.get(key):
            raise ApiError(400, f"{key} networks are not supported (bridge networks with their own subnet only)")
    if config.get("Options"):
        raise ApiError(400, f"network options are not supported: {sorted(config['Options'])}")
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiError(400, "Labels: an object of strings is expected")
    ipam = config.get("IPAM") or {}
    if ipam.get("Driver") not in (None, "", "default"):
        raise ApiError(400, f"IPAM driver {ipam['Driver']!r} is not supported (only default)")
    pools = ipam.get("Config") or []
    if len(pools) > 1:
        raise ApiError(400, "a network has one IPv4 subnet here")
    subnet = gateway = None
    for pool in pools:
        unknown = sorted(k for k, v in pool.items() if v and k not in ("Subnet", "Gateway"))
        if unknown:
            raise ApiError(400, f"IPAM config {unknown} is not supported (Subnet and Gateway only)")
        subnet, gateway = pool.get("Subnet") or None, pool.get("Gateway") or None
    return {
        "name": name,
        "subnet": subnet,
        "gateway": gateway,
        "driver": config.get("Driver") or "bridge",
        "labels": labels,
    }


async def create(request: web.Request) -> web.Response:
    from minirun.frontend.networkinfo import create_network

    options = _create_options(await body(request))
    network = await blocking(lambda: create_network(store(request), **options))
    return as_json({"Id": network.id, "Warning": ""}, status=201)


async def delete(request: web.Request) -> web.Response:
    from minirun.frontend.networkinfo import remove_network

    await blocking(lambda: remove_network(store(request), request.match_info["id"]))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    from minirun.frontend.networkinfo import prune_networks

    words = filters(request)
    removed = await blocking(lambda: prune_networks(store(request), words))
    return as_json({"NetworksDeleted": removed or None})


async def connect(request: web.Request) -> web.Response:
    raise ApiError(
        501,
        "network connect/disconnect is not supported: a container is on the one network it was created on "
        "(create it with --network NAME and --network-alias)",
    )


ROUTES = [
    web.get("/networks", list_),
    web.post("/networks/create", create),
    web.post("/networks/prune", prune),
    web.get("/networks/{id}", inspect),
    web.delete("/networks/{id}", delete),
    web.post("/networks/{id}/connect", connect),
    web.post("/networks/{id}/disconnect", connect),
]
