"""What survives a killed `run` client: a guard process forked by the CLI before it creates the
container, which does nothing if the CLI finishes and cleans up after it if it does not.

minirun has no daemon, so a foreground container's PID 1 dies with the client that runs it
(its parent-death signal): a container nobody watches and nobody can stop from the terminal that
started it is the worse surprise. Whatever kills the client, SIGKILL included, the guard then
makes the record honest: the container's processes are killed through its cgroups, the exit
(137: killed) is recorded, its published ports are freed, and an `--rm` container is removed. A
detached container's monitor owns it once it runs; before that (the client killed while the
monitor starts) the guard removes an `--rm` container and leaves the others `Created`, as docker
leaves them.

The guard is a shell, spawned (vfork and exec: nothing of the client's memory is shared), in a
session of its own with nothing of the client's open but its pipe, so it neither holds the
client's stdout open nor gets its terminal's signals. It waits for the client's "done"; only if
the pipe ends without it does it exec a Python helper that cleans up. It was a plain fork of the
client: every page the client wrote after it became a copy-on-write fault (~600 of them), ~2.5 ms
of every `run`.
"""

from __future__ import annotations

import os

from minirun.containers.removal import discard

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

CLIENT_KILLED = 137  # the exit code docker users read as "killed": PID 1 was, by SIGKILL
_POLL = 0.02


class Guard:
    """The client's end: `done()` when the client finished its part (the guard then exits)."""

    def __init__(self, write_fd: int, pid: int) -> None:
        self.write_fd, self.pid = write_fd, pid

    def done(self, reap: bool = True) -> None:
        """`reap=False` from a client about to exit: the guard exits at once, and init reaps it
        (its exit, ~0.5 ms here, is no part of the client's)."""
        if self.write_fd >= 0:
            try:
                os.write(self.write_fd, b"d")
            finally:
                os.close(self.write_fd)
                self.write_fd = -1
            if not reap:
                return
            try:
                os.waitpid(self.pid, 0)  # it exits at once: no zombie for the rest of a build
            except ChildProcessError:
                pass


# A read of a pipe that ends without "d" (the client died) execs the cleanup: "$@" is its argv.
# The test of what was read, not read's status: "d" with no newline then EOF reads as a failure.
_WAIT = 'read -r said; [ "$said" = d ] || exec "$@"'


def start(store_root: str, container_id: str) -> Guard:
    from minirun.helpers import helper_argv

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    cleanup = helper_argv("minirun.containers.guard:clean_up_main", store_root, container_id, str(os.getpid()))
    try:
        pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", _WAIT, "minirun-guard", *cleanup],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_fd, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
    return Guard(write_fd, pid)


def clean_up_main(argv: list[str]) -> int:
    """The helper the guard execs when its client died: `STORE_ROOT CONTAINER_ID CLIENT_PID`."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    _close_all_but(-1)  # whatever the client let its children inherit
    store_root, container_id, client = argv
    try:
        clean_up_after(store_root, container_id, int(client))
    except Exception:
        return 1  # nobody reads our errors: the next look at the container (refresh) is the fallback
    return 0


def _close_all_but(keep: int) -> None:
    """Close every fd above 2 but `keep`. /proc/self/fd lists them whatever the limits."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd, closed already


def clean_up_after(store_root: str, container_id: str, client: int) -> None:
    """The `client` process died before it was done with `container_id`: what it left, made honest."""
    from minirun.containers.container import Containers
    from minirun.errors import NotFound
    from minirun.procs import is_alive
    from minirun.runtime import cgroups
    from minirun.store import Store
    from minirun.timestamps import rfc3339_now

    containers = Containers(Store(store_root))
    with containers.store.locked():  # a create in progress finishes first
        pass
    try:
        container = containers.load(container_id)
    except NotFound:
        return  # killed before it made the record, or removed already
    state = container.state
    monitored = (
        state.get("Status") == "running"
        and state.get("MonitorPid") != client
        and is_alive(state.get("MonitorPid", 0), state.get("MonitorStartTime"))
    )
    if monitored:
        return  # a detached container whose monitor has it
    if state.get("Status") == "running":
        cgroups.remove(cgroups.existing_paths(container_id))  # kills PID 1 and all it started
        _wait_gone(state.get("Pid", 0), state.get("PidStartTime"))
        containers.update_state(
            container,
            Status="exited",
            Running=False,
            Pid=0,
            ExitCode=CLIENT_KILLED,
            Error="the minirun client running it was killed",
            FinishedAt=rfc3339_now(),
        )
    cgroups.remove(cgroups.existing_paths(container_id))
    if state.get("NetworkSettings"):
        from minirun.containers.network import stopped

        stopped(store_root, container_id, state["NetworkSettings"])
    if container.config.auto_remove:
        discard(containers, container)


def _wait_gone(pid: int, started: int | None) -> None:
    import time

    from minirun.procs import is_alive

    deadline = time.monotonic() + 30
    while pid > 0 and is_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(_POLL)
