"""The truth about whether a container still runs.

state.json is written by whoever is PID 1's parent (the foreground CLI or the monitor), or, when
a foreground CLI was killed, by its guard (guard.py). If all of them died without writing the exit
(kill -9, a reboot), `refresh` finds out from /proc, by pid and start time, and records an honest
exit, so no command waits on a dead container.
"""

from __future__ import annotations

from minirun.containers.container import Container, Containers
from minirun.errors import NotFound
from minirun.procs import is_alive
from minirun.timestamps import rfc3339_now

UNKNOWN_EXIT = 255  # docker's code when the exit status was lost with the process that knew it
REMOVAL_KEY = "RemovalInProgress"  # docker's: rm or prune took it, no start may run it now


def is_running(container: Container) -> bool:
    return container.state.get("Status") == "running"


def is_restarting(container: Container) -> bool:
    """Between two runs of a restart policy's (restartpolicy.py): docker counts it as running."""
    return container.state.get("Status") == "restarting"


def is_dead(container: Container) -> bool:
    """A container whose record is damaged (Containers.load_or_dead): its processes may still run."""
    return container.state.get("Status") == "dead"


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
    if state.get("Status") not in ("running", "restarting"):  # restarting: its monitor waits a back-off
        return container
    if state.get("Status") == "running" and is_alive(state.get("Pid", 0), state.get("PidStartTime")):
        return container
    if exit_writer_alive(state):
        return container  # PID 1 just ended; its parent (or a killed client's guard) is writing the exit now
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
    remove_cgroups(container)  # the monitor would have (cgroupfs, not the store's disk)
    return container


def exit_writer_alive(state: dict) -> bool:
    """Whoever will record PID 1's exit still runs: the monitor (the foreground CLI for a `run`),
    or the guard of a killed foreground CLI, which records 137 once it has cleaned up."""
    return is_alive(state.get("MonitorPid", 0), state.get("MonitorStartTime")) or is_alive(
        state.get("GuardPid", 0), state.get("GuardStartTime")
    )


def claimed_for_removal(container_id: str) -> Exception:
    """The refusal of a start of a container rm or prune has claimed (REMOVAL_KEY)."""
    from minirun.errors import Conflict

    return Conflict(f"container {container_id} is marked for removal and cannot be started")


def remove_cgroups(container: Container) -> None:
    """Whoever records an exit removes the container's cgroups; this catches what a killed
    monitor or CLI left behind."""
    from minirun.runtime import cgroups

    cgroups.remove(cgroups.existing_paths(container.id))


def mark_running(containers: Containers, container: Container, pid: int, monitor: int = 0, guard: int = 0) -> None:
    """PID 1 runs, and its parent is `monitor` (the monitor), else this process (the foreground
    CLI, watched by its `guard`): all are recorded by pid and start time, which is how refresh
    tells them alive (pids are reused); what an earlier run left (its exit) is cleared, and the
    start is an event. Conflict if rm or prune has claimed the container meanwhile: the caller
    stops PID 1."""
    import os

    from minirun.containers.container import record_event
    from minirun.store import lock_path
    from minirun.store.fsutil import flocked, read_record

    # under the store lock, as rm and prune claim a container for removal (lifecycle.py): a
    # record they took, or are taking, never says running, and they never take one that does
    with flocked(lock_path(containers.store.root)):
        try:
            claimed = read_record(os.path.join(container.dir, "state.json")).get(REMOVAL_KEY)
            removed = not os.path.exists(os.path.join(container.dir, "config.json"))
        except Exception:  # noqa: BLE001 - gone or damaged meanwhile: not ours to start either
            claimed, removed = True, True
        if claimed or removed:
            raise claimed_for_removal(container.id)
        _mark_running(containers, container, pid, monitor, guard)
    record_event(containers.store.root, container, "start")


def _mark_running(containers: Containers, container: Container, pid: int, monitor: int, guard: int) -> None:
    import os

    from minirun.procs import start_time

    guard_started = start_time(guard) if guard else None
    containers.update_state(
        container,
        Status="running",
        Running=True,
        Pid=pid,
        PidStartTime=start_time(pid),
        MonitorPid=monitor or os.getpid(),
        MonitorStartTime=start_time(monitor or os.getpid()),
        GuardPid=guard if guard_started is not None else 0,  # gone already: no pid that may be reused
        GuardStartTime=guard_started,
        StartedAt=rfc3339_now(),
        FinishedAt="0001-01-01T00:00:00Z",
        ExitCode=0,
        Error="",
        OOMKilled=False,
        Paused=False,
    )
