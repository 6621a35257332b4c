"""What every handler uses: the store, query parameters as docker spells them, JSON answers,
blocking library calls off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from minirun.api.errors import ApiError

T = TypeVar("T")
STORE_ROOT = web.AppKey("store_root", str)


def store(request: web.Request):
    from minirun.store import Store

    return Store(request.app[STORE_ROOT])


def containers(request: web.Request):
    from minirun.containers.container import Containers

    return Containers(store(request))


def find(request: web.Request):
    """(Containers, the container named by the path's `id`, its state refreshed); NotFound."""
    from minirun.containers.liveness import refresh

    cs = containers(request)
    return cs, refresh(cs, cs.find(request.match_info["id"]), record=False)


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A library call that does not fork (those go to worker.py), in a thread of its own.

    Not the loop's default pool (asyncio.to_thread's): it has os.cpu_count() + 4 threads, and a
    call may wait for as long as a user asks (a `stop -t 600` of a container that ignores
    SIGTERM, a `docker compose down` stopping a few at once); a handful of them took every
    thread, and every other client's `ps` or `inspect` waited behind them."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, failed: bool) -> None:
        if not future.done():  # a client that left cancelled it
            future.set_exception(value) if failed else future.set_result(value)

    def run() -> None:
        value: Any
        try:
            value, failed = context.run(fn, *args, **kwargs), False
        except BaseException as exc:  # noqa: BLE001  (the handler raises it)
            value, failed = exc, True
        try:
            loop.call_soon_threadsafe(settle, value, failed)
        except RuntimeError:
            pass  # the loop is closed: the service is exiting, nobody waits for the answer

    threading.Thread(target=run, name=f"blocking-{getattr(fn, '__name__', 'call')}").start()
    return await future


def as_json(document: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(document).encode(), content_type="application/json")


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """docker's boolean query values: 1/true/True (and 0/false/False)."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"invalid boolean value for {name}: {value!r}")


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {value!r}") from None


def json_query(request: web.Request, name: str) -> dict:
    """A query parameter that holds a JSON object (filters, buildargs, labels); {} when absent."""
    text = request.query.get(name, "")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {text!r}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"invalid {name}: an object is expected")
    return value


def filters(request: web.Request) -> list[str]:
    """docker's `filters` query ({"status": ["running"], "label": {"a=b": true}}) as the CLI's
    -f KEY=VALUE words (frontend/filters.py reads both front ends' alike)."""
    document = json_query(request, "filters")
    text = request.query.get("filters")
    words = []
    for key, values in document.items():
        if isinstance(values, dict):  # the older map form: {"value": true}
            values = [v for v, on in values.items() if on]
        if not isinstance(values, list):
            raise ApiError(400, f"invalid filters: {text!r}")
        words += [f"{key}={value}" for value in values]
    return words


async def body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        document = await request.json()
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
    except RecursionError:  # "[" * 100000: nested deeper than the parser goes
        raise ApiError(400, "invalid JSON: nested too deeply") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ApiError(400, "invalid JSON: an object is expected")
    return document
