"""`/networks/...`: list, inspect, create, delete, prune, with the library calls and documents of
`network ls/inspect/create/rm` (frontend/networkinfo.py), and connect/disconnect with
`network connect/disconnect`'s (containers/netconnect.py)."""

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
    for key in ("EnableIPv6", "Ingress", "ConfigOnly"):
        if config.get(key):
            raise ApiError(400, f"{key} networks are not supported (bridge networks with their own subnet only)")
    if config.get("Options"):
        raise ApiError(400, f"network options are not supported: {sorted(config['Options'])}")
    if not isinstance(config.get("Internal", False), (bool, type(None))):  # "false" is truthy
        raise ApiError(400, "Internal: a boolean is expected")
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiError(400, "Labels: an object of strings is expected")
    ipam = config.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise ApiError(400, "IPAM: an object is expected")
    if not isinstance(ipam.get("Config") or [], list) or not all(isinstance(p, dict) for p in ipam.get("Config") or []):
        raise ApiError(400, "IPAM.Config: a list of objects is expected")
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
        "internal": bool(config.get("Internal")),
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


def _container_of(config: dict) -> str:
    container = config.get("Container")
    if not isinstance(container, str) or not container:
        raise ApiError(400, "Container: a container's name or id is required")
    return container


async def connect(request: web.Request) -> web.Response:
    """NetworkConnectRequest: Container, EndpointConfig with Aliases, Links and IPAMConfig.IPv4Address."""
    from minirun.containers.netconnect import connect as connect_container

    config = await body(request)
    container = _container_of(config)
    endpoint = config.get("EndpointConfig") or {}
    if not isinstance(endpoint, dict):
        raise ApiError(400, "EndpointConfig: an object is expected")
    aliases = endpoint.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ApiError(400, "EndpointConfig.Aliases: a list of strings is expected")
    ipam = endpoint.get("IPAMConfig") or {}
    ip = ipam.get("IPv4Address") or "" if isinstance(ipam, dict) else ""
    if not isinstance(ip, str):
        raise ApiError(400, "EndpointConfig.IPAMConfig.IPv4Address: a string is expected")
    links = endpoint.get("Links") or []
    if not isinstance(links, list) or not all(isinstance(link, str) for link in links):
        raise ApiError(400, "EndpointConfig.Links: a list of strings is expected")
    network = request.match_info["id"]
    await blocking(lambda: connect_container(store(request), container, network, aliases, ip, links))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    """NetworkDisconnectRequest: Container, Force."""
    from minirun.containers.netconnect import disconnect as disconnect_container

    config = await body(request)
    container = _container_of(config)
    force = bool(config.get("Force"))
    network = request.match_info["id"]
    await blocking(lambda: disconnect_container(store(request), container, network, force))
    return web.Response(status=200)


ROUTES = [
    web.get("/networks", list_),
    web.post("/networks/create", create),
    web.post("/networks/prune", prune),
    web.get("/networks/{id}", inspect),
    web.delete("/networks/{id}", delete),
    web.post("/networks/{id}/connect", connect),
    web.post("/networks/{id}/disconnect", disconnect),
]
