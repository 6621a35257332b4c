"""`/containers/...`: list, create, inspect, start, stop, restart, kill, pause, unpause, wait,
logs, top, changes, rename, delete, prune, attach, resize. Each is the library call the CLI's
verb makes (containers/lifecycle.py and its neighbours), its document the CLI's
(frontend/containerinfo.py) in the Engine API's shape."""

from __future__ import annotations

import asyncio
import os
import threading

from aiohttp import web

from minirun.api import streams
from minirun.api.common import STORE_ROOT, as_json, blocking, body, containers, find, flag, integer
from minirun.api.errors import ApiError
from minirun.errors import MinirunError

# attach requests waiting for their container's start (docker run: create, attach, start, wait):
# container id -> the sockets the monitor is to serve as its first clients (attachserver.py)
_PENDING_ATTACH: dict[str, list] = {}


def _find(request: web.Request):
    return find(request)


# -- list, inspect ---------------------------------------------------------------------------------


def summary(store_, container) -> dict:
    """A container as /containers/json lists it (docker's ContainerSummary)."""
    from minirun.containers.mounts import mount_points
    from minirun.containers.network import inspect_settings
    from minirun.containers.network import published as published_ports
    from minirun.containers.pause import status as pause_status
    from minirun.frontend.containerinfo import status_text
    from minirun.humanize import epoch_seconds
    from minirun.net.portmap import inspect_ports, port_bindings

    config = container.config
    published = inspect_ports(published_ports(container))  # while it runs; its bindings' list
    ports = []
    for port, bindings in (published or port_bindings(config.ports) or {}).items():
        number, _, proto = port.partition("/")
        for binding in bindings or [{}]:
            entry: dict = {"PrivatePort": int(number), "Type": proto or "tcp"}
            if published and binding.get("HostPort"):
                entry.update(IP=binding.get("HostIp") or "0.0.0.0", PublicPort=int(binding["HostPort"]))
            ports.append(entry)
    return {
        "Id": container.id,
        "Names": ["/" + config.name],
        "Image": config.image_ref,
        "ImageID": config.image if config.image.startswith("sha256:") else "sha256:" + config.image,
        "Command": " ".join(config.argv),
        "Created": int(epoch_seconds(config.created)),
        "Ports": ports,
        "Labels": config.labels,
        "State": pause_status(container),
        "Status": status_text(container),
        "HostConfig": {"NetworkMode": config.network},
        "NetworkSettings": {"Networks": inspect_settings(container)["Networks"]},
        "Mounts": mount_points(config),
    }


def _listing(request: web.Request, words: list[str]) -> list[dict]:
    from minirun.containers.listindex import listing
    from minirun.containers.liveness import refresh
    from minirun.frontend.containerinfo import ps_shown
    from minirun.frontend.filters import PS_KEYS, Filters, container_filter, shows_every_state

    cs = containers(request)
    listed = [refresh(cs, c, reload=False, record=False) for c in listing(cs)]
    show_all = flag(request, "all")
    if words:
        filters = Filters(words, PS_KEYS)
        keep = container_filter(filters, cs.store, listed)
        listed = [c for c in listed if keep(c)]
        show_all = show_all or shows_every_state(filters)
    limit = integer(request, "limit", -1)
    shown = ps_shown(listed, show_all or (limit or 0) > 0, limit if limit and limit > 0 else -1)
    documents = [summary(cs.store, c) for c in shown]
    if flag(request, "size"):
        from minirun.store.fsutil import tree_size

        for document, c in zip(documents, shown):
            document["SizeRw"] = tree_size(c.upper)
    return documents


async def list_(request: web.Request) -> web.Response:
    from minirun.api.common import filters

    return as_json(await blocking(_listing, request, filters(request)))


async def inspect(request: web.Request) -> web.Response:
    from minirun.frontend.containerinfo import inspect_container

    def document() -> dict:
        cs, container = _find(request)
        result = inspect_container(cs.store, container)
        if flag(request, "size"):
            from minirun.store.fsutil import tree_size

            result["SizeRw"] = tree_size(container.upper)
        return result

    return as_json(await blocking(document))


