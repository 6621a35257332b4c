"""runc's verbs on a container: create (PID 1 set up completely, waiting before execve on the
exec fifo), start (open the fifo: PID 1 goes on), state, kill, delete, run, pause, resume, ps,
events, update. PID 1 comes from runtime/launch.py, the code `minirun run` starts its own
containers with; `create` returns once it is set up, and PID 1 goes to whoever is the
subreaper above us (containerd's shim, podman's conmon), as runc's does."""

from __future__ import annotations

import os
import time
from typing import Any

from minirun.errors import MinirunError
from minirun.oci import config as oci_config
from minirun.oci.state import State
from minirun.runtime import cgroups, launch

_STOP_TIMEOUT = 10.0


class CreateOptions:
    def __init__(
        self,
        bundle: str,
        pid_file: str = "",
        console_socket: str = "",
        preserve_fds: int = 0,
        new_keyring: bool = True,
    ) -> None:
        self.bundle = os.path.abspath(bundle or ".")
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.new_keyring = new_keyring  # False: runc's --no-new-keyring


def create(root: str, container_id: str, opts: CreateOptions, foreground: bool = False) -> launch.Started:
    """Set PID 1 up; it then waits for `start` on the exec fifo. `foreground`: for `run`, which
    stays PID 1's parent and may relay a terminal itself."""
    state = State(root, container_id)
    spec = oci_config.load(opts.bundle)
    bundle = oci_config.translate(spec, opts.bundle, container_id, cgroups.PARENT)
    plan = bundle.plan
    if bundle.terminal and not foreground and not opts.console_socket:
        raise MinirunError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not bundle.terminal:
        raise MinirunError("cannot use console socket if runc will not allocate tty")
    plan.console_socket = opts.console_socket and os.path.abspath(opts.console_socket)
    _warn_ignored(spec, bundle.warnings)
    plan.preserve_fds = opts.preserve_fds
    plan.session_keyring = opts.new_keyring
    state.make()
    state.data = {
        "ociVersion": spec.get("ociVersion", oci_config.OCI_VERSION),
        "bundle": opts.bundle,
        "rootfs": bundle.rootfs,
        "created": _now(),
        "annotations": bundle.annotations,
        "cgroup": bundle.cgroup,
        "cgroup_paths": [],
        "hooks": bundle.hooks,
        "pid": 0,
    }
    if "mount" in plan.host_namespaces:
        # its mounts land in our mount namespace: what is on the root now is not the container's
        state.data["caller_mounts"] = [_mount_ns(), len(_mounts_at(bundle.rootfs))]
    started = None
    try:
        state.save()
        os.mkfifo(state.fifo, 0o622)
        os.chmod(state.fifo, 0o622)  # the umask took the others' write bit: a user's PID 1 opens it
        plan.exec_fifo = state.fifo
        plan.cgroups = cgroups.create_at(bundle.cgroup, bundle.resources, bundle.device_rules)
        state.data["cgroup_paths"] = plan.cgroups
        state.save()
        plan.hook_state = {k: v for k, v in state.oci().items() if k not in ("pid", "status")}
        started = launch.start(plan)
        from minirun import procs

        state.data["pid"] = started.pid
        state.data["pid_start"] = procs.start_time(started.pid)
        state.save()
        if started.hooks is not None:
            _hooks_point(state, started.hooks)
        # EOF: set up and waiting on the fifo (a pty was sent before)
        failure = launch.read_start_error(started)
        if failure is not None:
            os.waitpid(started.pid, 0)
            raise failure
        if opts.pid_file:
            _write_pid_file(opts.pid_file, started.pid)
    except BaseException:
        if started is not None:
            _kill_and_reap(started.pid)
        state.data["failed"] = True
        _destroy(state, hooks=False)
        raise
    return started


def _hooks_point(state: State, channel: Any) -> None:
    """PID 1 has made its mounts and waits before pivot_root: the prestart and createRuntime
    hooks run now, in our namespaces (runc's order); then PID 1 runs the createContainer ones."""
    from minirun.runtime import hooks

    failure = ""
    try:
        if hooks.wait_for_hooks_point(channel):
            for kind in ("prestart", "createRuntime"):
                run_hooks(state, kind)
    except MinirunError as exc:
        failure = exc.message
        raise
    finally:
        hooks.answer_hooks_point(channel, failure)


