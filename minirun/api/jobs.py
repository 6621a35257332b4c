"""The Engine API's long image jobs (pull, push, save, load, build), each in a process of its own:
`python -m minirun.api.jobs KIND PARAMS_JSON`, started by the service (run_job in jobrunner.py).

A job forks (a build's RUN containers, load's layer unpackers), which the service's threaded
process must not; and its output is a stream, not one result. Its stdout is the response's body:
docker's JSON messages (one a line: {"status": ...}, {"stream": ...}, {"aux": ...}), or a save's
tar. Its stdin is the request's body (load's archive, build's context). A failure is its last
stderr line, {"kind": "NotFound", "message": ...}, and exit status 1: the service answers it with
docker's status code while nothing was sent, else as docker's error message in the stream.
What the library prints on stdout goes to stderr: stdout is the body's alone."""

from __future__ import annotations

import json
import os
import sys

from minirun import errors
from minirun.api import jobstream
from minirun.api.jobstream import message


class TransferMessages:
    """A pull's or push's progress as docker's JSON messages (distribution.registry.TransferView)."""

    STEP = 1 << 19  # a progress message per half MiB of a layer, not per read

    def __init__(self, pulling: bool) -> None:
        self.verb = "Downloading" if pulling else "Pushing"
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.shown: dict[str, int] = {}

    def line(self, text: str) -> None:
        first, sep, rest = text.partition(": ")
        if sep and rest.startswith("Pulling from ") and " " not in first:
            message({"status": rest, "id": first})
        else:
            message({"status": text})

    def layer_status(self, short_id: str, text: str) -> None:
        message({"status": text, "progressDetail": {}, "id": short_id})

    def layer_started(self, short_id: str, total: int) -> None:
        self.totals[short_id], self.done[short_id], self.shown[short_id] = total, 0, 0
        self._progress(short_id)

    def layer_progress(self, short_id: str, count: int) -> None:
        self.done[short_id] = self.done.get(short_id, 0) + count
        if self.done[short_id] - self.shown.get(short_id, 0) >= self.STEP:
            self._progress(short_id)

    def _progress(self, short_id: str) -> None:
        current, total = self.done[short_id], self.totals.get(short_id, 0)
        self.shown[short_id] = current
        message({"status": self.verb, "progressDetail": {"current": current, "total": total}, "id": short_id})


def _auth(params: dict) -> tuple[str, str] | None:
    auth = params.get("auth")
    return (auth[0], auth[1]) if auth else None


def pull(store, params: dict) -> None:
    from minirun import events
    from minirun.distribution.pull import pull as pull_image

    result = pull_image(store, params["ref"], view=TransferMessages(True), auth=_auth(params))  # type: ignore[arg-type]
    events.record(store.root, "image", "pull", result.image.id, {"name": result.reference})


def push(store, params: dict) -> None:
    from minirun import events
    from minirun.distribution.push import push as push_image

    result = push_image(store, params["ref"], view=TransferMessages(False), auth=_auth(params))  # type: ignore[arg-type]
    message({"progressDetail": {}, "aux": {"Tag": result.tag, "Digest": result.digest, "Size": result.size}})
    events.record(store.root, "image", "push", params["ref"], {"name": params["ref"]})


def save(store, params: dict) -> None:
    from minirun import events
    from minirun.distribution.imagesave import plan_archive, select_images, write_archive

    members = plan_archive(store, select_images(store, params["names"]))  # a missing image fails here, first
    channel = jobstream.channel()
    write_archive(store, members, channel)
    channel.flush()
    for name in params["names"]:
        events.record(store.root, "image", "save", name, {"name": name})


def load(store, params: dict) -> None:
    from minirun import events
    from minirun.distribution.imageload import load_archive

    with open(0, "rb", closefd=False) as stdin:
        loaded = load_archive(store, stdin)
    for image in loaded:
        events.record(store.root, "image", "load", image.image_id, {"name": (image.refs or [image.image_id])[0]})
        lines = [f"Loaded image: {name}" for name in image.refs] or [f"Loaded image ID: {image.image_id}"]
        for line in lines:
            message({"stream": line + "\n"})


def build(store, params: dict) -> None:
    from minirun.api.buildjob import build as build_image

    build_image(store, params)


def archive(store, params: dict) -> None:
    """GET /containers/{id}/archive: the tar `cp CONTAINER:PATH -` writes."""
    from minirun.containers.container import Containers
    from minirun.containers.copy import copy_from_container

    containers = Containers(store)
    container = containers.find(params["id"])
    stdout = jobstream.channel()
    copy_from_container(containers, container, params["path"], "-", archive=True, follow=False, stdout=stdout)


def extract(store, params: dict) -> None:
    """PUT /containers/{id}/archive: the request's tar into a directory, as `cp - CONTAINER:DIR`
    does; the archive's owners are kept, as dockerd keeps them, or with copyUIDGID made the
    container user's."""
    from minirun.containers.container import Containers
    from minirun.containers.copy import copy_to_container

    containers = Containers(store)
    container = containers.find(params["id"])
    with open(0, "rb", closefd=False) as stdin:
        copy_to_container(
            containers,
            container,
            "-",
            params["path"],
            archive=True,
            follow=False,
            stdin=stdin,
            to_user=bool(params.get("copy_uid_gid")),
        )


def export(store, params: dict) -> None:
    """GET /containers/{id}/export: the tar `minirun export` writes."""
    from minirun.containers.commit import export_container
    from minirun.containers.container import Containers

    export_container(store, Containers(store).find(params["id"]), jobstream.channel())


KINDS = {
    "pull": pull,
    "push": push,
    "save": save,
    "load": load,
    "build": build,
    "archive": archive,
    "extract": extract,
    "export": export,
}


def main(argv: list[str]) -> int:
    from minirun.store import Store

    kind, params = argv[0], json.loads(argv[1])
    jobstream.open_channel(os.dup(1))
    os.dup2(2, 1)  # stray prints (and children's) go to stderr, not into the body
    try:
        KINDS[kind](Store(params["root"]), params)
    except errors.MinirunError as exc:
        _fail(errors.error_kind(exc), exc.message)
        return 1
    except Exception as exc:  # a bug of ours: the traceback on the service's stderr, a 500
        import traceback

        traceback.print_exc()
        _fail("MinirunError", f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        jobstream.flush()
    return 0


def _fail(kind: str, text: str) -> None:
    sys.stderr.write("\n" + json.dumps({"kind": kind, "message": text}) + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
