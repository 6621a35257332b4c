"""What happens to containers after they start: stop, kill, wait, rm, start, rename, prune with
docker's semantics. Whether one still runs is liveness.py's to say."""

from __future__ import annotations

import os
import time

from minirun.containers import restartpolicy
from minirun.containers.container import Container, Containers, record_event
from minirun.containers.liveness import is_dead, is_restarting, is_running, refresh, remove_cgroups
from minirun.containers.removal import discard
from minirun.errors import Conflict, MinirunError, UsageError
from minirun.procs import is_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

_POLL = 0.02


def _kill_dead(container: Container) -> None:
    """A dead container's processes, found through its cgroups, and their parents outside them
    (its monitor or CLI, which would otherwise write into the record as it goes): killed, the
    parents first, so nothing writes while the container is removed."""
    from minirun.procs import parent_of
    from minirun.runtime import cgroups

    members = {pid for path in cgroups.existing_paths(container.id) for pid in cgroups.members(path)}
    parents = {parent_of(pid) for pid in members} - members - {0, 1, os.getpid()}
    # not the monitors' server: it monitors the store's other containers too (its thread for this
    # one records the exit into a record on its way out, or finds it gone)
    parents = {pid for pid in parents if not _is_monitor_server(pid)}
    for pid in (*parents, *members):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(is_alive(pid, None) for pid in parents) and time.monotonic() < deadline:
        time.sleep(_POLL)


def _is_monitor_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"minirun.containers.monitorserver:serve" in f.read()
    except OSError:
        return False


def refuse_dead(container: Container) -> None:
    if is_dead(container):
        raise Conflict(f"container {container.id} is dead: {container.state.get('Error', '')}; remove it with rm -f")


def has_processes(container: Container) -> bool:
    """Whether anything still runs in the container's cgroups: the one way to find the processes
    of a container whose record no longer says."""
    from minirun.runtime import cgroups

    return any(cgroups.members(path) for path in cgroups.existing_paths(container.id))


def signal_number(name: str | int) -> int:
    """`KILL`, `SIGKILL`, `9` -> 9 (docker's --signal spelling)."""
    text = str(name).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        from signal import Signals  # the names' enum: here, not on the start path

        try:
            return int(Signals[text if text.startswith("SIG") else "SIG" + text])
        except (KeyError, ValueError):
            pass
    raise UsageError(f"invalid signal: {name}")


def kill(
    containers: Containers, container: Container, sig: int = signal.SIGKILL, stop_signal: int = signal.SIGTERM
) -> None:
    """docker kill: with SIGKILL or the stop signal no restart policy brings it back (and the
    user stopped it: `unless-stopped` stays down); a restarting one's restart is called off."""
    container = refresh(containers, container)
    if not is_running(container) and not is_restarting(container):
        raise Conflict(f"Cannot kill container: {container.id[:12]}: container {container.id} is not running")
    ends_it = sig in (signal.SIGKILL, stop_signal)
    restartpolicy.write_request(container.dir, restartpolicy.STOP if ends_it else restartpolicy.SIGNAL)
    if is_running(container):
        _signal(containers, container, sig)
    record_event(containers.store.root, container, "kill", signal=str(sig))


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


def stop(
    containers: Containers,
    container: Container,
    timeout: float | None,
    stop_signal: int = signal.SIGTERM,
    request: str = restartpolicy.STOP,
) -> None:
    """docker stop: the stop signal, then SIGKILL after `timeout` seconds (None: never); returns once exited.
    The request (restartpolicy.py) goes first, so no restart policy starts it again; a PID 1
    its monitor started meanwhile (a restart that was under way) gets the same treatment."""
    container = refresh(containers, container)
    if not is_running(container) and not is_restarting(container):
        return
    _end(containers, container, timeout, stop_signal, request)
    record_event(containers.store.root, container, "stop")


def _end(containers: Containers, container: Container, timeout: float | None, stop_signal: int, request: str) -> None:
    restartpolicy.write_request(container.dir, request)
    deadline = float("inf") if timeout is None else time.monotonic() + timeout
    signalled: set[tuple[object, int]] = set()
    while True:
        container = refresh(containers, container)
        if not os.path.isdir(container.dir):
            break
        if is_running(container):
            pid = (container.state.get("Pid"), container.state.get("PidStartTime"))
            # the stop signal first, even with no time to wait (docker's stop -t 0), then SIGKILL
            sig = stop_signal if (pid, stop_signal) not in signalled or time.monotonic() < deadline else signal.SIGKILL
            if (pid, sig) not in signalled:
                signalled.add((pid, sig))
                _signal(containers, container, sig)
                record_event(containers.store.root, container, "kill", signal=str(sig))
        elif not is_restarting(container):
            break
        if time.monotonic() > deadline + 30:
            break
        time.sleep(_POLL)


def _signal(containers: Containers, container: Container, sig: int) -> None:
    pid = container.state.get("Pid")
    if not isinstance(pid, int) or pid <= 0:  # kill(0) or kill(-1) would hit our own group, or everyone
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    if container.state.get("Paused"):  # the signal waits in frozen tasks: docker unpauses after it
        from minirun.containers.pause import thaw_after_signal

        thaw_after_signal(containers, container)


