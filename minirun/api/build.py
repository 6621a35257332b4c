"""`POST /build`: docker's classic builder's API (BuildKit's session is not served: clients use it
with DOCKER_BUILDKIT=0, and `Builder-Version: 1` in /_ping says so). The body is the context's
tar; the build runs as a job process (buildjob.py)."""

from __future__ import annotations

from aiohttp import web

from minirun.api.common import flag, json_query
from minirun.api.errors import ApiError


def _map(request: web.Request, name: str) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in json_query(request, name).items()}


# the RUN containers' limits docker's classic builder takes; docker's CLI sends each, zero when unset
_LIMITS = ("memory", "memswap", "cpushares", "cpuperiod", "cpuquota", "shmsize")
_CPU_SETS = ("cpusetcpus", "cpusetmems")  # "0" is CPU 0 here, not unset


def _no_limits(request: web.Request) -> None:
    """A RUN limit asked for is refused (400): the builder has none to apply, and a build asked
    to stay within 8 MiB or a tenth of a CPU must not run its RUNs without any limit."""
    given = [key for key in _LIMITS if request.query.get(key, "") not in ("", "0", "-1" if key == "memswap" else "0")]
    given += [key for key in _CPU_SETS if request.query.get(key, "")]
    ulimits = request.query.get("ulimits", "")
    if ulimits not in ("", "null", "[]"):
        given.append("ulimits")
    if given:
        raise ApiError(400, f"build resource limits are not supported: {', '.join(given)}")


async def build(request: web.Request) -> web.StreamResponse:
    from minirun.api.jobrunner import run_job

    if request.query.get("remote"):
        raise ApiError(501, "a remote build context is not supported: send the context as a tar")
    if request.query.get("version") == "2":
        raise ApiError(501, "BuildKit is not supported: build with DOCKER_BUILDKIT=0 (the classic builder)")
    _no_limits(request)
    params = {
        "dockerfile": request.query.get("dockerfile", ""),
        "tags": request.query.getall("t", []),
        "buildargs": _map(request, "buildargs"),
        "labels": _map(request, "labels"),
        "nocache": flag(request, "nocache"),
        "quiet": flag(request, "q"),
        "target": request.query.get("target", ""),
        "pull": flag(request, "pull"),
    }
    return await run_job(request, "build", params, body=True)


ROUTES = [web.post("/build", build)]
