"""The Engine API's /build in its job process (jobs.py): the request's tar context from stdin,
minirun's builder (the one `build` runs), and docker's classic builder's JSON stream on the way:
{"stream": "Step 1/3 : FROM busybox\\n"}, " ---> <id>", a RUN's output, {"aux": {"ID": ...}},
"Successfully built <id>", "Successfully tagged <name>"."""

from __future__ import annotations

import os
import tempfile

from minirun.api.jobstream import message
from minirun.build.builder import Progress


def _stream(text: str) -> None:
    message({"stream": text})


class BuildMessages(Progress):
    """A step's lines as they come; a RUN's output kept in a temp file while it runs (the job
    has no thread to read a pipe: it forks the RUN) and sent when its step ends. With q=1
    nothing but the image id, as docker's quiet build (a failing RUN's output still goes)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._captured = tempfile.TemporaryFile()
        self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

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
        self._captured.seek(0)
        self._captured.truncate()
        fd = self._captured.fileno()
        return (self._null, fd, fd)

    def run_done(self, failed: bool) -> None:
        if self.quiet and not failed:
            return
        self._captured.seek(0)
        while chunk := self._captured.read(1 << 16):
            _stream(chunk.decode(errors="replace"))


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
