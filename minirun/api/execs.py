"""`/containers/{id}/exec`, `/exec/{id}/start`, `/exec/{id}/json`, `/exec/{id}/resize`.

An exec runs as `minirun exec` runs it: that verb, in a process of its own (started by exec, so
no fork from the service's threads; the verb joins the container's namespaces, drops privileges
and forks the command, runtime/execin.py), its stdio the hijacked connection's: through pipes
(multiplexed) or, with Tty, a pty the service holds. Its exit code is the command's. An exec's
record lives as long as the service, as docker's live as long as their container."""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

from minirun.api import streams
from minirun.api.common import STORE_ROOT, as_json, blocking, body, containers
from minirun.api.errors import ApiError


class Exec:
    def __init__(self, exec_id: str, container_id: str, config: dict) -> None:
        self.id, self.container_id, self.config = exec_id, container_id, config
        self.running, self.started = False, False
        self.exit_code: int | None = None
        self.pid = 0
        self.master = -1  # the pty's master, with Tty

    def document(self) -> dict:
        cmd = self.config.get("Cmd") or []
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": bool(self.config.get("Tty")),
                "entrypoint": cmd[0] if cmd else "",
                "arguments": cmd[1:],
                "privileged": bool(self.config.get("Privileged")),
                "user": self.config.get("User") or "",
            },
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": "",
            "Pid": self.pid,
        }


EXECS: dict[str, Exec] = {}


async def create(request: web.Request) -> web.Response:
    from minirun.containers.liveness import is_running, refresh

    config = await body(request)
    cmd = config.get("Cmd")
    if not isinstance(cmd, list) or not cmd or not all(isinstance(w, str) for w in cmd):
        raise ApiError(400, "No exec command specified")
    env = config.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise ApiError(400, "Env must be a list of strings")
    for field in ("User", "WorkingDir"):
        if not isinstance(config.get(field) or "", str):
            raise ApiError(400, f"{field} must be a string")

    def find():
        cs = containers(request)
        return refresh(cs, cs.find(request.match_info["id"]), record=False)

    container = await blocking(find)
    if not is_running(container):
        raise ApiError(409, f"Container {container.id} is not running")
    if container.state.get("Paused"):
        raise ApiError(409, f"Container {container.id} is paused, unpause the container before exec")
    exec_id = os.urandom(32).hex()
    EXECS[exec_id] = Exec(exec_id, container.id, config)
    return as_json({"Id": exec_id}, status=201)


def _find(request: web.Request) -> Exec:
    found = EXECS.get(request.match_info["id"])
    if found is None:
        raise ApiError(404, f"No such exec instance: {request.match_info['id']}")
    return found


def exec_argv(store_root: str, container_id: str, config: dict, detach: bool) -> list[str]:
    """`minirun exec`'s command line for an exec's config."""
    argv = [sys.executable, "-m", "minirun", "--root", store_root, "exec"]
    if detach:
        argv.append("-d")
    elif config.get("AttachStdin"):
        argv.append("-i")
    if config.get("Tty") and not detach:
        argv.append("-t")
    if config.get("Privileged"):
        argv.append("--privileged")
    argv += [f"--env={e}" for e in config.get("Env") or [] if "=" in e]
    if config.get("WorkingDir"):
        argv.append(f"--workdir={config['WorkingDir']}")
    if config.get("User"):
        argv.append(f"--user={config['User']}")
    return [*argv, container_id, *config["Cmd"]]


async def start(request: web.Request) -> web.StreamResponse:
    options = await body(request)
    exec_ = _find(request)
    if exec_.started:
        raise ApiError(409, f"Exec {exec_.id} has already been started")
    exec_.started = True
    detach = bool(options.get("Detach"))
    tty = bool(exec_.config.get("Tty") or options.get("Tty"))
    exec_.config["Tty"] = tty
    argv = exec_argv(request.app[STORE_ROOT], exec_.container_id, exec_.config, detach)
    if detach:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        exec_.running, exec_.pid = True, process.pid
        _, err = await process.communicate()
        exec_.running = False
        if process.returncode:
            exec_.exit_code = process.returncode
            raise ApiError(500, err.decode(errors="replace").strip().removeprefix("minirun: error: "))
        return web.Response(status=200)
    hijacked = await streams.hijack(request, streams.RAW_STREAM if tty else streams.MULTIPLEXED_STREAM)
    try:
        if tty:
            await _run_tty(exec_, argv, hijacked)
        else:
            await _run_piped(exec_, argv, hijacked)
    finally:
        exec_.running = False
        await hijacked.close()
    return hijacked.response


