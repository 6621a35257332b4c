"""Reading a container's log (docker's json-file lines, written by the monitor): `logs` with
--tail, -t and -f. stdout entries go to stdout, stderr entries to stderr."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Callable, Iterator

_POLL = 0.05


def log_path(container) -> str:
    return os.path.join(container.dir, "container.log")


def _entries(lines: list[bytes]) -> Iterator[dict]:
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue  # a torn last line: the monitor is still writing it


def write_entry(entry: dict, timestamps: bool) -> None:
    stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    text = entry.get("log", "")
    if timestamps:
        text = f"{entry.get('time', '')} {text}"
    stream.write(text)
    stream.flush()


def show_logs(container, tail: int | None, timestamps: bool, follow: bool, still_running: Callable[[], bool],
              start_offset: int = 0) -> None:
    """`start_offset`: skip what an earlier run of the container logged (start -a shows this run only)."""
    path = log_path(container)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        if not follow:
            return
        while not os.path.exists(path) and still_running():
            time.sleep(_POLL)
        if not os.path.exists(path):
            return
        f = open(path, "rb")
    with f:
        f.seek(start_offset)
        data = f.read()
        complete, _, partial = data.rpartition(b"\n")
        lines = complete.split(b"\n") if complete else []
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for entry in _entries(lines):
            write_entry(entry, timestamps)
        if not follow:
            return
        while True:
            running = still_running()
            chunk = f.read()
            if chunk:
                data = partial + chunk
                complete, _, partial = data.rpartition(b"\n")
                for entry in _entries(complete.split(b"\n") if complete else []):
                    write_entry(entry, timestamps)
            elif not running:
                return
            else:
                time.sleep(_POLL)
