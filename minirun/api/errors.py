"""docker's error answers: a JSON body `{"message": ...}` with its status codes. minirun's own
errors map by kind: NotFound 404, Conflict 409, UsageError 400 (a bad parameter), Forbidden 403,
others 500."""

from __future__ import annotations

import json

from aiohttp import web

from minirun.errors import BadArchive, Conflict, Forbidden, MinirunError, NotFound, UsageError


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def status_of(exc: MinirunError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, UsageError | BadArchive):
        return 400
    return 500


def answer(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"message": message}).encode(), content_type="application/json")


@web.middleware
async def middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return answer(exc.status, exc.message)
    except MinirunError as exc:
        return answer(status_of(exc), exc.message)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return answer(exc.status, exc.reason.lower() if exc.status != 404 else "page not found")
        raise
    except Exception as exc:  # a bug of ours: docker's 500, and the traceback on the service's stderr
        import traceback

        traceback.print_exc()
        return answer(500, f"{type(exc).__name__}: {exc}")