# -- create, start, stop... --------------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    from minirun.api import worker
    from minirun.api.containerspec import namespace
    from minirun.api.versions import API_VERSION

    config = await body(request)
    version = request.match_info.get("version") or API_VERSION
    ns = namespace(config, request.query.get("name", ""), request.query.get("platform", ""), version)
    values = dict(vars(ns))
    warnings = values.pop("api_warnings")
    # docker's StdinOnce is `run -i` without -d: the attached client's EOF closes the container's stdin
    values["detach"] = not config.get("StdinOnce")
    container_id = await worker.call("minirun.api.worker:create_container", request.app[STORE_ROOT], values)
    return as_json({"Id": container_id, "Warnings": warnings}, status=201)


async def start(request: web.Request) -> web.Response:
    from minirun.containers import lifecycle
    from minirun.containers.liveness import is_restarting, is_running
    from minirun.errors import NotFound

    def run() -> bool:
        cs, container = _find(request)
        if is_running(container) or is_restarting(container):
            return False
        pending = _PENDING_ATTACH.pop(container.id, [])
        options: dict = {}
        if pending:  # the first attached client, connected before PID 1 runs: it misses nothing
            # (a -t terminal starts at the request's ConsoleSize, else 24x80: attachserver.Stdio)
            options["attach_fd"] = pending[0].fileno()
        try:
            lifecycle.start(cs, container, **options)
        except NotFound:
            # start re-reads the record once PID 1 runs: an --rm container quick to exit may be
            # gone by then (its monitor removed it), which is no failure to start
            if not container.config.auto_remove:  # its record may be half gone: no look at it
                raise
        finally:
            for sock in pending:
                sock.close()
        return True

    started = await blocking(run)
    return web.Response(status=204 if started else 304)


def _timeout(request: web.Request) -> int | None:
    return integer(request, "t", None) if "t" in request.query else integer(request, "timeout", None)


async def stop(request: web.Request) -> web.Response:
    from minirun.containers import lifecycle
    from minirun.containers.liveness import is_restarting, is_running
    from minirun.containers.runconfig import stop_signal_of, stop_timeout

    def run() -> bool:
        cs, container = _find(request)
        if not (is_running(container) or is_restarting(container)):
            return False
        signal = request.query.get("signal")
        number = lifecycle.signal_number(signal) if signal else stop_signal_of(cs, container)
        lifecycle.stop(cs, container, stop_timeout(container.config, _timeout(request)), number)
        return True

    return web.Response(status=204 if await blocking(run) else 304)


async def restart(request: web.Request) -> web.Response:
    from minirun.containers import autostart, lifecycle
    from minirun.containers.runconfig import stop_signal_of, stop_timeout

    def run() -> None:
        cs, container = _find(request)
        signal = request.query.get("signal")
        number = lifecycle.signal_number(signal) if signal else stop_signal_of(cs, container)
        autostart.restart(cs, container, stop_timeout(container.config, _timeout(request)), number)

    await blocking(run)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    from minirun.containers import lifecycle
    from minirun.containers.runconfig import stop_signal_of

    def run() -> None:
        cs, container = _find(request)
        number = lifecycle.signal_number(request.query.get("signal") or "KILL")
        lifecycle.kill(cs, container, number, stop_signal_of(cs, container))

    await blocking(run)
    return web.Response(status=204)


async def pause(request: web.Request) -> web.Response:
    from minirun.containers.pause import pause as pause_container

    await blocking(lambda: pause_container(*_find(request)))
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    from minirun.containers.pause import unpause as unpause_container

    await blocking(lambda: unpause_container(*_find(request)))
    return web.Response(status=204)


async def delete(request: web.Request) -> web.Response:
    from minirun.containers import lifecycle

    def run() -> None:
        cs, container = _find(request)
        lifecycle.remove(cs, container, flag(request, "force"), flag(request, "v"))
        for sock in _PENDING_ATTACH.pop(container.id, []):
            sock.close()

    await blocking(run)
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    from minirun.containers import lifecycle

    name = request.query.get("name", "")
    if not name:
        raise ApiError(400, "name is required")

    def run() -> None:
        cs, container = _find(request)
        lifecycle.rename(cs, container, name.lstrip("/"))

    await blocking(run)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    """docker's container prune with its filters (label, label!, until): an unknown key or a bad
    value is a 400 before anything goes, never a filter dropped, which would take every stopped
    container."""
    from minirun.api.common import filters
    from minirun.containers import lifecycle
    from minirun.frontend.filters import container_prune_filter

    allowed = container_prune_filter(filters(request))
    removed, freed = await blocking(lambda: lifecycle.prune(containers(request), allowed))
    return as_json({"ContainersDeleted": removed or None, "SpaceReclaimed": freed})


