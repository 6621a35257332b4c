"""`top CONTAINER [ps OPTIONS]` as docker does it: the host's `ps` (with `-ef` unless options are
given) restricted to the container's processes, so users and times read as the host's ps writes
them. ps runs on the host, from the host's root: nothing of the container's is executed."""

from __future__ import annotations

import os
import re

from minirun.containers.container import Container
from minirun.errors import MinirunError, UsageError

# docker's validatePSArgs: `-o user=PID` would name another column PID and fool the pid match
_RENAMED_PID = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")  # docker splits on ASCII whitespace only


def check_ps_args(args: list[str]) -> None:
    for key, value in _RENAMED_PID.findall(" " + " ".join(args)):
        if key != "pid":
            raise UsageError(f'specifying "{key}={value}" is not allowed')


def pids_of(container: Container) -> list[int]:
    """Every process in the container's PID namespace (PID 1's), exec'd ones included; with
    --pid host that namespace is the host's, and the container's cgroups tell its processes."""
    if container.config.pid_mode == "host":
        from minirun.runtime import cgroups

        return sorted({int(pid) for path in cgroups.existing_paths(container.id) for pid in cgroups.members(path)})
    pid1 = container.state.get("Pid", 0)
    try:
        namespace = os.readlink(f"/proc/{pid1}/ns/pid")
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                found.append(int(entry))
        except OSError:
            continue  # gone meanwhile
    return sorted(found)


def parse_ps_output(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """docker's parsePSOutput: the titles, and the rows whose PID is the container's (a thread
    line, PID `-`, follows its process); fields past the last title join the last column."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise MinirunError("Couldn't find PID field in ps output")
    at = titles.index("PID")
    rows: list[list[str]] = []
    kept = False
    for line in lines[1:]:
        fields = _fields(line)
        if not fields:
            continue
        if len(fields) <= at:
            raise MinirunError(f"Unexpected ps output line: {line!r}")
        if fields[at] == "-":
            if kept:
                rows.append(_fit(fields, len(titles)))
            continue
        if not fields[at].isdigit():
            raise MinirunError(f"Unexpected pid '{fields[at]}'")
        kept = int(fields[at]) in pids
        if kept:
            rows.append(_fit(fields, len(titles)))
    return titles, rows


def _fields(line: str) -> list[str]:
    return [f for f in _ASCII_SPACE.split(line) if f]


def _fit(fields: list[str], count: int) -> list[str]:
    return [*fields[: count - 1], " ".join(fields[count - 1 :])]


def top(container: Container, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """(titles, rows) of the host's `ps ARGS` for the container's processes."""
    import subprocess

    args = ps_args or ["-ef"]
    check_ps_args(args)
    pids = pids_of(container)
    try:
        done = subprocess.run(["ps", *args, "-q" + ",".join(map(str, pids))], capture_output=True)
        if done.returncode != 0:  # some options (f) do not go with -q: docker tries without it
            done = subprocess.run(["ps", *args], capture_output=True)
    except FileNotFoundError:
        raise MinirunError("ps: executable file not found in $PATH") from None
    if done.returncode != 0:
        first = done.stderr.decode(errors="replace").split("\n", 1)[0] or f"exit status {done.returncode}"
        raise MinirunError(f"ps: {first}")
    return parse_ps_output(done.stdout.decode(errors="replace"), set(pids))
