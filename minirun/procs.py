"""Processes by pid *and* start time: pids are reused, so a pid alone never proves a container
or monitor is alive."""

from __future__ import annotations


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":  # a zombie has finished: only its parent's wait is missing
        return None
    return int(fields[19])


def is_alive(pid: int, recorded_start: int | None) -> bool:
    if pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and (recorded_start is None or now == recorded_start)


def is_zombie(pid: int) -> bool:
    """Exited, not yet reaped (by a parent other than us: a monitor's launcher's children)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(b")") + 2 :].startswith(b"Z")


def parent_of(pid: int) -> int:
    """Field 4 of /proc/PID/stat, or 0 if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(data[data.rindex(b")") + 2 :].split()[1])
