"""The store's event log (docker's `events`): one JSON line per event in `<store>/events.log`,
appended by whichever process saw it happen (the CLI, a container's monitor), read by `events`.

A line is docker's event message: Type, Action, Actor {ID, Attributes}, scope, time, timeNano
(and status/id/from for containers and images, as docker still writes them). Appends are single
write(2)s on an O_APPEND descriptor, so lines from many processes never interleave; the log is
bounded: past MAX_BYTES it is renamed to events.log.1 (the one older file kept) and begun anew.
Recording never fails the action it records: a full disk loses the event, not the container.
Imports only os, json and time: a monitor started with `python -S` records `die` too."""

from __future__ import annotations

import os
import time

from minirun import leanjson

LOG_NAME = "events.log"
MAX_BYTES = 4 << 20


def record(store_root: str, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
    now = time.time_ns()
    event: dict[str, object] = {
        "Type": type_,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
        "scope": "local",
        "time": now // 1_000_000_000,
        "timeNano": now,
    }
    if type_ in ("container", "image"):  # docker's older fields, still in its messages
        event["status"], event["id"] = action, actor_id
        if type_ == "container" and attributes and "image" in attributes:
            event["from"] = attributes["image"]
    path = os.path.join(store_root, LOG_NAME)
    line = (leanjson.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return  # no store yet, or a read-only one: nothing happened that could be recorded
    try:
        if os.fstat(fd).st_size > MAX_BYTES:
            _rotate(path)
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rotate(path: str) -> None:
    """The full log becomes the older one; racing rotators each rename at most one file, and a
    writer still holding the old descriptor appends to what is now events.log.1."""
    try:
        os.rename(path, path + ".1")
    except OSError:
        pass


def read(store_root: str) -> list[dict]:
    """Every event kept, oldest first (the older file, then the current one)."""
    events = []
    for name in (LOG_NAME + ".1", LOG_NAME):
        try:
            with open(os.path.join(store_root, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        events += _parse(data)
    return events


def _parse(data: bytes) -> list[dict]:
    events = []
    for line in data.split(b"\n"):
        try:
            event = leanjson.loads(line)
        except ValueError:
            continue  # a torn or damaged line: the others still stand
        if isinstance(event, dict) and isinstance(event.get("timeNano"), int):
            events.append(event)
    return events


def follow(store_root: str, after: int, stop_at: int | None, poll: float = 0.1, stopped=None):
    """Events stamped after `after` (ns) as they are appended, until `stop_at` (ns) if given, or
    until `stopped()` is true (the Engine API's client left)."""
    path = os.path.join(store_root, LOG_NAME)
    position, inode = 0, None
    while (stop_at is None or time.time_ns() < stop_at) and not (stopped is not None and stopped()):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_ino != inode or st.st_size < position):
            inode, position = st.st_ino, 0  # rotated (or first seen): the new file from its start
        if st is not None and st.st_size > position:
            with open(path, "rb") as f:
                f.seek(position)
                chunk = f.read()
            complete = chunk.rpartition(b"\n")[0]
            position += len(complete) + 1 if complete else 0
            for event in _parse(complete):
                if event["timeNano"] > after and (stop_at is None or event["timeNano"] < stop_at):
                    yield event
            continue
        time.sleep(poll)