async def _run_piped(exec_: Exec, argv: list[str], hijacked: streams.Hijacked) -> None:
    stdin = bool(exec_.config.get("AttachStdin"))
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    exec_.running, exec_.pid = True, process.pid
    output = streams.Output(hijacked.response, False)
    assert process.stdout is not None and process.stderr is not None
    copies = [
        asyncio.create_task(_copy_out(process.stdout, output, streams.STDOUT)),
        asyncio.create_task(_copy_out(process.stderr, output, streams.STDERR)),
    ]
    feeder = asyncio.create_task(_copy_in(hijacked, process.stdin)) if stdin else None
    try:
        await asyncio.gather(*copies)
        exec_.exit_code = await process.wait()
    finally:
        if feeder is not None:
            feeder.cancel()
        if process.returncode is None:  # the client went away: the exec goes too, as docker's does
            process.kill()
            exec_.exit_code = await process.wait()


async def _copy_out(source: asyncio.StreamReader, output: streams.Output, stream: int) -> None:
    while data := await source.read(65536):
        try:
            await output.write(stream, data)
        except ConnectionError:
            pass  # the client left: keep draining, so the command is not blocked on a full pipe


async def _copy_in(hijacked: streams.Hijacked, sink) -> None:
    while data := await hijacked.input.read():
        sink.write(data)
        await sink.drain()
    sink.close()


async def _run_tty(exec_: Exec, argv: list[str], hijacked: streams.Hijacked) -> None:
    import pty
    import tty as terminal

    master, slave = pty.openpty()
    # raw: `minirun exec -t` gives the command a terminal of its own in the container, which
    # already turns \n into \r\n; this one, between it and the client, only carries bytes
    terminal.setraw(slave)
    exec_.master = master
    _set_size(master, 24, 80)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
    finally:
        os.close(slave)
    exec_.running, exec_.pid = True, process.pid
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)
    done = asyncio.Event()
    output = streams.Output(hijacked.response, True)
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave fd closed, the exec is over
            data = b""
        queue.put_nowait(data)
        if not data:
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    async def to_client() -> None:
        while data := await queue.get():
            try:
                await output.write(streams.STDOUT, data)
            except ConnectionError:
                pass
        done.set()

    async def from_client() -> None:
        while data := await hijacked.input.read():
            if exec_.config.get("AttachStdin"):
                os.write(master, data)  # a pty takes a terminal's typing; a short write is rare

    sender = asyncio.create_task(to_client())
    receiver = asyncio.create_task(from_client())
    try:
        exec_.exit_code = await process.wait()
        await asyncio.wait_for(done.wait(), 5)
    except TimeoutError:
        pass
    finally:
        receiver.cancel()
        sender.cancel()
        loop.remove_reader(master)
        os.close(master)
        exec_.master = -1
        if process.returncode is None:
            process.kill()
            exec_.exit_code = await process.wait()


def _set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def inspect(request: web.Request) -> web.Response:
    return as_json(_find(request).document())


async def resize(request: web.Request) -> web.Response:
    """The exec's outer terminal gets the size, and `minirun exec -t` a SIGWINCH to pass it on to
    the container's terminal."""
    exec_ = _find(request)
    try:
        rows, cols = int(request.query.get("h", "0")), int(request.query.get("w", "0"))
    except ValueError:
        raise ApiError(400, "h and w must be numbers") from None
    if exec_.master >= 0 and rows > 0 and cols > 0:
        _set_size(exec_.master, rows, cols)
        if exec_.running and exec_.pid:  # our child, not reaped while it runs: never a reused pid
            import signal

            # no session leader of this pty holds it as its terminal, so the kernel signals no one:
            # `minirun exec -t` takes the new size onto the container's pty on SIGWINCH (tty.attach)
            os.kill(exec_.pid, signal.SIGWINCH)
    return web.Response(status=201)


ROUTES = [
    web.post("/containers/{id}/exec", create),
    web.post("/exec/{id}/start", start),
    web.post("/exec/{id}/resize", resize),
    web.get("/exec/{id}/json", inspect),
]