# -- wait ----------------------------------------------------------------------------------------------


async def wait(request: web.Request) -> web.StreamResponse:
    """docker's wait: the headers at once (its client waits for them before it starts the
    container), the exit code when the condition holds: `not-running` (the default), `next-exit`
    (the exit after the next start), `removed`."""
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition: {condition!r}")
    cs, container = await blocking(_find, request)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    code = await _wait_for(cs, container, condition, request)
    if code is not None:
        try:
            await response.write(f'{{"StatusCode":{code},"Error":null}}\n'.encode())
            await response.write_eof()
        except ConnectionError:
            pass
    return response


async def _wait_for(cs, container, condition: str, request: web.Request) -> int | None:
    """The exit code once `condition` holds; None if the client left first."""
    from minirun.containers.liveness import is_restarting, is_running, refresh

    first = container.state.get("FinishedAt")
    seen_running = False
    while True:
        if request.transport is None or request.transport.is_closing():
            return None
        gone = not os.path.isdir(container.dir)
        if not gone:
            container = await blocking(refresh, cs, container, True, False)
        running = is_running(container) or is_restarting(container)
        seen_running = seen_running or running
        code = int(container.state.get("ExitCode") or 0)
        if gone:  # an --rm container's monitor removed it: its exit is in its "die" event
            return await blocking(_last_exit, cs.store.root, container.id, code)
        elif not running:
            exited_since = container.state.get("FinishedAt") != first and container.state.get("Status") == "exited"
            if condition == "not-running" or seen_running or exited_since:
                return code
        await asyncio.sleep(0.05)


def _last_exit(store_root: str, container_id: str, known: int) -> int:
    from minirun import events

    for event in reversed(events.read(store_root)):
        if event.get("Action") == "die" and (event.get("Actor") or {}).get("ID") == container_id:
            return int(event["Actor"].get("Attributes", {}).get("exitCode", known))
    return known


# -- logs ------------------------------------------------------------------------------------------------


async def logs(request: web.Request) -> web.StreamResponse:
    from minirun.containers import liveness
    from minirun.containers.logs import read_entries
    from minirun.humanize import parse_timestamp
    from minirun.timestamps import rfc3339_ns

    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    follow, timestamps = flag(request, "follow"), flag(request, "timestamps")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "") else integer(request, "tail")
    if tail is not None and tail < 0:
        tail = None

    def stamp(name: str) -> str:
        value = request.query.get(name, "")
        if value in ("", "0"):
            return ""
        return rfc3339_ns(parse_timestamp(value))

    since, until = stamp("since"), stamp("until")
    cs, container = await blocking(_find, request)
    if container.config.log_config.get("Type") == "none":
        raise ApiError(501, "configured logging driver does not support reading")
    stopped = threading.Event()

    def still_running() -> bool:
        if stopped.is_set() or not os.path.isdir(container.dir):  # removed: nothing more will come
            return False
        return liveness.is_running(liveness.refresh(cs, container, record=False))

    # the log opened before the headers go: docker-py's run() removes the container, then reads
    entries = await blocking(read_entries, container, tail, follow, still_running, since, until)
    response = web.StreamResponse(
        headers={"Content-Type": streams.RAW_STREAM if container.config.tty else streams.MULTIPLEXED_STREAM}
    )
    await response.prepare(request)
    output = streams.Output(response, bool(container.config.tty))
    try:
        async for entry in streams.items(entries, stopped):
            kind = streams.STDERR if entry.get("stream") == "stderr" else streams.STDOUT
            if (kind == streams.STDOUT and not stdout) or (kind == streams.STDERR and not stderr):
                continue
            text = entry.get("log", "")
            if timestamps:
                text = f"{entry.get('time', '')} {text}"
            await output.write(kind, text.encode())
        await response.write_eof()
    except ConnectionError:
        pass  # the client left
    finally:
        stopped.set()
    return response


# -- top, changes -----------------------------------------------------------------------------------------


