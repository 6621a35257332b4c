"""What starts containers other than `run` and `start`: the `restart` verb, and, since there is
no daemon to do it when it starts, `system boot` for an init system (contrib/minirun-boot.service)
with its counterpart `system shutdown`.

`system boot` does what dockerd does when it starts: the containers whose policy is `always`
(even ones the user stopped), or `unless-stopped` and not stopped by the user, are started;
on-failure ones are not (docker's documentation). A record that says running but whose
processes are gone (the machine rebooted: liveness.py) first gets its exit recorded.
`system shutdown` stops every running container without counting it as stopped by the user,
so the next boot starts the `unless-stopped` ones again (docker's daemon shutdown)."""

from __future__ import annotations

import signal
import sys
import threading

from minirun.containers import lifecycle, restartpolicy
from minirun.containers.container import Container, Containers, record_event
from minirun.containers.liveness import is_dead, is_restarting, is_running, refresh
from minirun.containers.runconfig import stop_signal_of
from minirun.errors import MinirunError


def restart(
    containers: Containers, container: Container, timeout: float | None, stop_signal: int = signal.SIGTERM
) -> None:
    """docker restart: stop (no policy restart meanwhile, an --rm container kept), then start."""
    container = refresh(containers, container)
    lifecycle.refuse_dead(container)
    if is_running(container) or is_restarting(container):
        lifecycle.stop(containers, container, timeout, stop_signal, request=restartpolicy.RESTART)
    container = containers.load(container.id)
    lifecycle.start(containers, container)
    record_event(containers.store.root, container, "restart")


def boot(containers: Containers) -> int:
    """Start what a daemon's start would; prints each name started, reports each failure on
    stderr and goes on. Returns 1 if any failed."""
    failed = 0
    for container in sorted(containers.all(), key=lambda c: c.config.created):
        container = refresh(containers, container)
        if is_dead(container) or is_running(container) or is_restarting(container):
            continue
        policy = restartpolicy.policy_of(container.config.to_json())
        if not restartpolicy.starts_at_boot(policy, restartpolicy.read_request(container.dir), container.state):
            continue
        try:
            lifecycle.start(containers, container)
        except MinirunError as exc:
            print(f"minirun: error: {container.name}: {exc.message}", file=sys.stderr)
            failed = 1
            continue
        print(container.name)
    return failed


def shutdown(containers: Containers, timeout: float) -> list[str]:
    """Stop every running container at once (each its stop signal, SIGKILL after `timeout`);
    their names."""
    running = [c for c in (refresh(containers, c) for c in containers.all()) if is_running(c) or is_restarting(c)]

    def one(container: Container) -> None:
        try:
            lifecycle.stop(
                containers, container, timeout, stop_signal_of(containers, container), request=restartpolicy.SHUTDOWN
            )
        except MinirunError as exc:
            print(f"minirun: error: {container.name}: {exc.message}", file=sys.stderr)

    threads = [threading.Thread(target=one, args=(c,)) for c in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [c.name for c in running]


def set_policy(containers: Containers, container: Container, policy: dict) -> None:
    """`update --restart`: into config.json, under the store lock and re-read there (a concurrent
    rename or update is kept); the monitor reads it at the next exit."""
    import os

    from minirun import leanjson
    from minirun.store.fsutil import atomic_write

    with containers.store.locked():
        fresh = containers.load(container.id)
        if fresh.config.auto_remove and policy.get("Name") != "no":
            raise MinirunError("Restart policy cannot be updated because AutoRemove is enabled for the container")
        fresh.config.restart_policy = policy
        atomic_write(
            os.path.join(fresh.dir, "config.json"), leanjson.dumps(fresh.config.to_json()).encode(), durable=False
        )
