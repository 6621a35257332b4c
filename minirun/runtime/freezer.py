"""Freezing every process of a container at once (`pause`, `unpause`): v2's `cgroup.freeze` in
the container's cgroup where it has a v2 one, else the v1 freezer controller's `freezer.state`.
Either way the kernel stops the tasks where they are, without a signal they could see (SIGSTOP
would be visible, and catchable by none but still reported to a parent).

Freezing takes a moment (each task stops at its next return to user space): the state file
says FREEZING, or cgroup.events `frozen 0`, until every task has; we wait for it, as runc does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from minirun.errors import MinirunError
from minirun.runtime import cgroups

_TIMEOUT = 10.0


def _freezer(container_id: str) -> tuple[str, int]:
    """(the cgroup that freezes the container, its hierarchy's version)."""
    return freezer_at(f"{cgroups.PARENT}/{container_id}", container_id)


def freezer_at(rel: str, container_id: str) -> tuple[str, int]:
    """_freezer() for the cgroup `rel` below the hierarchies' roots (an OCI cgroupsPath):
    (path, version) for set_frozen and cgroup_frozen."""
    found = cgroups.hierarchies()
    unified = next((h for h in found if h.version == 2), None)  # every v2 cgroup has cgroup.freeze
    hierarchy = unified or cgroups.owner("freezer", found)
    if hierarchy is None:
        raise MinirunError("pause needs a cgroup freezer: this host has neither cgroup v2 nor the v1 freezer")
    path = hierarchy.at(rel)
    if not os.path.isdir(path):
        raise MinirunError(f"container {container_id} has no cgroup to freeze (cgroups were not writable at its start)")
    return path, hierarchy.version


def freeze(container_id: str) -> None:
    set_frozen(*_freezer(container_id), True)


def thaw(container_id: str) -> None:
    set_frozen(*_freezer(container_id), False)


def is_frozen(container_id: str) -> bool:
    """What the kernel says now (the pause is recorded in the state; this is for checks)."""
    return cgroup_frozen(*_freezer(container_id))


def set_frozen(path: str, version: int, frozen: bool) -> None:
    """Freeze or thaw the cgroup `path` of a v1 freezer or v2 hierarchy, and wait until done."""
    if version == 2:
        _set(f"{path}/cgroup.freeze", "1" if frozen else "0", lambda: cgroup_frozen(path, 2) == frozen)
    else:
        # written again while the state reads FREEZING (as runc does): a task forked meanwhile is caught
        _set(f"{path}/freezer.state", "FROZEN" if frozen else "THAWED", lambda: cgroup_frozen(path, 1) == frozen)


def cgroup_frozen(path: str, version: int) -> bool:
    if version == 2:
        return "frozen 1" in _lines(f"{path}/cgroup.events")
    return _lines(f"{path}/freezer.state") == ["FROZEN"]


def _set(file: str, value: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise MinirunError(f"cgroup: write {value} to {file}: {exc.strerror}") from None
        if done():
            return
        if time.monotonic() > deadline:
            raise MinirunError(f"cgroup: {file} did not reach {value} in {_TIMEOUT:.0f} seconds")
        time.sleep(0.01)


def _lines(file: str) -> list[str]:
    try:
        with open(file) as f:
            return f.read().splitlines()
    except OSError:
        return []
