"""The Engine API's /build in its job process (jobs.py): the request's tar context from stdin,
minirun's builder (the one `build` runs), and docker's classic builder's JSON stream on the way:
{"stream": "Step 1/3 : FROM busybox\\n"}, " ---> <id>", a RUN's output as it comes, {"aux":
{"ID": ...}}, "Successfully built <id>", "Successfully tagged <name>"."""

from __future__ import annotations

import os
import tempfile

from minirun.api.jobstream import channel, message
from minirun.build.builder import Progress


def _stream(text: str) -> None:
    message({"stream": text})


class BuildMessages(Progress):
    """A step's lines as they come, and a RUN's output as the RUN writes it: a forked pump reads
    it from a pipe and sends it on while the job waits for the RUN (the job keeps no thread: it
    forks). With q=1 nothing but the image id, as docker's quiet build: a RUN's output is kept in
    a temp file then, and sent only if the RUN fails."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._captured = tempfile.TemporaryFile()
        self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._pump: tuple[int, int] | None = None  # the pump's pid and the pipe's write end

    def _line(self, text: str) -> None:
        if not self.quiet:
            _stream(text + "\n")

    def step(self, number: int, total: int, text: str) -> None:
        self._line(f"Step {number}/{total} : {text}")

    def using_cache(self) -> None:
        self._line(" ---> Using cache")

    def running_in(self, container_id: str) -> None:
        self._line(f" ---> Running in {container_id[:12]}")

    def removing(self, container_id: str) -> None:
        self._line(f"Removing intermediate container {container_id[:12]}")

    def image(self, image_id: str) -> None:
        self._line(f" ---> {image_id.split(':', 1)[-1][:12]}")

    def run_stdio(self) -> tuple[int, int, int] | None:
        if not self.quiet:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
            if pid == 0:
                _pump(read_fd, write_fd)
            os.close(read_fd)
            self._pump = (pid, write_fd)
            return (self._null, write_fd, write_fd)
        self._captured.seek(0)
        self._captured.truncate()
        fd = self._captured.fileno()
        return (self._null, fd, fd)

    def run_done(self, failed: bool) -> None:
        if self._pump is not None:  # the RUN is over: the pump sends what is left, then ends
            pid, write_fd = self._pump
            self._pump = None
            os.close(write_fd)
            os.waitpid(pid, 0)
            return
        if not failed:
            return
        self._captured.seek(0)
        while chunk := self._captured.read(1 << 16):
            _stream(chunk.decode(errors="replace"))


def _pump(read_fd: int, write_fd: int) -> None:
    """The forked pump: the RUN's output from the pipe to the job's channel, as {"stream": text}
    messages, until every writer is gone. Never returns. The job writes nothing meanwhile: it
    waits for the RUN, then for this process."""
    import codecs
    import json

    status = 0
    try:
        os.close(write_fd)
        out = channel().fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character split across reads
        while chunk := os.read(read_fd, 1 << 16):
            text = decoder.decode(chunk)
            if text:
                line = (json.dumps({"stream": text}, separators=(",", ":")) + "\n").encode()
                while line:
                    line = line[os.write(out, line) :]
        if tail := decoder.decode(b"", final=True):
            os.write(out, (json.dumps({"stream": tail}) + "\n").encode())
    except BaseException:  # the service went (EPIPE): nobody to tell; the job finds out itself
        status = 1
    finally:
        os._exit(status)


def _options(params: dict, context: str, dockerfile_text: str | None):
    from minirun.build.builder import BuildOptions
    from minirun.errors import UsageError
    from minirun.frontend.buildimages import find_image
    from minirun.store.reference import parse_reference

    dockerfile = params.get("dockerfile") or None
    if dockerfile is not None:
        if os.path.isabs(dockerfile) or ".." in dockerfile.split("/"):
            raise UsageError(f"the Dockerfile {dockerfile!r} is not inside the build context")
        dockerfile = os.path.join(context, dockerfile)
    return BuildOptions(
        context=context,
        dockerfile=dockerfile if dockerfile_text is None else None,
        dockerfile_text=dockerfile_text,
        sent_context=True,
        tags=[parse_reference(t) for t in params.get("tags", [])],
        build_args=params.get("buildargs") or {},
        no_cache=bool(params.get("nocache")),
        labels=params.get("labels") or {},
        target=params.get("target") or "",
        pull=bool(params.get("pull")),
        find_image=find_image,
    )


def build(store, params: dict) -> None:
    from minirun.build.builder import build_image
    from minirun.build.stdincontext import read_stdin_context, release

    with open(0, "rb", closefd=False) as stdin:
        context = read_stdin_context(store, stdin)
    try:
        options = _options(params, context.directory, context.dockerfile_text)
        progress = BuildMessages(bool(params.get("quiet")))
        result = build_image(store, options, progress)
    finally:
        release(store, context)
    if result.unused_args:
        _stream(f"[Warning] One or more build-args [{' '.join(result.unused_args)}] were not consumed\n")
    message({"aux": {"ID": result.image.id}})
    if params.get("quiet"):
        _stream(result.image.id + "\n")
        return
    _stream(f"Successfully built {result.image.short_id}\n")
    for name in result.tags:
        _stream(f"Successfully tagged {name}\n")
