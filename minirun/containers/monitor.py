"""The monitor of a detached container: starts its PID 1, then runs the log copier
(logcopier.py), which stays as PID 1's parent, writes its log and records its exit; and while the
restart policy says so (restartpolicy.py), starts PID 1 again in the same thread.

A thread of the monitors' server (monitorserver.py), started for `run -d`/`start`; no typer,
rich or pyroute2 ever load in it (what needs more runs in forked children). Its argv: the store, the container, the
fd to report the start on, then attachserver.Stdio's three, then `restart DELAY_MS` for a restart
(a foreground `run --restart` hands its container over to one started so).

Log: one JSON object per line, docker's json-file format: {"log": "...", "stream": "stdout",
"time": "<RFC 3339>"}; a line longer than 16 KiB is split, as docker does.
"""

from __future__ import annotations

import os
import sys

from minirun import leanjson
from minirun.childfailure import encode_report
from minirun.containers import attachserver, logcopier, restartpolicy
from minirun.containers.container import event_attributes
from minirun.containers.liveness import mark_running
from minirun.containers.logcopier import CODE_MARK, TIME_MARK
from minirun.containers.logfile import DROPPED_KEY, LOG_NAME
from minirun.containers.removal import discard
from minirun.runtime import supervise

_MAX_FDS = 16  # the copier's fds: two output pipes and attachserver.Stdio's four at most
_MAX_HANDOVER = 1 << 20

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal


def main(argv: list[str]) -> int:
    """A monitor's life, in a thread of the monitors' server: start PID 1, copy its output until it
    exits, record the exit; again while the restart policy restarts it. 1 if a start failed.

    The start runs in a throwaway child, the launcher (start), which makes PID 1 this thread's
    child (linux.hand_children_to_parent) and hands over what the copier needs: the start touches
    megabytes of the interpreter's pages, which the server never has to own."""
    try:
        while True:
            copier = _launch(argv)
            if isinstance(copier, int):
                return copier
            if not logcopier.run(*copier):
                return 0
            argv = restartpolicy.restart_argv(argv[0], argv[1])
    finally:
        _reap_own_children()


def failed(argv: list[str], exc: BaseException) -> None:
    """A monitor thread's unexpected end: its container is stopped and the exit recorded, as the
    monitor's failure. Otherwise the record would say running for good: liveness.py takes the
    live server for a monitor still at work."""
    from minirun.containers.container import Containers
    from minirun.containers.liveness import UNKNOWN_EXIT
    from minirun.runtime import cgroups
    from minirun.store import Store
    from minirun.timestamps import rfc3339_now

    try:
        containers = Containers(Store(argv[0]))
        container = containers.load(argv[1])
        state = container.state
        if state.get("MonitorPid") != os.getpid() or state.get("Status") not in ("running", "restarting"):
            return
        paths = cgroups.existing_paths(container.id)
        pid = state.get("Pid", 0)
        if pid > 0:  # this thread's child, not reaped yet: never a reused pid
            supervise.kill(pid)
        cgroups.kill_all(paths)  # what a --pid host container left
        try:
            os.waitpid(pid, 0)
        except (ChildProcessError, OSError):
            pass
        containers.update_state(
            container,
            Status="exited",
            Running=False,
            Pid=0,
            ExitCode=UNKNOWN_EXIT,
            Error=f"the container's monitor failed: {type(exc).__name__}: {exc}",
            FinishedAt=rfc3339_now(),
        )
        cgroups.remove(paths)
    except Exception:  # noqa: BLE001 - best effort: the next reader finds PID 1 gone
        pass
    finally:
        _reap_own_children()