def start(root: str, container_id: str) -> None:
    state = State(root, container_id).load()
    status = state.status()
    if status != "created":
        raise MinirunError(
            "cannot start a container that has stopped" if status == "stopped" else f"cannot start a {status} container"
        )
    try:
        fd = os.open(state.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MinirunError("cannot start an already running container") from None
    answer = b""
    try:
        # PID 1's open for writing completes now that there is a reader; its byte says it goes on
        # ("0"), after its startContainer hooks ("1" and why, if one failed). Until it opens, EOF
        # reads (no writer yet): poll, and give up if PID 1 is gone meanwhile.
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = None  # PID 1 has it open, busy with its hooks
            if chunk:
                answer += chunk
                if answer == b"0":
                    break
            elif chunk == b"" and answer:
                break  # it wrote why it failed, and exited
            elif chunk == b"" and not state.alive():
                raise MinirunError("cannot start a container that has stopped")
            time.sleep(0.002)
    finally:
        os.close(fd)
    os.unlink(state.fifo)
    if answer != b"0":
        raise MinirunError(answer[1:].decode(errors="replace"))
    # the state as `start` left it: the process running (it may have exited already)
    run_hooks(state, "poststart", fatal=False, status="running")


def kill(root: str, container_id: str, signal_name: str, all_processes: bool = False) -> None:
    state = State(root, container_id).load()
    signum = parse_signal(signal_name)
    if state.status() == "stopped":
        raise MinirunError("container not running")
    if all_processes:
        for path in state.data.get("cgroup_paths") or []:
            for pid in cgroups.members(path):
                _signal(pid, signum)
        return
    _signal(state.pid, signum)


def delete(root: str, container_id: str, force: bool = False) -> None:
    state = State(root, container_id)
    try:
        state.load()
    except MinirunError:
        if force:
            return
        raise
    status = state.status()
    if status in ("running", "paused") and not force:
        raise MinirunError(f"cannot delete container {container_id} that is not stopped: {status}")
    if status != "stopped":
        if status == "paused":
            _thaw(state)
        _signal(state.pid, 9)
        _wait_gone(state)
    _destroy(state, hooks=status != "creating")


def run(root: str, container_id: str, opts: CreateOptions, detach: bool) -> int:
    """create + start; in the foreground the container's exit code (128+N for signal N), with
    the signals we get passed on and, for a terminal without --console-socket, its pty relayed."""
    if detach:
        create(root, container_id, opts)
        start(root, container_id)
        return 0
    from minirun.runtime import supervise

    started = create(root, container_id, opts, foreground=True)
    state = State(root, container_id).load()
    try:
        master = None
        if started.console is not None:
            from minirun.runtime import tty

            master = tty.receive_master(started.console)
            if master is None:
                raise MinirunError("the container's pty never arrived")
        start(root, container_id)
        if master is not None:
            return tty.attach(started.pid, master, interactive=True)
        return supervise.wait_for_exit(started.pid)
    finally:
        if state.alive():  # (checked by start time: a reaped pid may be someone else's now)
            _kill_and_reap(started.pid)
        _destroy(state, hooks=True)


def pause(root: str, container_id: str, frozen: bool) -> None:
    from minirun.runtime import freezer

    state = State(root, container_id).load()
    status = state.status()
    if status not in ("running", "paused", "created"):
        raise MinirunError("container not running")
    freezer.set_frozen(*freezer.freezer_at(state.data["cgroup"], container_id), frozen)


def pids(root: str, container_id: str) -> list[int]:
    state = State(root, container_id).load()
    found: list[int] = []
    for path in state.data.get("cgroup_paths") or []:
        found += [p for p in cgroups.members(path) if p not in found]
    return sorted(found)


def stats(root: str, container_id: str) -> dict[str, Any]:
    """runc's `events --stats` object, the fields minirun's cgroups module reads."""
    state = State(root, container_id).load()
    if state.status() == "stopped":
        raise MinirunError("container not running")
    usage = cgroups.usage_at(state.data["cgroup"]) or {}
    data = {
        "cpu": {"usage": {"total": usage.get("cpu_ns", 0)}},
        "memory": {"usage": {"usage": usage.get("memory", 0), "limit": usage.get("memory_limit", 0)}},
        "pids": {"current": usage.get("pids", 0)},
        "blkio": {"read": usage.get("blk_read", 0), "write": usage.get("blk_write", 0)},
    }
    return {"type": "stats", "id": container_id, "data": data}


def update(root: str, container_id: str, resources: dict[str, Any]) -> None:
    state = State(root, container_id).load()
    if state.status() == "stopped":
        raise MinirunError("container not running")
    _warn_ignored({"linux": {"resources": resources}}, [])
    cgroups.apply_at(state.data["cgroup"], oci_config.limits(resources))


# -- hooks ------------------------------------------------------------------------------------


def run_hooks(state: State, kind: str, fatal: bool = True, status: str = "") -> None:
    """The bundle's hooks of `kind`, each given the container's state on stdin, in order. A
    failure of prestart, createRuntime, createContainer, startContainer fails the verb; of
    poststart and poststop it is a warning, as in runc."""
    from minirun.runtime import hooks

    entries = (state.data.get("hooks") or {}).get(kind) or []
    if not entries:
        return
    current = state.oci()
    if status:
        current.update(status=status, pid=state.pid)
    for hook in entries:
        try:
            hooks.run(hook, current, kind)
        except MinirunError as exc:
            if fatal:
                raise
            from minirun.oci import runlog

            runlog.warning(exc.message)


# -- plumbing ---------------------------------------------------------------------------------


def _warn_ignored(spec: dict[str, Any], warnings: list[str]) -> None:
    from minirun.oci import runlog

    memory, io = cgroups.owner("memory"), cgroups.owner("blkio") or cgroups.owner("io")
    resources = (spec.get("linux") or {}).get("resources") or {}
    any_v1 = any(h.version == 1 and h.controllers for h in cgroups.hierarchies())
    versions = (memory.version if memory else None, io.version if io else None)
    for message in [*warnings, *oci_config.ignored_settings(resources, *versions, any_v1)]:
        runlog.warning(message)


def _destroy(state: State, hooks: bool) -> None:
    """What a stopped container leaves: its cgroups (and any process the PID namespace did not
    take along: a bundle may share the host's), its state directory; then poststop hooks."""
    import shutil

    paths = state.data.get("cgroup_paths") or []
    cgroups.kill_all(paths)
    stayed = cgroups.remove(paths)
    _detach_root(state)
    if hooks:
        run_hooks(state, "poststop", fatal=False)
    shutil.rmtree(state.dir, ignore_errors=True)
    if stayed:
        raise MinirunError(f"cgroups still busy: {', '.join(stayed)}")


def _detach_root(state: State) -> None:
    """A container without a mount namespace of its own left its root bound onto itself, and
    everything it mounted below it, in its caller's namespace (as runc's does): detached, when
    that is ours, down to the mounts that were there before `create`."""
    from minirun import linux

    recorded = state.data.get("caller_mounts")
    if not recorded or recorded[0] != _mount_ns():
        return
    rootfs = state.data.get("rootfs", "")
    for _ in range(len(_mounts_at(rootfs)) - int(recorded[1])):
        try:
            linux.umount2(rootfs, linux.MNT_DETACH)
        except MinirunError:
            break


def _mount_ns() -> int:
    return os.stat("/proc/self/ns/mnt").st_ino


def _mounts_at(path: str) -> list[str]:
    """The mount ids of the mounts stacked on `path` in our namespace."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    escaped = path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    return [line.split()[0] for line in lines if line.split()[4] == escaped]


def _wait_gone(state: State) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT
    while state.alive():
        if time.monotonic() > deadline:
            raise MinirunError(f"container {state.id}: PID 1 did not exit after SIGKILL")
        time.sleep(0.005)


def _thaw(state: State) -> None:
    from minirun.runtime import freezer

    try:
        freezer.set_frozen(*freezer.freezer_at(state.data["cgroup"], state.id), False)
    except MinirunError:
        pass


def _kill_and_reap(pid: int) -> None:
    _signal(pid, 9)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _signal(pid: int, signum: int) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def parse_signal(name: str) -> int:
    """runc's spellings: 9, KILL, SIGKILL."""
    import signal

    if name.isdigit():
        return int(name)
    key = name.upper()
    key = key if key.startswith("SIG") else f"SIG{key}"
    number = getattr(signal.Signals, key, None) if not key.startswith("SIG_") else None
    if number is None:
        raise MinirunError(f"unknown signal {name!r}")
    return int(number)


def _write_pid_file(path: str, pid: int) -> None:
    from minirun.atomicfile import atomic_write

    atomic_write(os.path.abspath(path), str(pid).encode(), mode=0o644, durable=False)


def _now() -> str:
    from minirun.timestamps import rfc3339_ns

    return rfc3339_ns(time.time_ns())
