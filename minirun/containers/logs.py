"""Reading a container's log (docker's json-file lines, written by the monitor's copier): `logs`
with --tail, -t and -f, across the rotated files (`container.log.N`, `.gz` when compressed,
oldest first). stdout entries go to stdout, stderr entries to stderr; the Engine API frames them."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator

from minirun import leanjson
from minirun.containers.logfile import DROPPED_KEY, LOG_NAME
from minirun.errors import MinirunError, warn
from minirun.timestamps import rfc3339_ns

_POLL = 0.05


def log_path(container) -> str:
    return os.path.join(container.dir, LOG_NAME)


def rotated(container) -> list[str]:
    """The rotated files, newest first: container.log.1[.gz], container.log.2[.gz], ..."""
    found = []
    try:
        names = os.listdir(container.dir)
    except FileNotFoundError:
        return []
    for name in names:
        number = name[len(LOG_NAME) + 1 :].removesuffix(".gz")
        if name.startswith(LOG_NAME + ".") and number.isdigit() and not name.endswith(".tmp"):
            found.append((int(number), name.endswith(".gz"), name))
    # a file being compressed may show as both N and N.gz for a moment: the plain one is whole
    seen: set[int] = set()
    ordered = []
    for number, _gz, name in sorted(found):
        if number not in seen:
            seen.add(number)
            ordered.append(os.path.join(container.dir, name))
    return ordered


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return b""
    if path.endswith(".gz"):
        import zlib

        try:
            return zlib.decompress(data, 31)
        except zlib.error:
            return b""  # a compression cut short: its plain file was kept (logfile.py)
    return data


def _entries(lines: list[bytes], since: str = "", until: str = "") -> Iterator[dict]:
    """`since` (at or after) and `until` (before) are times as the entries write them (fixed-width
    RFC 3339 in UTC), so they compare as text."""
    for line in lines:
        try:
            entry = leanjson.loads(line)
        except ValueError:
            continue  # a torn last line: the copier is still writing it
        if not isinstance(entry, dict):
            continue
        stamp = entry.get("time", "")
        if (not since or stamp >= since) and (not until or stamp < until):
            yield entry


def write_entry(entry: dict, timestamps: bool) -> None:
    stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    text = entry.get("log", "")
    if timestamps:
        text = f"{entry.get('time', '')} {text}"
    stream.write(text)
    stream.flush()


def _lines(data: bytes) -> list[bytes]:
    complete = data.rpartition(b"\n")[0]
    return complete.split(b"\n") if complete else []


def show_logs(
    container,
    tail: int | None,
    timestamps: bool,
    follow: bool,
    still_running: Callable[[], bool],
    since: str = "",
    until: str = "",
) -> None:
    """`logs`: the entries (read_entries) to stdout and stderr."""
    for entry in read_entries(container, tail, follow, still_running, since, until):
        write_entry(entry, timestamps)
    dropped = container.state.get(DROPPED_KEY) or 0
    if dropped and not follow:
        warn(f"{dropped} bytes of this container's output were dropped: its disk was full")


def read_entries(
    container,
    tail: int | None,
    follow: bool,
    still_running: Callable[[], bool],
    since: str = "",
    until: str = "",
) -> Iterator[dict]:
    """The log's entries ({"log", "stream", "time"}), oldest first: the last `tail` (None: all);
    with `follow`, then new ones until `still_running()` says no. `since`: only entries stamped
    at or after it (start -a shows this run only); `until`: only those before it, and a follow
    ends when the clock reaches it (docker's --until). `logs` prints them, the Engine API frames them.

    The log is opened here, at the call, not at the first entry: a reader that answers before it
    reads (the Engine API sends its headers first; docker-py removes the container, then reads the
    stream) still has the whole log once the container and its files are gone."""
    if container.config.log_config.get("Type") == "none":
        raise MinirunError("configured logging driver does not support reading")
    path = log_path(container)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        f = None
    return _read_entries(container, f, path, tail, follow, still_running, since, until)


def _read_entries(
    container,
    f,
    path: str,
    tail: int | None,
    follow: bool,
    still_running: Callable[[], bool],
    since: str,
    until: str,
) -> Iterator[dict]:
    if until:
        # nothing stamped at or after `until` is shown: following past it would only wait
        running = still_running

        def still_running() -> bool:
            return running() and rfc3339_ns(time.time_ns()) < until

        follow = follow and rfc3339_ns(time.time_ns()) < until
    if f is None:
        if not follow:
            yield from _history(container, b"", tail, since, until)
            return
        while not os.path.exists(path) and still_running():
            time.sleep(_POLL)
        if not os.path.exists(path):
            return
        f = open(path, "rb")
    with f:
        data = f.read()
        partial = data[data.rfind(b"\n") + 1 :]
        yield from _history(container, data, tail, since, until)
        if follow:
            yield from _follow(f, path, partial, still_running, until)


def _history(container, current: bytes, tail: int | None, since: str, until: str) -> Iterator[dict]:
    """What is logged so far: the rotated files, oldest first, then `current`; for --tail only
    as many files back as the last `tail` lines need."""
    lines = _lines(current)
    older = rotated(container)
    if tail is not None:
        while len(lines) < tail and older:
            lines = _lines(_read(older.pop(0))) + lines
        lines = lines[-tail:] if tail > 0 else []
    else:
        lines = [line for path in reversed(older) for line in _lines(_read(path))] + lines
    yield from _entries(lines, since, until)


def _follow(f, path: str, partial: bytes, still_running: Callable[[], bool], until: str) -> Iterator[dict]:
    """New entries as they come; when the copier rotates, the rest of the old file, then the new."""
    current = f
    try:
        while True:
            running = still_running()
            chunk = current.read()
            if chunk:
                data = partial + chunk
                complete, _, partial = data.rpartition(b"\n")
                yield from _entries(complete.split(b"\n") if complete else [], until=until)
                continue
            if _rotated_away(current, path):
                try:
                    reopened = open(path, "rb")
                except FileNotFoundError:
                    reopened = None
                if reopened is not None:
                    if current is not f:
                        current.close()
                    current, partial = reopened, b""
                    continue
            if not running:
                return
            time.sleep(_POLL)
    finally:
        if current is not f:
            current.close()


def _rotated_away(f, path: str) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True
