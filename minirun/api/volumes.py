"""`/volumes/...`: list, create, inspect, delete, prune: the calls and documents of `volume
create/ls/inspect/rm/prune` (containers/mounts.py, frontend/volumeinfo.py), the local driver's."""

from __future__ import annotations

from aiohttp import web

from minirun.api.common import as_json, blocking, body, filters, flag, store
from minirun.api.errors import ApiError


async def list_(request: web.Request) -> web.Response:
    from minirun.frontend.volumeinfo import list_volumes

    words = filters(request)
    volumes = await blocking(lambda: list_volumes(store(request), words))
    return as_json({"Volumes": [v.to_json() for v in volumes], "Warnings": []})


def _strings(value, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"{what}: an object of strings is expected")
    return value


async def create(request: web.Request) -> web.Response:
    from minirun.containers.mounts import check_driver, create_volume

    config = await body(request)
    name = config.get("Name") or ""
    if not isinstance(name, str):
        raise ApiError(400, "Name: a string is expected")
    labels, options = _strings(config.get("Labels"), "Labels"), _strings(config.get("DriverOpts"), "DriverOpts")

    def run() -> dict:
        check_driver(config.get("Driver") or "local")
        volume, _ = create_volume(store(request), name, labels, options)
        return volume.to_json()

    return as_json(await blocking(run), status=201)


async def inspect(request: web.Request) -> web.Response:
    from minirun.store.volumes import VolumeStore

    def document() -> dict:
        return VolumeStore(store(request).root).get(request.match_info["name"]).to_json()

    return as_json(await blocking(document))


async def delete(request: web.Request) -> web.Response:
    from minirun.containers.mounts import remove_volume

    force = flag(request, "force")
    await blocking(lambda: remove_volume(store(request), request.match_info["name"], force))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    from minirun.frontend.volumeinfo import prune_volumes

    words = filters(request)
    # before API 1.42 a prune took every unused volume; since, the anonymous ones unless all=true
    version = request.match_info.get("version")
    everything = version is not None and tuple(map(int, version.split("."))) < (1, 42)
    removed, freed = await blocking(lambda: prune_volumes(store(request), words, everything))
    return as_json({"VolumesDeleted": removed or None, "SpaceReclaimed": freed})


ROUTES = [
    web.get("/volumes", list_),
    web.post("/volumes/create", create),
    web.post("/volumes/prune", prune),
    web.get("/volumes/{name}", inspect),
    web.delete("/volumes/{name}", delete),
]
