"""`/_ping` (GET and HEAD: no body for HEAD; the headers clients negotiate with), `/version`,
`/info`: the documents `minirun version` and `minirun info` print (frontend/systeminfo.py), in
the Engine API's shape; `/auth`: docker login's check of credentials against a registry."""

from __future__ import annotations

from aiohttp import web

from minirun.api.common import as_json, blocking, store


def _ping_headers() -> dict[str, str]:
    from minirun.api.versions import API_VERSION

    return {
        "Api-Version": API_VERSION,
        "Ostype": "linux",
        "Builder-Version": "1",  # the classic builder's: clients do not try BuildKit
        "Docker-Experimental": "false",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers={**_ping_headers(), "Content-Type": "text/plain; charset=utf-8"})
    return web.Response(text="OK", headers=_ping_headers())


def version_document() -> dict:
    import datetime

    from minirun.api.versions import API_VERSION, MIN_API_VERSION
    from minirun.frontend.systeminfo import version_document as minirun_version

    server = minirun_version()["Server"]
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "minirun",
        "GoVersion": "python" + __import__("platform").python_version(),
        "Os": "linux",
        "Arch": server["Arch"],
        "KernelVersion": server["KernelVersion"],
        "BuildTime": datetime.datetime.fromtimestamp(0, datetime.UTC).isoformat().replace("+00:00", "Z"),
        "Experimental": False,
    }
    components = [{"Name": "Engine", "Version": server["Version"], "Details": {k: str(v) for k, v in details.items()}}]
    return {"Platform": server["Platform"], "Components": components, "Version": server["Version"], **details}


async def version(request: web.Request) -> web.Response:
    return as_json(version_document())


def info_document(store_) -> dict:
    from minirun.frontend.systeminfo import info_document as minirun_info

    document = minirun_info(store_)
    return {
        **document,
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file", "local"]},
        "Runtimes": {"minirun": {"path": "minirun"}},
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "", "NodeAddr": ""},
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "Warnings": [],
        "Images": document["Images"],
        "IndexServerAddress": "https://index.docker.io/v1/",
    }


async def info(request: web.Request) -> web.Response:
    return as_json(await blocking(info_document, store(request)))


async def auth(request: web.Request) -> web.Response:
    """docker login: the credentials checked against the registry, kept by the client (which
    sends them with each pull and push, X-Registry-Auth), not here."""
    from minirun.api.common import body
    from minirun.api.errors import ApiError
    from minirun.distribution import credentials
    from minirun.errors import MinirunError

    config = await body(request)
    user, password = str(config.get("username") or ""), str(config.get("password") or "")
    server = str(config.get("serveraddress") or "docker.io")
    try:
        await blocking(credentials.check, server, user, password)
    except MinirunError as exc:
        raise ApiError(401, exc.message) from None
    return as_json({"Status": "Login Succeeded", "IdentityToken": ""})


ROUTES = [
    web.post("/auth", auth),
    web.get("/_ping", ping, allow_head=False),
    web.head("/_ping", ping),
    web.get("/version", version),
    web.get("/info", info),
]
