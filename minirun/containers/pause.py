"""docker's pause and unpause: every process of a running container frozen where it is, and
thawed (runtime/freezer.py). The state records `Paused`; docker's status string for a paused
container is "paused" (ps, inspect, --filter status=), and it still counts as running.

A signal sent to a paused container (kill, stop, rm -f) waits in the frozen tasks; docker
unpauses the container after sending it, so it is delivered: so does `thaw_after_signal`.
Lean: ps imports `status` (no freezer, no cgroups until a pause is asked for)."""

from __future__ import annotations

from minirun.containers.container import Container, Containers, record_event
from minirun.errors import Conflict


def is_paused(container: Container) -> bool:
    return container.state.get("Status") == "running" and bool(container.state.get("Paused"))


def status(container: Container) -> str:
    """docker's State.Status: `paused` for a paused container, else the recorded status."""
    return "paused" if is_paused(container) else str(container.state.get("Status", "created"))


def pause(containers: Containers, container: Container) -> None:
    from minirun.containers.liveness import is_running, refresh
    from minirun.runtime import freezer

    container = refresh(containers, container)
    if not is_running(container):
        raise Conflict(f"Container {container.id} is not running")
    if is_paused(container):
        raise Conflict(f"Container {container.id} is already paused")
    freezer.freeze(container.id)
    containers.update_state(container, Paused=True)
    record_event(containers.store.root, container, "pause")


def unpause(containers: Containers, container: Container) -> None:
    from minirun.containers.liveness import is_running, refresh
    from minirun.runtime import freezer

    container = refresh(containers, container)
    # A pause or commit killed between the freeze and its record leaves a frozen container that
    # says it runs: the kernel's word counts too, so that unpause can thaw it.
    if not is_paused(container) and not (is_running(container) and freezer.is_frozen(container.id)):
        raise Conflict(f"Container {container.id} is not paused")
    freezer.thaw(container.id)
    containers.update_state(container, Paused=False)
    record_event(containers.store.root, container, "unpause")


def thaw_after_signal(containers: Containers, container: Container) -> None:
    """After kill, stop or rm -f signalled a paused container: thaw it, so the signal lands."""
    if not is_paused(container):
        return
    from minirun.errors import MinirunError
    from minirun.runtime import freezer

    try:
        freezer.thaw(container.id)
    except MinirunError:
        return  # its cgroup went with it: nothing left frozen
    containers.update_state(container, Paused=False)
    record_event(containers.store.root, container, "unpause")
