"""A recorded container run in the foreground by the process that asked for it (`run` without
-d, and a build's RUN step): PID 1 started, waited for and its exit recorded, with the CLI as
its monitor; whatever fails on the way frees what the start took (ports, cgroups).

A `run`'s output is logged as a detached one's is, with the container's log config, through the
monitor's writer (logfile.LogFile and Lines): `logs` and `logs -f` read it during and after the
run, as docker's shim logs an attached container. A build's RUN steps are not logged (nor are
docker's builder's)."""

from __future__ import annotations

import os

from minirun.containers.container import record_event
from minirun.errors import MinirunError
from minirun.runtime import supervise

TYPE_CHECKING = False  # typing costs ~6 ms on the path the start benchmark times
if TYPE_CHECKING:
    from typing import Any

    from minirun.containers.logfile import Lines, LogFile
    from minirun.runtime.stdiorelay import Relay


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


def _abandon(store, container, plan, started, master, relay, log, free_ports: bool = True) -> None:
    """PID 1 will not run to its end (a failed start, or rm took the record): it goes, with all
    that was made for it (its pty, output relay, log, cgroups and, unless `free_ports` is False,
    its ports, freed best effort since another error is on its way out). Any of them may be None:
    the start failed before it."""
    from minirun.runtime import cgroups

    if master is not None:
        os.close(master)
    if relay is not None:
        relay.close()
    if log is not None:
        log.close()
    if started is not None:
        supervise.kill(started.pid)  # (one that failed to start is gone already: no harm)
        os.waitpid(started.pid, 0)
    if plan is not None:
        cgroups.remove(plan.cgroups)
    if free_ports:
        unpublish(store, container, best_effort=True)


def run_foreground(store, containers, container, image, init_link: str, guard: int, *, stdio=None, wait=None) -> int:
    """Run a recorded container in the foreground and return its exit code; `guard` is the pid of
    this CLI's guard (guard.py), recorded beside it. The builder passes `stdio` (fds for PID 1's 0,
    1, 2; None: inherit) and `wait` (pid -> exit code; default: forward signals and wait) so a RUN
    step can capture its output and be interrupted."""
    # liveness too, though it is wanted only once PID 1 runs: imported after the fork, each page it
    # writes is a copy-on-write fault first (the same for the relay's select, stdiorelay.py)
    from minirun.containers.liveness import mark_running
    from minirun.containers.plan import build_plan, create_cgroups
    from minirun.runtime import cgroups, launch
    from minirun.timestamps import rfc3339_now

    config = container.config
    tty: Any = None
    plan = started = relay = log = None
    # build_plan publishes the ports: from there on, whatever fails frees them (and the cgroups)
    try:
        plan = build_plan(store, container, image, init_link)
        plan.stdio = stdio
        if stdio is None and wait is None:  # a `run` (a build's RUN waits its own way)
            # before PID 1 starts: `logs -f` finds the log once the container runs
            log = open_log(container)
        if stdio is None and wait is None and not config.tty:
            relay = output_relay(container, log)
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
        _abandon(store, container, plan, started, None, relay, log)
        raise
    if failure is None and tty and master is None:
        supervise.kill(started.pid)  # it exec'd without a terminal anyone reads: stop it
        failure = MinirunError("the container's pty never arrived")
    if failure is not None:
        _abandon(store, container, plan, started, master, relay, log, free_ports=False)
        containers.update_state(
            container, Status="exited", ExitCode=failure.exit_code, Error=failure.message, FinishedAt=rfc3339_now()
        )
        unpublish(store, container)
        raise failure
    try:
        mark_running(containers, container, started.pid, guard=guard)  # the CLI is this container's monitor
    except MinirunError:  # rm or prune took the record meanwhile: PID 1 goes
        _abandon(store, container, plan, started, master, relay, log)
        raise
    try:
        code = (
            tty.attach(started.pid, master, config.interactive, pty_lines(log, master))
            if tty
            else (wait or (relay.wait if relay is not None else supervise.wait_for_exit))(started.pid)
        )
        oom = cgroups.oom_killed(plan.cgroups)
    finally:
        cgroups.remove(plan.cgroups)  # PID 1 is reaped: its PID namespace, and so the cgroups, are empty
        if log is not None:
            log.close()
    record_exit(store, containers, container, code, oom, log.dropped if log is not None else 0)
    return code


def open_log(container) -> LogFile | None:
    """The container's log (logfile.LogFile) as its log config says, created now; None for the
    `none` driver."""
    log_config = container.config.log_config
    if log_config.get("Type") == "none":
        return None
    from minirun.containers.logconfig import limits
    from minirun.containers.logfile import LOG_NAME, LogFile

    max_size, max_file, compress = limits(log_config)
    return LogFile(os.path.join(container.dir, LOG_NAME), max_size, max_file, compress)


def output_relay(container, log: LogFile | None) -> Relay | None:
    """The pipes between PID 1's 0-2 and ours (stdiorelay.py): one for each of ours that is a
    host file or terminal, and for 1 and 2 whatever they are when `log` keeps the output, which
    then goes there too. None when PID 1 can have ours as they are."""
    from minirun.runtime.stdiorelay import Relay

    relay = Relay(container.config.interactive, logged=log is not None)
    if not relay.needed:
        return None
    if log is not None:
        from minirun.containers.logfile import Lines

        relay.lines = Lines(log, relay.streams())
    return relay


def pty_lines(log: LogFile | None, master: int | None) -> Lines | None:
    """What tty.attach logs the pty's output through: one stream, stdout, as docker's."""
    if log is None or master is None:
        return None
    from minirun.containers.logfile import Lines

    return Lines(log, {master: "stdout"})


def _connectable(mode: str) -> bool:
    """Whether a running container of this network mode can be connected to a network (netconnect
    refuses none, host and container:NAME): only then can its record's ports differ from the start's."""
    return mode not in ("none", "host") and not mode.startswith("container:")


def record_exit(store, containers, container, code: int, oom: bool, dropped: int = 0) -> None:
    """A foreground container's PID 1 has been reaped: its record says so (and how many bytes of
    its output the log's disk refused), the events are told (oom, die), its volumes unmounted and
    its ports unpublished."""
    from minirun.containers.logfile import DROPPED_KEY
    from minirun.timestamps import rfc3339_now

    if _connectable(container.config.network):  # `network connect`/`disconnect` may have moved its ports
        from minirun.containers.network import recorded_settings

        settings = recorded_settings(container.dir)
        if settings is not None:  # not the start's
            container.state["NetworkSettings"] = settings
    containers.update_state(
        container,
        Status="exited",
        Running=False,
        Pid=0,
        ExitCode=code,
        OOMKilled=oom,
        FinishedAt=rfc3339_now(),
        **{DROPPED_KEY: dropped},
    )
    if oom:
        record_event(store.root, container, "oom")
    record_event(store.root, container, "die", exitCode=str(code))
    if container.config.mounts:
        from minirun.containers.mounts import record_unmounts

        record_unmounts(store.root, container.id, container.config.mounts)
    unpublish(store, container)
