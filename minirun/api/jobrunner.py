"""The service's side of a job process (jobs.py): started with exec, fed the request's body, its
stdout streamed as the response, its failure answered as docker answers one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

from aiohttp import web

from minirun import errors
from minirun.api.common import STORE_ROOT

JSON_STREAM = "application/json"
_CLIENT_CHECK = 0.5  # seconds between two looks at whether a job's client is still there


def registry_auth(request: web.Request) -> list[str] | None:
    """X-Registry-Auth (base64url JSON: username, password, serveraddress) as [user, password];
    None when absent or empty (the saved credentials then, as `minirun login` keeps them)."""
    header = request.headers.get("X-Registry-Auth", "")
    if not header:
        return None
    try:
        document = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        from minirun.api.errors import ApiError

        raise ApiError(400, "invalid X-Registry-Auth header") from None
    if not isinstance(document, dict) or not document.get("username"):
        return None
    return [str(document["username"]), str(document.get("password") or "")]


def _environment() -> dict[str, str]:
    import minirun

    source = os.path.dirname(os.path.dirname(os.path.abspath(minirun.__file__)))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}


async def run_job(
    request: web.Request,
    kind: str,
    params: dict,
    content_type: str = JSON_STREAM,
    body: bool = False,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Run job `kind` with `params` (and the store's root); stream its output as the response
    (with `headers` besides its type)."""
    headers = {**(headers or {}), "Content-Type": content_type}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "minirun.api.jobs",
        kind,
        json.dumps({**params, "root": request.app[STORE_ROOT]}),
        stdin=asyncio.subprocess.PIPE if body else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    feeding = asyncio.create_task(_feed(request, process)) if body else None
    watching = asyncio.create_task(_stop_when_the_client_leaves(request, process))
    diagnostics = asyncio.create_task(process.stderr.read())
    response: web.StreamResponse | None = None
    # a JSON stream's first message is held back until a second one: a pull's "Pulling from"
    # comes before its manifest is found, and a missing one is docker's 404, not a stream
    held, hold = b"", content_type == JSON_STREAM
    try:
        while chunk := await process.stdout.read(1 << 16):
            held += chunk
            if hold and held.count(b"\n") < 2:
                continue
            if response is None:
                response = web.StreamResponse(headers=headers)
                await response.prepare(request)
            await response.write(held)
            held, hold = b"", False  # from the second message on, each goes as it comes
        code = await process.wait()
    except (ConnectionError, asyncio.CancelledError):  # the client left: so does the job
        _stop(process)
        await process.wait()
        raise
    finally:
        watching.cancel()
        if feeding is not None:
            feeding.cancel()
    failure = _failure(await diagnostics) if code != 0 else None
    if failure is not None and response is None:
        kind_name, text = failure
        raise errors.rebuild_error(kind_name, text)
    if response is None:
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
    try:
        if held:
            await response.write(held)
        if failure is not None and content_type == JSON_STREAM:
            text = failure[1]
            await response.write((json.dumps({"errorDetail": {"message": text}, "error": text}) + "\n").encode())
        await response.write_eof()
    except ConnectionError:
        pass  # the client had all it wanted (a tar reader stops at the archive's end) and left
    return response


async def _feed(request: web.Request, process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    try:
        while chunk := await request.content.read(1 << 16):
            process.stdin.write(chunk)
            await process.stdin.drain()
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        process.stdin.close()


async def _stop_when_the_client_leaves(request: web.Request, process: asyncio.subprocess.Process) -> None:
    """A job whose client went (docker build ^C'd, a closed socket) is stopped, as docker cancels
    a build: aiohttp tells a handler only when it writes, and a silent RUN writes nothing."""
    while process.returncode is None:
        await asyncio.sleep(_CLIENT_CHECK)
        transport = request.transport
        if transport is None or transport.is_closing():
            _stop(process)  # a RUN's step ends on it (builder._wait_interruptible), and so the job
            return


def _stop(process: asyncio.subprocess.Process) -> None:
    try:
        process.terminate()
    except ProcessLookupError:
        pass


def _failure(stderr: bytes) -> tuple[str, str]:
    """The job's reported failure (its last stderr line); what else it wrote goes to ours."""
    lines = stderr.decode(errors="replace").rstrip("\n").split("\n")
    try:
        reported = json.loads(lines[-1])
        kind, text = str(reported["kind"]), str(reported["message"])
        lines.pop()
    except (ValueError, KeyError, TypeError):
        kind, text = "MinirunError", "the job failed: " + (lines[-1] if lines else "no message")
    rest = "\n".join(lines).strip()
    if rest:
        sys.stderr.write(rest + "\n")
    return kind, text
