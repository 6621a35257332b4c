"""The long-lived half of a container's monitor: copy PID 1's output to the log, wait for its
exit, record it. monitor.py runs this once the container runs, in the same thread of the
monitors' server (still PID 1's parent, monitorserver.py); the record is written by a forked
child (run). No json either: the log lines are encoded by hand and the exit is written into a state template
made by monitor.py. Health checks share its poll loop (health.py); after the exit, a restart
policy may have the monitor start PID 1 again (restartpolicy.py).
"""

from __future__ import annotations

import os
import select
import time

from minirun.containers.logfile import DROPPED_KEY, LOG_NAME, Lines, LogFile
from minirun.timestamps import rfc3339_now

CODE_MARK, TIME_MARK = '"@@EXIT_CODE@@"', "@@FINISHED_AT@@"


def copy_output(
    log: LogFile | None,
    streams: dict[int, str],
    hub=None,
    pid: int = 0,
    cgroup_paths: list[str] | None = None,
    health=None,
) -> None:
    """Until PID 1 (`pid`) has exited and both pipes closed (everything in its namespace is gone);
    `log` None: the `none` driver, output read and dropped (the container must never block on a
    full pipe).
    `hub`: attachserver.Hub, which serves attach clients in the same loop and gets the output too.
    When PID 1 (`pid`) exits, what is left in its cgroups is killed: with --pid host no PID
    namespace takes it along, and an orphan holding the pipes would keep them open for good.
    `health`: the health checks' scheduler (health.py), which shares this loop."""
    pending = dict.fromkeys(streams, b"")  # the pipes still open
    lines = None if log is None else Lines(log, streams)
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    if hub is not None:
        hub.register(poller)
    if health is not None:
        health.register(poller)
    # PID 1's exit, not its pipes' EOF, ends the loop: a PID 1 that closes its stdout and stderr
    # (`exec >&- 2>&-`) still has its attach clients, its stdin and its health checks served
    exit_fd = os.pidfd_open(pid) if pid else -1
    if exit_fd >= 0:
        poller.register(exit_fd, select.POLLIN)
    paused = False
    while pending or exit_fd >= 0:
        for fd, events in poller.poll(health.timeout_ms() if health is not None else None):
            if fd == exit_fd:
                poller.unregister(exit_fd)
                os.close(exit_fd)
                exit_fd = -1
                if cgroup_paths:
                    from minirun.runtime import cgroups  # os only, as this module

                    cgroups.kill_all(cgroup_paths)
                continue
            if fd not in pending:  # an attach client's, or a health probe's
                if hub is not None and hub.owns(fd):
                    hub.handle(fd, events)
                elif health is not None:
                    health.ready(fd)
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # a pty master the hub made non-blocking
                continue
            except OSError:  # EIO: a pty master with no slave left, PID 1 is gone
                chunk = b""
            if hub is not None and chunk:
                hub.send(streams[fd], chunk)
            if not chunk:
                poller.unregister(fd)
                del pending[fd]
                if lines is not None:
                    lines.end(fd)
                os.close(fd)
                continue
            if lines is not None:
                lines.add(fd, chunk)
        if hub is not None:
            hub.update()
            if hub.backlogged() != paused:  # a slow client slows PID 1's output, as in docker
                paused = not paused
                for fd in pending:
                    poller.modify(fd, 0 if paused else select.POLLIN)
        if health is not None:
            health.tick()
    if exit_fd >= 0:
        os.close(exit_fd)
    if health is not None:
        health.close()


def _close_all_but(keep: list[int]) -> None:
    """In a child forked from the monitors' server: every fd above 2 but `keep` closed, so that
    no other container's pipe or client waits on this child's exit for its EOF."""
    from minirun.linux import close_fds  # ctypes: the server has it loaded

    close_fds(keep=keep)


def exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)


