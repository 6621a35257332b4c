"""`minirun run --runtime PATH|NAME` (docker's and podman's flag): the container handed to an OCI
runtime (runc, crun, minirun-oci) as a bundle, the way docker and podman hand theirs over.

The same LaunchPlan as the in-process path (plan.build_plan), turned into config.json by
runtime/ocispec.py; the root is the container's overlay, mounted by a runner child in a mount
namespace of its own (nothing reaches the host's, and the mount goes when the runtime's
container is gone). Then the conmon shape: this process is a child subreaper, the runner execs
`RUNTIME create`, whose container init reparents to us when it exits; `RUNTIME start`; we wait
for PID 1 ourselves (its exit code, signals forwarded, a pty relayed from --console-socket) and
`RUNTIME delete` takes the cgroups and the runtime's state. A bridge network's eth0 is made from
here, in the network namespace the runtime made, while PID 1 waits for `start`. Foreground only:
minirun's monitors (-d, -it, create/start, restart policies) drive the in-process path."""

from __future__ import annotations

import os
import shutil

from minirun.containers.runtimestate import RuntimeState, find_runtime, runtime_state
from minirun.errors import MinirunError, UsageError
from minirun.runtime import supervise

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from minirun.containers.container import Container, Containers
    from minirun.net.attach import NetSpec
    from minirun.runtime.launch import LaunchPlan
    from minirun.store import Store
    from minirun.store.images import Image

_PR_SET_CHILD_SUBREAPER = 36


def check_runtime_options(runtime: str, detach: bool, attached: bool, create_only: bool, restart: bool) -> None:
    """--runtime runs in the foreground only: minirun's monitors start PID 1 in-process."""
    if not runtime:
        return
    for on, what in ((create_only, "create"), (detach, "-d"), (attached, "-it"), (restart, "--restart")):
        if on:
            raise UsageError(
                f"--runtime with {what} is not supported: an OCI runtime runs a container in the foreground "
                "only (minirun's monitor starts its containers in-process)"
            )


def run_with_runtime(
    store: Store, containers: Containers, container: Container, image: Image, init_link: str, guard: int
) -> int:
    """run_foreground's work through `container.config.runtime`: returns PID 1's exit code."""
    from minirun.containers.foreground import open_log, output_relay, pty_lines, record_exit, unpublish
    from minirun.containers.liveness import mark_running
    from minirun.containers.plan import build_plan
    from minirun.runtime import cgroups

    config = container.config
    runtime = find_runtime(config.runtime)
    bundle = os.path.join(container.dir, "bundle")
    os.makedirs(bundle, exist_ok=True)
    state = runtime_state(container, runtime)
    linux_prctl(_PR_SET_CHILD_SUBREAPER, 1)
    pid = 0
    log = relay = None
    try:
        plan = build_plan(store, container, image, init_link)
        if config.tty:
            from minirun.runtime import tty

            plan.rows, plan.cols = tty.window_size(1)
        extras = _host_side(store, container, plan)
        console = _console_socket() if config.tty else None
        log = open_log(container)  # logged as the in-process path logs it (foreground.py)
        if not config.tty:
            relay = output_relay(container, log)
        pid = _create(plan, bundle, state, extras, console, relay.child if relay is not None else None)
        if relay is not None:
            relay.close_child_side()
        if plan.net is not None:  # a bridge network: eth0 while PID 1 waits for `start`
            _attach_network(pid, plan.net)
        master = None
        if console is not None:
            from minirun.runtime import tty

            master = tty.receive_master(console.accept()[0])
            console.close()
            if master is None:
                raise MinirunError(f"{state.name}: the container's pty never arrived")
        mark_running(containers, container, pid, guard=guard)
        state.call("start")
        if master is not None:
            from minirun.runtime import tty

            code = tty.attach(pid, master, config.interactive, pty_lines(log, master))
        else:
            code = relay.wait(pid) if relay is not None else supervise.wait_for_exit(pid)
        pid = 0
        oom = cgroups.oom_killed(cgroups.existing_paths(container.id))
    except BaseException:
        if pid:
            supervise.kill(pid)
            _reap(pid)
        state.delete()
        unpublish(store, container, best_effort=True)
        raise
    finally:
        linux_prctl(_PR_SET_CHILD_SUBREAPER, 0)
        if relay is not None:
            relay.close()
        if log is not None:
            log.close()
    state.delete()
    record_exit(store, containers, container, code, oom, log.dropped if log is not None else 0)
    return code


def _host_side(store: Store, container: Container, plan: LaunchPlan) -> dict[str, Any]:
    """What config.json needs that only the host knows: the limits with block devices numbered,
    the devices policy and --device nodes, the seccomp profile resolved for the capabilities."""
    from minirun.runtime import cgroups, devices
    from minirun.runtime.ocispec import seccomp_json

    config = container.config
    seccomp = None
    if plan.seccomp is not None:
        from minirun import leanjson
        from minirun.runtime.seccomp import profile_text
        from minirun.runtime.seccompcompile import resolve

        profile = leanjson.loads(profile_text(config.security_opt))
        uname = os.uname()
        seccomp = seccomp_json(resolve(profile, frozenset(plan.capabilities), uname.machine, uname.release))
    nodes = []
    for host, inside, _perms in config.devices:
        kind, major, minor = devices.device_number(host)
        nodes.append((inside, kind, major, minor))
    return {
        "cgroups_path": f"/{cgroups.PARENT}/{container.id}",
        "resources": cgroups.resolve_devices(config.resources),
        "device_rules": devices.rules_for(config.devices, config.privileged, config.device_cgroup_rules),
        "device_nodes": nodes,
        "seccomp": seccomp,
    }