async def top(request: web.Request) -> web.Response:
    import shlex

    from minirun.containers import liveness
    from minirun.containers.top import top as ps_top

    def run() -> dict:
        cs, container = _find(request)
        if not liveness.is_running(container):
            from minirun.errors import Conflict

            raise Conflict(f"Container {container.id} is not running")
        titles, rows = ps_top(container, shlex.split(request.query.get("ps_args", "")))
        return {"Titles": titles, "Processes": rows}

    return as_json(await blocking(run))


async def changes(request: web.Request) -> web.Response:
    from minirun.frontend.containerdiff import container_changes
    from minirun.layer.changes import KIND_CODES

    def run() -> list[dict]:
        cs, container = _find(request)
        return [{"Path": c.path, "Kind": KIND_CODES[c.kind]} for c in container_changes(cs.store, container)]

    return as_json(await blocking(run) or None)


# -- attach, resize ----------------------------------------------------------------------------------------


async def attach(request: web.Request) -> web.StreamResponse:
    """Hijacked: the container's output (multiplexed without a terminal) to the client, its
    input to the container's stdin (with OpenStdin). Before the container starts (docker run),
    the monitor gets our socket as its first client at the start, so nothing is missed. With a
    terminal, the detach keys (`detachKeys`, docker's ctrl-p,ctrl-q by default) typed end the
    attach and leave the container running, as dockerd's escape proxy does."""
    from minirun.containers.attachclient import EscapeMatcher, parse_detach_keys

    stream, logs = flag(request, "stream"), flag(request, "logs")
    cs, container = await blocking(_find, request)
    if container.state.get("Paused") and stream:
        raise ApiError(409, "You cannot attach to a paused container, unpause it first")
    stdin = flag(request, "stdin") and bool(container.config.interactive)
    escape = None
    if stdin and container.config.tty:
        escape = EscapeMatcher(parse_detach_keys(request.query.get("detachKeys", "")))  # a bad one: 400
    want = {
        streams.STDOUT: flag(request, "stdout"),
        streams.STDERR: flag(request, "stderr"),
    }
    content_type = streams.RAW_STREAM if container.config.tty else streams.MULTIPLEXED_STREAM
    if logs or not stream:
        # dockerd's order: the log as it is, then (stream=1) what comes from now on
        hijacked = await streams.hijack(request, content_type)
        output = streams.Output(hijacked.response, bool(container.config.tty))
        try:
            if logs:
                await _replay_log(cs, container, output, want)
            if stream:
                return await _attach_stream(request, cs, container, hijacked, output, stdin, escape, want)
        except ConnectionError:
            pass
        await hijacked.close()
        return hijacked.response
    return await _attach_stream(request, cs, container, None, None, stdin, escape, want)


async def _replay_log(cs, container, output: streams.Output, want: dict) -> None:
    """The container's log so far (none with the `none` driver), its streams as `want` says."""
    from minirun.containers.logs import read_entries

    if container.config.log_config.get("Type") == "none":
        return
    stopped = threading.Event()
    try:
        async for entry in streams.items(read_entries(container, None, False, lambda: False, "", ""), stopped):
            kind = streams.STDERR if entry.get("stream") == "stderr" else streams.STDOUT
            if want.get(kind):
                await output.write(kind, entry.get("log", "").encode())
    finally:
        stopped.set()