def remove_container(container_dir: str, lock_path: str) -> None:
    """--rm: the same order as Containers.remove, under the store lock."""
    from minirun import leanjson
    from minirun.containers.container import names_dir, release_name
    from minirun.store.fsutil import flocked

    with flocked(lock_path):
        try:
            with open(os.path.join(container_dir, "config.json"), "rb") as f:
                name = leanjson.load(f).get("name") or ""
        except (OSError, ValueError, AttributeError):
            name = ""  # a damaged record: its link, if any, is stale and harmless
        try:
            os.unlink(os.path.join(container_dir, "config.json"))
        except FileNotFoundError:
            pass
        if name:  # before the dir goes: whoever sees it gone sees the name free
            store_root = os.path.dirname(os.path.dirname(container_dir))
            release_name(names_dir(store_root), name, os.path.basename(container_dir))
        for top, dirs, files in os.walk(container_dir, topdown=False):
            for name in files:
                os.unlink(os.path.join(top, name))
            for name in dirs:
                path = os.path.join(top, name)
                os.unlink(path) if os.path.islink(path) else os.rmdir(path)
        os.rmdir(container_dir)


# where the copier's argv (monitor.start builds it) names fds: PID 1's two output pipes, and the
# attach argument's first four fields (attachserver.Stdio.copier_arg)
_FD_ITEMS, _ATTACH_ITEM = (3, 4), 13


def fds_in(items: list[str]) -> list[int]:
    """The fds the copier's argv names, which the launcher hands over to the monitor."""
    attach = [int(n) for n in items[_ATTACH_ITEM].split()[:4]]
    return [fd for fd in [*(int(items[i]) for i in _FD_ITEMS), *attach] if fd >= 0]


def with_fds(items: list[str], numbers: dict[int, int]) -> list[str]:
    """The argv with every fd it names renumbered: the launcher's number -> the monitor's."""
    items = list(items)
    for i in _FD_ITEMS:
        items[i] = str(numbers.get(int(items[i]), int(items[i])))
    fields = items[_ATTACH_ITEM].split()
    fields[:4] = [str(numbers.get(int(n), int(n))) for n in fields[:4]]
    items[_ATTACH_ITEM] = " ".join(fields)
    return items


class Exit:
    """What the copying learnt, for the exit's record: PID 1's status, how long it ran, the bytes
    the disk refused."""

    __slots__ = ("status", "ran", "dropped")

    def __init__(self, status: int, ran: float, dropped: int) -> None:
        self.status, self.ran, self.dropped = status, ran, dropped


def copy(items: list[str], hub) -> Exit:
    """Copy PID 1's output (and serve its attach clients and health checks) until it exits; reap it."""
    _, _, pid, out_fd, err_fd, _, _, cgroup_paths, driver, max_size, max_file, compress, attributes = items[:13]
    container_dir, health_spec = items[0], items[14]
    ran_from = time.monotonic()
    paths = cgroup_paths.split("\n") if cgroup_paths else []
    health = None
    if health_spec:
        from minirun.containers.health import Scheduler

        health = Scheduler(health_spec, container_dir, paths, attributes)
    log = (
        None
        if driver == "none"
        else LogFile(os.path.join(container_dir, LOG_NAME), int(max_size), int(max_file), compress == "1")
    )
    try:
        copy_output(log, {int(out_fd): "stdout", int(err_fd): "stderr", **hub.streams()}, hub, int(pid), paths, health)
    finally:
        if log is not None:
            log.close()
    _, status = os.waitpid(int(pid), 0)
    return Exit(status, time.monotonic() - ran_from, log.dropped if log is not None else 0)


