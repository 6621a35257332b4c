"""`/containers/{id}/archive` (docker cp both ways, docker-py's get_archive/put_archive) and
`/containers/{id}/export`: the CLI's own `cp` and `export` (containers/copy.py, commit.py), whose
children mount the container's view: a job process runs them (jobs.py), and a stat runs in a
worker (worker.py). docker's path rules (a trailing `/.`, a directory into an existing one) are
its client's: the server stats a path, archives one, or extracts into an existing directory."""

from __future__ import annotations

import base64
import json

from aiohttp import web

from minirun.api.common import STORE_ROOT, blocking, find, flag
from minirun.api.errors import ApiError

TAR = "application/x-tar"
STAT_HEADER = "X-Docker-Container-Path-Stat"
GO_DIR = 1 << 31  # os.ModeDir in the stat's mode


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise ApiError(400, "path is required")  # dockerd's "not a valid path" 400
    return path


async def _stat(request: web.Request) -> tuple[str, dict]:
    """(the container's id, docker's stat of the path asked for): 404 when either is missing."""
    from minirun.api import worker

    path = _path(request)
    _, container = await blocking(find, request)
    found = await worker.call("minirun.api.worker:stat_path", request.app[STORE_ROOT], container.id, path)
    return container.id, found


def _stat_header(found: dict) -> dict[str, str]:
    return {STAT_HEADER: base64.b64encode(json.dumps(found).encode()).decode()}


async def head(request: web.Request) -> web.Response:
    _, found = await _stat(request)
    return web.Response(status=200, headers=_stat_header(found))


async def get(request: web.Request) -> web.StreamResponse:
    from minirun.api.jobrunner import run_job

    container_id, found = await _stat(request)
    params = {"id": container_id, "path": _path(request)}
    return await run_job(request, "archive", params, content_type=TAR, headers=_stat_header(found))


async def put(request: web.Request) -> web.StreamResponse:
    """The body's tar into the directory `path`, which must exist (404) and be one (400). An
    existing directory is never replaced by a non-directory nor the reverse (docker's
    noOverwriteDirNonDir, which its clients always ask for); the archive's owners are kept, as
    dockerd keeps them, unless copyUIDGID (`docker cp -a`) asks for the container user's."""
    from minirun.api.jobrunner import run_job

    flag(request, "noOverwriteDirNonDir")  # a malformed value is a 400, as any boolean
    to_user = flag(request, "copyUIDGID")
    container_id, found = await _stat(request)
    if not found["mode"] & GO_DIR and not found["linkTarget"]:  # a link's target: the copy checks it
        raise ApiError(400, f"extraction point is not a directory: {_path(request)}")
    params = {"id": container_id, "path": _path(request), "copy_uid_gid": to_user}
    return await run_job(request, "extract", params, content_type=TAR, body=True)


async def export(request: web.Request) -> web.StreamResponse:
    from minirun.api.jobrunner import run_job

    _, container = await blocking(find, request)
    return await run_job(request, "export", {"id": container.id}, content_type=TAR)


ROUTES = [
    web.head("/containers/{id}/archive", head),
    web.get("/containers/{id}/archive", get, allow_head=False),
    web.put("/containers/{id}/archive", put),
    web.get("/containers/{id}/export", export, allow_head=False),
]