def remove(containers: Containers, container: Container, force: bool, volumes: bool = False) -> None:
    """docker rm; `volumes` (-v): the container's anonymous volumes go with it."""
    container = refresh(containers, container)
    if is_running(container) or is_restarting(container) or (is_dead(container) and has_processes(container)):
        if not force and container.state.get("Paused"):
            raise Conflict(
                f"You cannot remove a paused container {container.id}. "
                "Unpause and then stop the container before attempting removal or force remove"
            )
        if not force:
            raise Conflict(
                f"You cannot remove a {'restarting' if is_restarting(container) else 'running'} container "
                f"{container.id}. Stop the container before attempting removal or force remove"
            )
    while True:
        if is_running(container) or is_restarting(container):  # a dead one's are killed through its cgroups below
            _end(containers, container, 0, signal.SIGKILL, restartpolicy.STOP)
            container = refresh(containers, container)
            # an --rm container's monitor removes it itself; give it the moment it needs
            deadline = time.monotonic() + 5
            while container.config.auto_remove and os.path.isdir(container.dir) and time.monotonic() < deadline:
                time.sleep(_POLL)
        claimed = _claim(containers, container)
        if claimed is not None:
            container = claimed
            break
        if not force:  # started since it was looked at
            raise Conflict(
                f"You cannot remove a running container {container.id}. "
                "Stop the container before attempting removal or force remove"
            )
        container = refresh(containers, container)
    if is_dead(container):
        _kill_dead(container)
    if container.config.runtime:  # its runtime's state, left behind if the run was killed
        from minirun.containers.runtimestate import forget

        forget(container)
    if os.path.isdir(container.dir):
        remove_cgroups(container)
    # an --rm container's monitor may have removed the record and be releasing its address: done
    # before we return all the same (release is idempotent)
    discard(containers, container, volumes)


def start(containers: Containers, container: Container, **monitor_options) -> Container:
    """docker start: run an exited container's command again on the same upper dir.
    `monitor_options`: spawn_monitor's attach_fd and console_size (attachclient.start_attached)."""
    from minirun.containers.detach import spawn_monitor

    container = refresh(containers, container)
    if is_running(container) or is_restarting(container):
        return container
    refuse_dead(container)
    from minirun.containers.liveness import REMOVAL_KEY, claimed_for_removal

    if container.state.get(REMOVAL_KEY):
        raise claimed_for_removal(container.id)
    if container.config.runtime:  # (ociruntime.py: the monitor starts PID 1 in-process only)
        raise MinirunError(
            f"container {container.name} runs with --runtime {container.config.runtime}: "
            "start it again with `run --runtime`, in the foreground"
        )
    restartpolicy.user_started(containers, container)
    spawn_monitor(containers.store.root, container.id, **monitor_options)
    return containers.load(container.id)


def rename(containers: Containers, container: Container, new_name: str) -> None:
    from minirun import leanjson
    from minirun.containers.container import validate_name
    from minirun.store.fsutil import atomic_write

    validate_name(new_name)
    refuse_dead(container)
    with containers.store.locked():
        containers.claim_name(new_name, container.id)  # the link first: the record is the truth
        old_name = container.config.name
        container.config.name = new_name
        atomic_write(
            os.path.join(container.dir, "config.json"),
            leanjson.dumps(container.config.to_json()).encode(),
            durable=False,
        )
        if old_name != new_name:
            containers.release_name(old_name, container.id)
    record_event(containers.store.root, container, "rename", oldName="/" + old_name)


def prune(containers: Containers, allowed: Callable[[Container], bool] | None = None) -> tuple[list[str], int]:
    """Remove every container that is not running (and that `allowed`, a prune's filters, lets
    go); returns their ids and the bytes freed."""
    from minirun.store.fsutil import tree_size

    removed, freed = [], 0
    for container in containers.all():
        container = refresh(containers, container)
        if is_running(container) or is_restarting(container) or (is_dead(container) and has_processes(container)):
            continue
        if allowed is not None and not allowed(container):
            continue
        size = tree_size(container.upper)
        claimed = _claim(containers, container)
        if claimed is None:
            continue  # started since it was looked at
        remove_cgroups(claimed)
        discard(containers, claimed)
        freed += size
        removed.append(claimed.id)
    return removed, freed


def _claim(containers: Containers, container: Container) -> Container | None:
    """Under the store lock, the record read afresh: None if a start has run it since (or it is
    restarting), else it is marked for removal (docker's RemovalInProgress), and no start can mark
    it running from here on (liveness.mark_running looks under the same lock). What the removal
    kills through the cgroups is then at most a PID 1 whose start is about to fail."""
    from minirun.containers.liveness import REMOVAL_KEY

    with containers.store.locked():
        if not os.path.exists(os.path.join(container.dir, "config.json")):
            return container  # removed meanwhile (an --rm one's monitor): no start can run it
        container = refresh(containers, container)
        if is_running(container) or is_restarting(container):
            return None
        if not is_dead(container):
            containers.update_state(container, **{REMOVAL_KEY: True})
    return container
