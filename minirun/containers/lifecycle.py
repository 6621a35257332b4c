"""What happens to containers after they start: the truth about whether they still run, and
stop, kill, wait, rm, start, rename, prune with docker's semantics.

state.json is written by whoever is PID 1's parent (the foreground CLI or the monitor). If that
process died without writing the exit (kill -9, a reboot), `refresh` finds out from /proc, by pid
and start time, and records an honest exit, so no command waits on a dead container.
"""

from __future__ import annotations

import os
import signal
import time

from minirun.containers.container import Container, Containers
from minirun.errors import Conflict, NotFound, UsageError
from minirun.humanize import rfc3339_now
from minirun.procs import is_alive

UNKNOWN_EXIT = 255  # docker's code when the exit status was lost with the process that knew it
_POLL = 0.02


def is_running(container: Container) -> bool:
    return container.state.get("Status") == "running"


def is_dead(container: Container) -> bool:
    """A container whose record is damaged (Containers.load_or_dead): its processes may still run."""
    return container.state.get("Status") == "dead"


def _kill_dead(container: Container) -> None:
    """A dead container's processes, found through its cgroups, and their parents outside them
    (its monitor or CLI, which would otherwise write into the record as it goes): killed, the
    parents first, so nothing writes while the container is removed."""
    from minirun.procs import parent_of
    from minirun.runtime import cgroups

    members = {pid for path in cgroups.existing_paths(container.id) for pid in cgroups.members(path)}
    parents = {parent_of(pid) for pid in members} - members - {0, 1, os.getpid()}
    for pid in (*parents, *members):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(is_alive(pid, None) for pid in parents) and time.monotonic() < deadline:
        time.sleep(_POLL)


def refuse_dead(container: Container) -> None:
    if is_dead(container):
        raise Conflict(f"container {container.id} is dead: {container.state.get('Error', '')}; remove it with rm -f")


def has_processes(container: Container) -> bool:
    """Whether anything still runs in the container's cgroups: the one way to find the processes
    of a container whose record no longer says."""
    from minirun.runtime import cgroups

    return any(cgroups.members(path) for path in cgroups.existing_paths(container.id))


def refresh(containers: Containers, container: Container, reload: bool = True, record: bool = True) -> Container:
    """Re-read the state (unless the caller just loaded it); if it says running but PID 1 and
    its parent are both gone, record the exit nobody else will. `record=False` for commands that
    only read (ps, inspect, logs, top, stats, port): they show that exit and write nothing, so
    they work on a full or read-only disk."""
    if reload:
        try:
            container = containers.load_or_dead(container.id)
        except NotFound:  # removed meanwhile: keep what we had
            return container
    state = container.state
    if state.get("Status") != "running":
        return container
    if is_alive(state.get("Pid", 0), state.get("PidStartTime")):
        return container
    if is_alive(state.get("MonitorPid", 0), state.get("MonitorStartTime")):
        return container  # PID 1 just ended; its parent is writing the exit now
    exited = {
        "Status": "exited",
        "Running": False,
        "Pid": 0,
        "ExitCode": UNKNOWN_EXIT,
        "Error": "the container's monitor died; its exit status is unknown",
        "FinishedAt": rfc3339_now(),
    }
    if record:
        containers.update_state(container, **exited)
    else:
        container.state.update(exited)
    _remove_cgroups(container)  # the monitor would have (cgroupfs, not the store's disk)
    return container


def _remove_cgroups(container: Container) -> None:
    """Whoever records an exit removes the container's cgroups; this catches what a killed
    monitor or CLI left behind."""
    from minirun.runtime import cgroups

    cgroups.remove(cgroups.existing_paths(container.id))


def signal_number(name: str | int) -> int:
    """`KILL`, `SIGKILL`, `9` -> 9 (docker's --signal spelling)."""
    text = str(name).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        try:
            return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
        except (KeyError, ValueError):
            pass
    raise UsageError(f"invalid signal: {name}")