def _launch(argv: list[str]) -> int | tuple[list[str], list[str]]:
    """Run start() in a child and take over its PID 1: the copier's arguments, naming the fds
    as this process received them. An exit status if there is no PID 1 to copy for."""
    import _socket  # socket.py loads enum and selectors, which the monitors' server would keep
    import array

    from minirun import leanjson, linux

    channel, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    launcher = os.fork()
    if launcher == 0:
        code = 1
        try:
            channel.close()
            # the server's fds, other containers' among them, stay out of this start
            linux.close_fds(keep=[theirs.fileno(), *(int(a) for a in argv[2:4] if int(a) >= 0)])
            code = _launcher(argv, theirs)
        finally:
            os._exit(code)
    theirs.close()
    for fd in (int(argv[2]), int(argv[3])):  # the launcher's now: a client waits for their EOF
        if fd >= 0:
            os.close(fd)
    pid1 = None
    handover = None
    fds = array.array("i")
    while handover is None:
        space = _socket.CMSG_SPACE(_MAX_FDS * fds.itemsize)
        data, ancillary, _, _ = channel.recvmsg(_MAX_HANDOVER, space, _socket.MSG_CMSG_CLOEXEC)
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            break  # the launcher is gone: no start, or it failed (and told its client)
        message = leanjson.loads(data)
        if "pid" in message:
            pid1 = message["pid"]
        else:
            handover = message
    channel.close()
    _, status = os.waitpid(launcher, 0)
    if handover is None:  # a start that failed (reported), or a restart that stays down (0)
        for fd in fds:
            os.close(fd)
        if pid1 is not None:  # a launcher killed between the clone and the handover
            supervise.kill(pid1)
            os.waitpid(pid1, 0)
        _reap_own_children()  # a port proxy the failed start stopped
        return supervise.exit_code_of(status)
    # the fds arrived at numbers of this process's choosing (close-on-exec: no other container's
    # fork may carry them); the copier's argv is renumbered to match
    numbers = dict(zip(handover["fds"], fds))
    return logcopier.with_fds(handover["args"], numbers), handover["hook"]


def _launcher(argv: list[str], channel) -> int:
    """The launcher's life: start(), then hand the copier's arguments and fds to the monitor."""
    import _socket
    import array

    from minirun import leanjson, linux

    linux.hand_children_to_parent()  # PID 1 and a port proxy are the monitor's
    copier = start(argv, lambda pid: channel.send(leanjson.dumps({"pid": pid}).encode()))
    if isinstance(copier, int):
        return copier
    args, hook = copier
    fds = logcopier.fds_in(args)
    message = leanjson.dumps({"args": args, "hook": hook, "fds": fds}).encode()
    channel.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
    return 0


