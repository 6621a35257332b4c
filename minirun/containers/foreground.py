"""A recorded container run in the foreground by the process that asked for it (`run` without
-d, and a build's RUN step): PID 1 started, waited for and its exit recorded, with the CLI as
its monitor; whatever fails on the way frees what the start took (ports, cgroups)."""

from __future__ import annotations

import os

from minirun.containers.container import record_event
from minirun.errors import MinirunError
from minirun.runtime import supervise

TYPE_CHECKING = False  # typing costs ~6 ms on the path the start benchmark times
if TYPE_CHECKING:
    from typing import Any


def host_resolv_conf() -> bytes:
    """The host's /etc/resolv.conf, which a new container gets a copy of (docker's default)."""
    try:
        with open("/etc/resolv.conf", "rb") as f:
            return f.read()
    except OSError:
        return b""


def unpublish(store, container, best_effort: bool = False) -> None:
    """PID 1 is gone (or never started): its published ports are freed, as docker frees them on
    stop. `best_effort` while another error is on its way out: that one is the one to report."""
    settings = container.state.get("NetworkSettings")
    if settings and settings.get("Ports"):
        from minirun.containers.network import stopped

        try:
            stopped(store.root, container.id, settings)
        except Exception:
            if not best_effort:
                raise


def run_foreground(store, containers, container, image, init_link: str, *, stdio=None, wait=None) -> int:
    """Run a recorded container in the foreground and return its exit code. The builder passes
    `stdio` (fds for PID 1's 0, 1, 2; None: inherit) and `wait` (pid -> exit code; default:
    forward signals and wait) so a RUN step can capture its output and be interrupted."""
    from minirun.containers.plan import build_plan, create_cgroups
    from minirun.humanize import rfc3339_now
    from minirun.runtime import cgroups, launch

    config = container.config
    tty: Any = None
    plan = started = relay = None
    # build_plan publishes the ports: from there on, whatever fails frees them (and the cgroups)
    try:
        plan = build_plan(store, container, image, init_link)
        plan.stdio = stdio
        if stdio is None and wait is None and not config.tty:  # (a build's RUN waits its own way)
            from minirun.runtime.stdiorelay import Relay

            # a pipe for each of our 0-2 that is a host file or terminal (stdiorelay.py says why)
            relay = Relay(config.interactive)
            relay = relay if relay.needed else None
            plan.stdio = None if relay is None else (relay.child[0], relay.child[1], relay.child[2])
        plan.die_with_parent = True  # no daemon: PID 1 goes with the client that runs it (guard.py)
        if config.tty:
            from minirun.runtime import tty

            plan.rows, plan.cols = tty.window_size(1)  # docker measures its stdout
        plan.cgroups = create_cgroups(container)
        started = launch.start(plan)
        if relay is not None:
            relay.close_child_side()
        # the master comes before the exec, so before the error pipe's EOF
        master = tty.receive_master(started.console) if tty else None
        failure = launch.read_start_error(started)
    except BaseException:
        if relay is not None:
            relay.close()
        if started is not None:
            supervise.kill(started.pid)
            os.waitpid(started.pid, 0)
        if plan is not None:
            cgroups.remove(plan.cgroups)
        unpublish(store, container, best_effort=True)
        raise
    if failure is None and tty and master is None:
        supervise.kill(started.pid)  # it exec'd without a terminal anyone reads: stop it
        failure = MinirunError("the container's pty never arrived")
    if failure is not None:
        if master is not None:
            os.close(master)
        if relay is not None:
            relay.close()
        os.waitpid(started.pid, 0)
        cgroups.remove(plan.cgroups)
        containers.update_state(
            container, Status="exited", ExitCode=failure.exit_code, Error=failure.message, FinishedAt=rfc3339_now()
        )
        unpublish(store, container)
        raise failure
    from minirun.containers.liveness import mark_running

    try:
        mark_running(containers, container, started.pid)  # the CLI is this container's monitor
    except MinirunError:  # rm or prune took the record meanwhile: PID 1 goes
        if master is not None:
            os.close(master)
        if relay is not None:
            relay.close()
        supervise.kill(started.pid)
        os.waitpid(started.pid, 0)
        cgroups.remove(plan.cgroups)
        unpublish(store, container, best_effort=True)
        raise
    try:
        code = (
            tty.attach(started.pid, master, config.interactive)
            if tty
            else (wait or (relay.wait if relay is not None else supervise.wait_for_exit))(started.pid)
        )
        oom = cgroups.oom_killed(plan.cgroups)
    finally:
        cgroups.remove(plan.cgroups)  # PID 1 is reaped: its PID namespace, and so the cgroups, are empty
    record_exit(store, containers, container, code, oom)
    return code


def record_exit(store, containers, container, code: int, oom: bool) -> None:
    """A foreground container's PID 1 has been reaped: its record says so, the events are told
    (oom, die), its volumes unmounted and its ports unpublished."""
    from minirun.humanize import rfc3339_now

    containers.update_state(
        container, Status="exited", Running=False, Pid=0, ExitCode=code, OOMKilled=oom, FinishedAt=rfc3339_now()
    )
    if oom:
        record_event(store.root, container, "oom")
    record_event(store.root, container, "die", exitCode=str(code))
    if container.config.mounts:
        from minirun.containers.mounts import record_unmounts

        record_unmounts(store.root, container.id, container.config.mounts)
    unpublish(store, container)