def _console_socket() -> _ConsoleSocket:
    import socket
    import tempfile

    # sun_path holds 108 bytes: a short directory of its own, not the store's deep one
    directory = tempfile.mkdtemp(prefix="minirun-console-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    console = _ConsoleSocket(sock, directory, os.path.join(directory, "sock"))
    try:
        sock.bind(console.path)
        sock.listen(1)
    except BaseException:
        console.close()
        raise
    return console


class _ConsoleSocket:
    def __init__(self, sock: Any, directory: str, path: str) -> None:
        self.sock, self.directory, self.path = sock, directory, path

    def accept(self) -> Any:
        return self.sock.accept()

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _create(
    plan: LaunchPlan, bundle: str, state: RuntimeState, extras: dict[str, Any], console: Any, stdio: list[int] | None
) -> int:
    """`RUNTIME create` from a runner child that mounts the overlay in a mount namespace of its
    own and writes config.json there (the user's ids come from the image's /etc/passwd); returns
    PID 1's pid, which reparents to us (a subreaper) when the runtime returns. `stdio`: the fds
    PID 1 gets as its 0-2 (stdiorelay.Relay's), which the runtime passes through; None: ours."""
    from minirun.childfailure import exit_reporting, read_report

    pid_file = os.path.join(bundle, "pid")
    if os.path.exists(pid_file):
        os.unlink(pid_file)
    argv = state.argv("create", "--bundle", bundle, "--pid-file", pid_file)
    if console is not None:
        argv[-1:-1] = ["--console-socket", console.path]
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    runner = os.fork()
    if runner == 0:
        os.close(read_fd)
        exit_reporting(write_fd, lambda: _runner(plan, bundle, extras, argv, stdio), f"{state.name} create")
    os.close(write_fd)
    failure = read_report(read_fd)
    _, status = os.waitpid(runner, 0)
    if failure is not None:
        raise failure
    if status != 0:
        raise MinirunError(state.failed("create", state.error()))
    try:
        with open(pid_file, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        raise MinirunError(f"{state.name} create: no pid in {pid_file}") from None


def _attach_network(pid: int, net: NetSpec) -> None:
    """What minirun's PID 1 does for itself (net/attach.py), from a child that joins the network
    namespace the runtime made for PID 1: the veth pair, eth0's address and route."""
    from minirun import linux
    from minirun.childfailure import exit_reporting, read_report
    from minirun.net import attach

    host_side = attach.open_host_side()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(read_fd)

        def body() -> None:
            linux.join_namespace(f"/proc/{pid}/ns/net", linux.CLONE_NEWNET)
            attach.attach(net, host_side)
            os._exit(0)

        exit_reporting(write_fd, body, "container network")
    os.close(write_fd)
    host_side[0].close()
    os.close(host_side[1])
    failure = read_report(read_fd)
    _reap(child)
    if failure is not None:
        raise failure


def _runner(plan: LaunchPlan, bundle: str, extras: dict[str, Any], argv: list[str], stdio: list[int] | None) -> None:
    import json

    from minirun import linux
    from minirun.runtime.executable import with_default_env
    from minirun.runtime.ocispec import config_json
    from minirun.runtime.overlay import mount_overlay
    from minirun.runtime.rootfs import resolve_in_root
    from minirun.runtime.security import added_groups, resolve_user

    # the overlay in a mount namespace of ours: the runtime's container copies it, the host never sees it
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    os.chdir(plan.store_root)
    mount_overlay(plan.mountpoint, plan.lowers, plan.upper, plan.work)
    passwd, group = (_read(resolve_in_root(plan.mountpoint, f"/etc/{n}"), f"/etc/{n}") for n in ("passwd", "group"))
    user = resolve_user(plan.user or None, passwd, group)
    if plan.group_add:
        user.groups += [g for g in added_groups(plan.group_add, group) if g not in user.groups]
    env = with_default_env(plan.env, plan.hostname, user.home, plan.tty)
    workdir = resolve_in_root(plan.mountpoint, plan.workdir or "/")
    if not os.path.lexists(workdir) and not plan.readonly:
        os.makedirs(workdir, 0o755)  # docker creates a missing working directory
    config = config_json(plan, user, env, **extras)
    with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    for target, fd in enumerate(stdio or []):
        if fd != target:
            os.dup2(fd, target)  # inheritable: the runtime hands them to PID 1
    if not plan.interactive and not plan.tty:  # docker's: no stdin without -i
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    supervise.default_dispositions()
    os.execv(argv[0], argv)


def _read(path: str, shown: str) -> str:
    """The image's /etc/passwd or /etc/group, read here on the host's side (runc would read it
    inside the container), where a FIFO would hang the run outside any container and `rm -f`
    finds nothing to kill (fsutil.read_user_db). Missing: empty."""
    from minirun.store.fsutil import read_user_db

    try:
        return read_user_db(path)
    except ValueError as exc:
        raise MinirunError(f"cannot resolve the container's user: {shown} {exc}") from None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def linux_prctl(option: int, value: int) -> None:
    from minirun import linux

    linux.prctl(option, value)