def _reap_own_children() -> None:
    """Reap what this thread forked and nobody waits for: a port proxy, stopped when PID 1 exited
    or its start failed. Only this thread's own children (/proc/self/task/TID/children): the
    other threads' PID 1s are theirs to wait for."""
    import _thread

    try:
        with open(f"/proc/self/task/{_thread.get_native_id()}/children") as f:
            children = [int(pid) for pid in f.read().split()]
    except OSError:
        return
    for pid in children:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def start(argv: list[str], tell_pid) -> int | tuple[list[str], list[str]]:
    """The launcher's part: PID 1 started (our parent's child) and the start reported to the
    client; `tell_pid(pid)` as soon as PID 1 exists. The copier's arguments and the network's
    exit hook; an exit status if it did not start (reported too)."""
    store_root, container_id, ready_fd = argv[0], argv[1], int(argv[2])
    restart_delay = restartpolicy.restart_args(argv[6:])  # None: a start by the user
    from minirun.containers.container import Containers
    from minirun.containers.plan import build_plan, create_cgroups
    from minirun.errors import MinirunError
    from minirun.runtime import cgroups, launch
    from minirun.store import Store, lock_path
    from minirun.store.initlayer import init_layer_link
    from minirun.timestamps import rfc3339_now

    store = Store(store_root)
    containers = Containers(store)
    container = containers.load(container_id)
    if restart_delay is not None:  # a restart of the policy's: no client waits past the claim
        restartpolicy.claim(containers, container, os.getppid())  # the monitor: the launcher's parent
        _tell(ready_fd, b"ok")
        ready_fd = -1
        if not restartpolicy.backoff_or_stay_down(container, restart_delay):
            return 0
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    plan = started = stdio = None
    # build_plan publishes the ports: from there on, whatever fails frees them (and the cgroups)
    try:
        stdio = attachserver.Stdio(container, argv[3:6])  # -t, -i and attach clients (attachserver.py)
        image = store.images.get(container.config.image)
        plan = build_plan(store, container, image, init_layer_link(store))
        plan.stdio, plan.die_with_parent = (stdio.stdin(null), out_w, err_w), True
        # without -i, PID 1 takes the container's /dev/null after pivot_root: ours is the host's
        # inode on the host's mount, which the container's root could chmod through /proc/self/fd/0
        plan.interactive = plan.stdio[0] != null
        stdio.configure(plan)
        plan.cgroups = create_cgroups(container)
        started = launch.start(plan)
        tell_pid(started.pid)
        stdio.started(started)
        for fd in (null, out_w, err_w):  # PID 1 has them: the copier must see EOF when it exits
            os.close(fd)
        null = out_w = err_w = -1
        failure = launch.read_start_error(started)
        if failure is None and stdio.missing_console():
            supervise.kill(started.pid)
            failure = MinirunError("the container's pty never arrived")
    except BaseException as exc:
        if stdio is not None:
            stdio.close()
        if started is not None:
            supervise.kill(started.pid)
            _wait_gone(started.pid)
        if plan is not None:
            cgroups.remove(plan.cgroups)
        _stop_publishing(store, container)
        error = exc if isinstance(exc, MinirunError) else MinirunError(f"{type(exc).__name__}: {exc}")
        if restart_delay is not None:
            restartpolicy.relaunch_failed(containers, container, error.message)
        _report(ready_fd, error)
        return 1
    finally:
        for fd in (null, out_w, err_w):
            if fd >= 0:
                os.close(fd)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, supervise.FORWARDED_SIGNALS)
    if failure is not None:
        stdio.close()
        _wait_gone(started.pid)
        cgroups.remove(plan.cgroups)
        containers.update_state(
            container,
            Status="exited",
            Running=False,
            ExitCode=failure.exit_code,
            Error=failure.message,
            FinishedAt=rfc3339_now(),
        )
        _stop_publishing(store, container)  # before the report: the CLI returns on it
        _report(ready_fd, failure)
        _maybe_remove(containers, container)
        return 1
    from minirun.containers import healthconfig

    health_spec = healthconfig.copier_spec(container)  # State.Health `starting` before the state says running
    if container.config.log_config.get("Type") != "none":
        # the log exists once `start` returns, before the copier opens it: a reader that opens it
        # then keeps it, removed or not (docker-py's run(): logs, wait, remove, then it reads)
        log = os.path.join(container.dir, LOG_NAME)
        os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640))
    try:
        mark_running(containers, container, started.pid, monitor=os.getppid())
    except MinirunError as exc:  # rm or prune took the record meanwhile: PID 1 goes
        supervise.kill(started.pid)
        stdio.close()
        _wait_gone(started.pid)
        cgroups.remove(plan.cgroups)
        _stop_publishing(store, container)
        _report(ready_fd, exc)
        return 1
    _tell(ready_fd, b"ok")
    exited = dict(
        container.state,
        Status="exited",
        Running=False,
        Pid=0,
        ExitCode=0,
        FinishedAt=TIME_MARK,
        **{DROPPED_KEY: 0},
    )
    template = leanjson.dumps(exited).replace('"ExitCode": 0', f'"ExitCode": {CODE_MARK}', 1)
    for fd in (out_r, err_r):
        os.set_inheritable(fd, True)
    hook = []
    config = container.config
    if config.ports or config.publish_all or config.auto_remove:  # else nothing to undo at the exit
        from minirun.containers.network import exit_hook_args

        hook = exit_hook_args(store.root, container)
    from minirun.containers.logconfig import limits

    log_config = container.config.log_config
    max_size, max_file, compress = limits(log_config)
    args = [
        container.dir,
        lock_path(store.root),
        str(started.pid),
        str(out_r),
        str(err_r),
        "1" if container.config.auto_remove else "0",
        template,
        "\n".join(plan.cgroups),
        log_config.get("Type", "json-file"),
        str(max_size),
        str(max_file),
        "1" if compress else "0",
        leanjson.dumps(event_attributes(container)),
        stdio.copier_arg(),
        health_spec,  # "": no health checks
    ]
    return args, hook


def _wait_gone(pid: int) -> None:
    """Wait until PID 1, our parent's child, has exited (our parent reaps it)."""
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([pidfd], [], [])
    finally:
        os.close(pidfd)


def _stop_publishing(store, container) -> None:
    """PID 1 is gone or never started: its published ports are freed. Best effort: the start's
    own error is what gets reported (a port left behind is debris the next publish replaces)."""
    if container.state.get("NetworkSettings"):
        from minirun.containers.network import stopped

        try:
            stopped(store.root, container.id, container.state["NetworkSettings"])
        except Exception:
            pass


def _report(ready_fd: int, failure) -> None:
    _tell(ready_fd, encode_report(failure.exit_code, failure.message))


def _tell(ready_fd: int, message: bytes) -> None:
    """Answer the client that started us; one killed meanwhile hears nothing, and the container
    goes on (EPIPE must not end the monitor, and PID 1 with it). -1: nobody is waiting."""
    if ready_fd < 0:
        return
    try:
        os.write(ready_fd, message)
    except BrokenPipeError:
        pass
    finally:
        os.close(ready_fd)


def _maybe_remove(containers, container) -> None:
    if container.config.auto_remove:
        discard(containers, container)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