async def _attach_stream(
    request: web.Request, cs, container, hijacked, output, stdin: bool, escape, want: dict
) -> web.StreamResponse:
    """The attach proper: the container's output from now on to the client (`hijacked` already,
    or taken over here once the container is reached), the client's input to its stdin."""
    import socket

    from minirun.containers.attachclient import connect
    from minirun.containers.liveness import is_running, refresh

    theirs = None
    if hijacked is not None:  # the log went first: the container may have stopped meanwhile
        container = await blocking(refresh, cs, container, True, False)
    if is_running(container):
        try:
            sock = socket.socket(fileno=await blocking(connect, container))
        except MinirunError:
            if hijacked is None:
                raise
            await hijacked.close()  # it ended while its log was read: the log was all of it
            return hijacked.response
    else:  # served from its next start (start takes `theirs`)
        sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        _PENDING_ATTACH.setdefault(container.id, []).append(theirs)
    sock.setblocking(False)
    if hijacked is None:
        content_type = streams.RAW_STREAM if container.config.tty else streams.MULTIPLEXED_STREAM
        hijacked = await streams.hijack(request, content_type)
        output = streams.Output(hijacked.response, bool(container.config.tty))
    assert output is not None
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    relay_in = asyncio.create_task(_client_to_monitor(hijacked, writer, stdin, escape))
    relay_out = asyncio.create_task(_monitor_to_client(reader, output, want))
    try:
        # the output ends with the container; the input ends the attach on the detach keys alone
        await asyncio.wait([relay_out, relay_in], return_when=asyncio.FIRST_COMPLETED)
        if relay_in.done() and not relay_in.result():
            await relay_out  # the client's EOF (or stdin closed): the output still flows to its end
    except ConnectionError:
        pass
    finally:
        relay_out.cancel()
        relay_in.cancel()
        writer.close()
        await hijacked.close()
        if theirs is not None and theirs in _PENDING_ATTACH.get(container.id, []):  # never started
            _PENDING_ATTACH[container.id].remove(theirs)
            theirs.close()
    return hijacked.response


async def _monitor_to_client(reader: asyncio.StreamReader, output: streams.Output, want: dict) -> None:
    from minirun.containers.attachserver import EXIT, HEADER, STDERR

    while True:
        try:
            header = await reader.readexactly(HEADER)
            payload = await reader.readexactly(int.from_bytes(header[1:HEADER], "big"))
        except asyncio.IncompleteReadError:
            return
        kind = header[:1]
        if kind == EXIT:
            return
        stream = streams.STDERR if kind == STDERR else streams.STDOUT
        if want.get(stream):
            await output.write(stream, payload)


async def _client_to_monitor(hijacked: streams.Hijacked, writer: asyncio.StreamWriter, stdin: bool, escape) -> bool:
    """The client's input to the container; True when it typed the detach keys."""
    from minirun.containers.attachserver import CLOSE_STDIN, STDIN, frame

    while True:
        data = await hijacked.input.read()
        if not stdin:
            if not data:
                return False
            continue
        detached = False
        if escape is not None and data:
            data, detached = escape.feed(data)
            if not data and not detached:
                continue  # a prefix of the keys, held back
        if data or not detached:
            writer.write(frame(CLOSE_STDIN) if not data else frame(STDIN, data))
            await writer.drain()
        if detached:
            return True
        if not data:
            return False


async def resize(request: web.Request) -> web.Response:
    """The container's terminal takes the client's size: a resize frame to its monitor, as an
    attached CLI sends on SIGWINCH (attachclient.py). Without a terminal there is nothing to size."""
    rows, cols = integer(request, "h") or 0, integer(request, "w") or 0
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise ApiError(400, f"bad terminal size: h={rows} w={cols}")
    _, container = await blocking(_find, request)
    await blocking(_resize, container, rows, cols)
    return web.Response(status=200)


def _resize(container, rows: int, cols: int) -> None:
    from minirun.containers.attachclient import connect
    from minirun.containers.attachserver import RESIZE, frame, pack_size

    if not container.config.tty or rows == 0 or cols == 0:
        return
    sock = connect(container)  # Conflict when it does not run: docker's 409 too
    try:
        os.write(sock, frame(RESIZE, pack_size(rows, cols)))  # 13 bytes into an empty socket buffer
    finally:
        os.close(sock)


ROUTES = [
    web.get("/containers/json", list_),
    web.post("/containers/create", create),
    web.post("/containers/prune", prune),
    web.get("/containers/{id}/json", inspect),
    web.post("/containers/{id}/start", start),
    web.post("/containers/{id}/stop", stop),
    web.post("/containers/{id}/restart", restart),
    web.post("/containers/{id}/kill", kill),
    web.post("/containers/{id}/pause", pause),
    web.post("/containers/{id}/unpause", unpause),
    web.post("/containers/{id}/wait", wait),
    web.get("/containers/{id}/logs", logs),
    web.get("/containers/{id}/top", top),
    web.get("/containers/{id}/changes", changes),
    web.post("/containers/{id}/rename", rename),
    web.post("/containers/{id}/attach", attach),
    web.post("/containers/{id}/resize", resize),
    web.delete("/containers/{id}", delete),
]
