"""`minirun system service`: the Docker Engine API on a unix socket, served by aiohttp.

aiohttp because it is a well-kept asyncio HTTP server that lets a handler take the connection
over after its headers (attach and exec start answer `101 UPGRADED` and then speak docker's raw
stream both ways: hijack.py), and asyncio because an attached client, a followed log and a wait
are long waits on sockets and files, not work: one thread holds hundreds of them.

The process never forks Python from a thread: a container starts through the store's monitors'
server (containers/detach.py), as `run -d` does, and what forks in the library (a create's guard
and volume copy, exec) runs in a process started by exec (worker.py, exec.py). The other blocking
library calls run in the default thread pool, so none stalls the event loop.

Versions: docker's clients ask `/_ping` first, then call `/vX.Y/...` with the version they
negotiated down to ours; the unversioned paths answer as the newest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiohttp import web

from minirun.api import errors
from minirun.api.common import STORE_ROOT
from minirun.api.versions import API_VERSION, MIN_API_VERSION


def default_uri() -> str:
    from minirun.hostwide import RUN_DIR

    return "unix://" + os.path.join(RUN_DIR, "minirun.sock")


def socket_path(uri: str) -> str:
    from minirun.errors import UsageError

    if not uri.startswith("unix://") or len(uri) <= len("unix://"):
        raise UsageError(f"unsupported URI {uri!r}: only unix:///path is served")
    path = uri[len("unix://") :]
    if not path.startswith("/"):
        raise UsageError(f"unsupported URI {uri!r}: the socket's path must be absolute")
    return path


class _Idle:
    """Exit after `seconds` with no request in flight (0: never), as podman's --time."""

    def __init__(self, seconds: float, stop: asyncio.Event) -> None:
        self.seconds, self.stop, self.busy = seconds, stop, 0
        self.timer: asyncio.TimerHandle | None = None
        self.arm()

    def arm(self) -> None:
        if self.seconds > 0 and self.busy == 0:
            self.timer = asyncio.get_running_loop().call_later(self.seconds, self.stop.set)

    def enter(self) -> None:
        self.busy += 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def leave(self) -> None:
        self.busy -= 1
        self.arm()


def build_app(store_root: str, idle: _Idle | None = None) -> web.Application:
    from minirun.api import archive, build, containers, events, execs, images, networks, resources, system, volumes

    @web.middleware
    async def versioned(request: web.Request, handler):
        if idle is not None:
            idle.enter()
        try:
            check_version(request)
            return await handler(request)
        finally:
            if idle is not None:
                idle.leave()

    app = web.Application(middlewares=[errors.middleware, versioned], client_max_size=1 << 30)
    app[STORE_ROOT] = store_root
    routes: list[web.RouteDef] = [
        *system.ROUTES,
        *containers.ROUTES,
        *archive.ROUTES,
        *resources.ROUTES,
        *execs.ROUTES,
        *images.ROUTES,
        *networks.ROUTES,
        *volumes.ROUTES,
        *build.ROUTES,
        *events.ROUTES,
    ]
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        # the same handler under /vX.Y: docker's clients call the version they negotiated
        app.router.add_route(route.method, r"/v{version:\d+\.\d+}" + route.path, route.handler)
    return app


def check_version(request: web.Request) -> None:
    """A version older than ours is served (we answer in the newer shape); a newer one is not."""
    asked = request.match_info.get("version")
    if asked and _version(asked) > _version(API_VERSION):
        raise errors.ApiError(400, f"client version {asked} is too new. Maximum supported API version is {API_VERSION}")
    if asked and _version(asked) < _version(MIN_API_VERSION):
        raise errors.ApiError(
            400, f"client version {asked} is too old. Minimum supported API version is {MIN_API_VERSION}"
        )


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


def serve(uri: str, idle_seconds: float, store_root: str) -> int:
    """Serve until SIGINT/SIGTERM or `idle_seconds` without a request (0: never)."""
    path = socket_path(uri)
    return asyncio.run(_serve(path, idle_seconds, store_root))


async def _serve(path: str, idle_seconds: float, store_root: str) -> int:
    from minirun.api import worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    idle = _Idle(idle_seconds, stop)
    app = build_app(store_root, idle)
    # at the end, what is still attached, followed or waited on is cut after 2 s
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2)
    await runner.setup()
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    _remove_stale(path)
    # 0600 from the start: whoever reaches the socket is root (umask first, so no window)
    old_umask = os.umask(0o177)
    try:
        site = web.UnixSite(runner, path)
        await site.start()
    finally:
        os.umask(old_umask)
    ours = os.stat(path).st_ino
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        worker.shutdown()
        _remove_ours(path, ours)
    return 0


def _remove_ours(path: str, inode: int) -> None:
    """The socket goes with the service; one a newer service bound at the same path stays."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_stale(path: str) -> None:
    """A socket nobody answers on (a service killed) is taken over; a live one is refused."""
    import socket

    from minirun.errors import Conflict

    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    except OSError as exc:
        print(f"minirun: warning: {path}: {exc.strerror}", file=sys.stderr)
        os.unlink(path)
        return
    finally:
        probe.close()
    raise Conflict(f"another service listens on {path}")