def record(items: list[str], hub, ended: Exit) -> dict | None:
    """After PID 1's exit: the state, the cgroups, the events, --rm; the attach clients told last.
    Returns the NetworkSettings the record held at the exit (None: no record), which the exit
    record keeps: `network connect`/`disconnect` may have changed them since the start."""
    container_dir, lock_path, _, _, _, auto_remove, template, cgroup_paths = items[:8]
    event_attributes = items[12]
    paths = cgroup_paths.split("\n") if cgroup_paths else []
    from minirun.runtime import cgroups  # os only, as this module

    code = exit_code(ended.status)
    state = template.replace(CODE_MARK, str(code)).replace(TIME_MARK, rfc3339_now())
    from minirun.containers import restartpolicy

    state = restartpolicy.after_exit(container_dir, state, code, ended.ran)
    if ended.dropped:
        state = state.replace(f'"{DROPPED_KEY}": 0', f'"{DROPPED_KEY}": {ended.dropped}', 1)
    oom = cgroups.oom_killed(paths)
    if oom:
        state = state.replace('"OOMKilled": false', '"OOMKilled": true', 1)
    from minirun import events, leanjson

    settings = None
    try:
        from minirun.atomicfile import atomic_write  # os and errno only, as this module
        from minirun.store.fsutil import flocked  # the monitors' server has it (initlayer)

        # under the store lock, and only while the record is there: `rm -f` of a dead container
        # removes it (config.json first) under that lock while this may still be writing
        with flocked(lock_path):
            if os.path.exists(os.path.join(container_dir, "config.json")):
                from minirun.containers.network import recorded_settings

                settings = recorded_settings(container_dir)
                if settings is not None:
                    state = leanjson.dumps({**leanjson.loads(state), "NetworkSettings": settings})
                atomic_write(os.path.join(container_dir, "state.json"), state.encode(), durable=False)
    finally:
        # PID 1 is reaped: its PID namespace, and so the cgroups, are empty. They go even when the
        # record cannot be written (its dir removed, a full disk): nobody else would remove them.
        cgroups.remove(paths)
    store_root, container_id = os.path.dirname(os.path.dirname(container_dir)), os.path.basename(container_dir)
    attributes = leanjson.loads(event_attributes)
    if oom:
        events.record(store_root, "container", "oom", container_id, attributes)
    events.record(store_root, "container", "die", container_id, {**attributes, "exitCode": str(code)})
    from minirun.containers import mounts  # the volumes' unmount events

    volume_mounts = mounts.exited(container_dir)
    if auto_remove == "1" and not restartpolicy.keeps_record(container_dir):
        remove_container(container_dir, lock_path)
        events.record(store_root, "container", "destroy", container_id, attributes)
        mounts.release_anonymous(store_root, volume_mounts)  # docker's --rm takes the anonymous volumes too
    hub.finish(code)  # last: an attached `run --rm` returns once all is done
    return settings


_RELAUNCH = 3  # the finisher's exit status when the restart policy starts PID 1 again


def run(items: list[str], hook: list[str]) -> bool:
    """The copier's part of a monitor (monitor.main): copy, then record the exit and run the
    network's exit hook. True when the restart policy starts PID 1 again (after its back-off).

    The copying runs in the calling thread of the monitors' server, PID 1's parent. What follows
    PID 1's exit runs in a forked child, the finisher: its imports (events, the network's
    pyroute2) and its waits (attach clients, the back-off) never weigh on the server."""
    from minirun.containers.attachserver import Hub  # os and select only, as this module

    hub = Hub(items[13], int(items[2]))
    try:
        ended = copy(items, hub)
        finisher = os.fork()
        if finisher == 0:
            code = 1
            try:
                _close_all_but(hub.fds())  # other containers' fds, the server's: not ours to hold
                code = _RELAUNCH if _finish(items, hook, hub, ended) else 0
            finally:
                os._exit(code)
    finally:
        hub.release()  # the finisher has its own copies
    _, status = os.waitpid(finisher, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == _RELAUNCH


def _finish(items: list[str], hook: list[str], hub, ended: Exit) -> bool:
    from minirun.containers import restartpolicy

    settings = record(items, hub, ended)
    container_dir = items[0]
    if hook:
        from minirun.containers.network import after_exit

        store_root, container_id, start_settings, auto_remove = hook
        if restartpolicy.keeps_record(container_dir):
            auto_remove = "0"  # an --rm container the `restart` verb starts again keeps its address
        after_exit(store_root, container_id, start_settings, auto_remove, settings)
    return restartpolicy.relaunch(container_dir)