def kill(containers: Containers, container: Container, sig: int = signal.SIGKILL) -> None:
    container = refresh(containers, container)
    if not is_running(container):
        raise Conflict(f"Cannot kill container: {container.id[:12]}: container {container.id} is not running")
    _signal(container, sig)


def wait_for_exit(containers: Containers, container: Container, timeout: float | None = None) -> Container:
    """Poll until the container is not running (or the timeout passes); returns the last state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        container = refresh(containers, container)
        if not is_running(container) or not os.path.isdir(container.dir):  # an --rm one's monitor removed it
            return container
        if deadline is not None and time.monotonic() >= deadline:
            return container
        time.sleep(_POLL)


def stop(containers: Containers, container: Container, timeout: float, stop_signal: int = signal.SIGTERM) -> None:
    """docker stop: the stop signal, then SIGKILL after `timeout` seconds; returns once exited."""
    container = refresh(containers, container)
    if not is_running(container):
        return
    _signal(container, stop_signal)
    container = wait_for_exit(containers, container, timeout)
    if is_running(container):
        _signal(container, signal.SIGKILL)
        wait_for_exit(containers, container, 30)


def _signal(container: Container, sig: int) -> None:
    pid = container.state.get("Pid")
    if not isinstance(pid, int) or pid <= 0:  # kill(0) or kill(-1) would hit our own group, or everyone
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def remove(containers: Containers, container: Container, force: bool) -> None:
    container = refresh(containers, container)
    if is_running(container) or (is_dead(container) and has_processes(container)):
        if not force:
            raise Conflict(
                f"You cannot remove a running container {container.id}. "
                "Stop the container before attempting removal or force remove"
            )
    if is_running(container):  # a dead one's processes are killed through its cgroups below
        _signal(container, signal.SIGKILL)
        container = wait_for_exit(containers, container, 30)
        # an --rm container's monitor removes it itself; give it the moment it needs
        deadline = time.monotonic() + 5
        while container.config.auto_remove and os.path.isdir(container.dir) and time.monotonic() < deadline:
            time.sleep(_POLL)
    if is_dead(container):
        _kill_dead(container)
    if os.path.isdir(container.dir):
        _remove_cgroups(container)
        containers.remove(container)
    elif container.state.get("NetworkSettings"):
        # an --rm container's monitor removed it and is releasing its address: done before we return
        from minirun.containers.network import release

        release(containers.store.root, container.id, container.state["NetworkSettings"])


def start(containers: Containers, container: Container) -> Container:
    """docker start: run an exited container's command again on the same upper dir."""
    from minirun.containers.detach import spawn_monitor

    container = refresh(containers, container)
    if is_running(container):
        return container
    refuse_dead(container)
    spawn_monitor(containers.store.root, container.id)
    return containers.load(container.id)


def rename(containers: Containers, container: Container, new_name: str) -> None:
    import json

    from minirun.containers.container import validate_name
    from minirun.store.fsutil import atomic_write

    validate_name(new_name)
    refuse_dead(container)
    with containers.store.locked():
        for other in containers.all():
            if other.name == new_name and other.id != container.id:
                raise Conflict(
                    f'Conflict. The container name "/{new_name}" is already in use by container '
                    f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.'
                )
        container.config.name = new_name
        atomic_write(
            os.path.join(container.dir, "config.json"), json.dumps(container.config.to_json()).encode(), durable=False
        )


def prune(containers: Containers) -> tuple[list[str], int]:
    """Remove every container that is not running; returns their ids and the bytes freed."""
    from minirun.containers.diskusage import tree_size

    removed, freed = [], 0
    for container in containers.all():
        container = refresh(containers, container)
        if is_running(container) or (is_dead(container) and has_processes(container)):
            continue
        freed += tree_size(container.upper)
        _remove_cgroups(container)
        containers.remove(container)
        removed.append(container.id)
    return removed, freed
