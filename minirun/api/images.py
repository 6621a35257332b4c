"""`/images/...`: list, inspect, history, tag, delete, prune: the documents `images`, `inspect`
and `history` show (frontend/imageinfo.py), in the Engine API's shape. An image is looked up,
never built or pulled by these (docker answers 404 and its client pulls). create (pull), push,
get (save) and load run as job processes (jobs.py): they fork and they stream."""

from __future__ import annotations

from aiohttp import web

from minirun.api.common import as_json, blocking, filters, flag, store
from minirun.api.errors import ApiError


def _seconds(text: str) -> int:
    from minirun.humanize import epoch_seconds

    return int(epoch_seconds(text)) if text else 0


def _listing(request: web.Request, words: list[str]) -> list[dict]:
    from minirun.frontend.imageinfo import image_rows

    s = store(request)
    rows = image_rows(s, flag(request, "all"))
    if words:
        from minirun.frontend.filters import IMAGE_KEYS, Filters, image_filter

        keep = image_filter(Filters(words, IMAGE_KEYS), s)
        rows = [r for r in rows if keep(r.image, None if r.repository == "<none>" else f"{r.repository}:{r.tag}")]
    documents: dict[str, dict] = {}
    for row in rows:  # a row per name; the API lists an image once, with all its names
        document = documents.get(row.image.id)
        if document is None:
            document = documents[row.image.id] = {
                "Id": row.image.id,
                "ParentId": "",
                "RepoTags": [],
                "RepoDigests": s.images.repo_digests(row.image.id),
                "Created": _seconds(row.image.created),
                "Size": row.size,
                "VirtualSize": row.size,
                "SharedSize": -1,
                "Labels": row.image.labels,
                "Containers": -1,
            }
        if row.repository != "<none>":
            document["RepoTags"].append(f"{row.repository}:{row.tag}")
    return list(documents.values())


async def list_(request: web.Request) -> web.Response:
    return as_json(await blocking(_listing, request, filters(request)))


def _image(request: web.Request):
    s = store(request)
    return s, s.images.lookup(request.match_info["name"])


async def inspect(request: web.Request) -> web.Response:
    from minirun.frontend.imageinfo import inspect_image

    def document() -> dict:
        s, image = _image(request)
        return inspect_image(s, image)

    return as_json(await blocking(document))


async def history(request: web.Request) -> web.Response:
    from minirun.frontend.imageinfo import history_rows

    def documents() -> list[dict]:
        s, image = _image(request)
        return [
            {
                "Id": row.image_id or "<missing>",
                "Created": _seconds(row.created),
                "CreatedBy": row.created_by,
                "Tags": s.images.tags_of(row.image_id) if row.image_id else None,
                "Size": row.size,
                "Comment": row.comment,
            }
            for row in history_rows(s, image)
        ]

    return as_json(await blocking(documents))


async def tag(request: web.Request) -> web.Response:
    from minirun.frontend.imagetag import tag_image

    repo = request.query.get("repo", "")
    if not repo:
        raise ApiError(400, "repository name (repo) is required")
    target = f"{repo}:{request.query['tag']}" if request.query.get("tag") else repo

    def run() -> None:
        s, image = _image(request)  # looked up: tag_image would build an embedded image it lacks
        tag_image(s, image.id, target)

    await blocking(run)
    return web.Response(status=201)


async def delete(request: web.Request) -> web.Response:
    def run() -> list[dict]:
        lines = store(request).remove_image(request.match_info["name"], force=flag(request, "force"))
        report = []
        for line in lines:
            kind, _, what = line.partition(": ")
            report.append({kind: what})
        return report

    return as_json(await blocking(run))


async def prune(request: web.Request) -> web.Response:
    from minirun.frontend.imageinfo import prune_images

    words = filters(request)
    lines, freed = await blocking(lambda: prune_images(store(request), words))
    deleted = [{kind: what} for kind, _, what in (line.partition(": ") for line in lines)]
    return as_json({"ImagesDeleted": deleted or None, "SpaceReclaimed": freed})


async def create(request: web.Request) -> web.StreamResponse:
    """docker pull: fromImage and tag (a tag, or a digest); fromSrc (import) is not served."""
    from minirun.api.jobrunner import registry_auth, run_job

    if request.query.get("fromSrc"):
        raise ApiError(501, "image import through the API is not supported: use `minirun import`")
    name, tag = request.query.get("fromImage", ""), request.query.get("tag", "")
    if not name:
        raise ApiError(400, "fromImage is required")
    if tag:
        name += ("@" if ":" in tag else ":") + tag
    return await run_job(request, "pull", {"ref": name, "auth": registry_auth(request)})


async def push(request: web.Request) -> web.StreamResponse:
    from minirun.api.jobrunner import registry_auth, run_job

    name, tag = request.match_info["name"], request.query.get("tag", "")
    return await run_job(request, "push", {"ref": f"{name}:{tag}" if tag else name, "auth": registry_auth(request)})


async def get(request: web.Request) -> web.StreamResponse:
    """docker save: /images/{name}/get for one, /images/get?names=...&names=... for several."""
    from minirun.api.jobrunner import run_job

    names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
    if not names:
        raise ApiError(400, "no image named to save")
    return await run_job(request, "save", {"names": names}, content_type="application/x-tar")


async def load(request: web.Request) -> web.StreamResponse:
    from minirun.api.jobrunner import run_job

    return await run_job(request, "load", {}, body=True)


async def search(request: web.Request) -> web.Response:
    raise ApiError(501, "image search is not supported: minirun keeps no registry index")


ROUTES = [
    web.get("/images/json", list_),
    web.post("/images/create", create),
    web.post("/images/load", load),
    web.post("/images/prune", prune),
    web.get("/images/search", search),
    web.get("/images/get", get),
    web.get("/images/{name:.+}/get", get),
    web.post("/images/{name:.+}/push", push),
    web.get("/images/{name:.+}/json", inspect),
    web.get("/images/{name:.+}/history", history),
    web.post("/images/{name:.+}/tag", tag),
    web.delete("/images/{name:.+}", delete),
]
