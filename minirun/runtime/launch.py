"""Starting a container's PID 1: one fork into new namespaces, the overlay mounted inside them.

The parent unshares only its PID namespace *for children* (unshare(CLONE_NEWPID) moves the
caller nowhere), so the one fork that follows is PID 1 of a new namespace while the parent
stays on the host. The child then unshares mount, UTS, IPC, network and cgroup namespaces for
itself, mounts the overlay where only it can see it (nothing leaks to the host, even after
kill -9: the mount dies with the namespace), pivots, drops privileges and execs.

Errors in the child travel back through a close-on-exec pipe (minirun.childfailure): EOF without
data means the exec happened; otherwise "<exit code>\\n<message>". With -t, PID 1 also sends the master of a pty it
allocated in its own devpts over a socketpair (tty.py).
"""

from __future__ import annotations

import os
import signal
import stat
from dataclasses import dataclass, field

from minirun import linux
from minirun.childfailure import exit_reporting, read_report
from minirun.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, MinirunError
from minirun.runtime import cgroups
from minirun.runtime.privileges import DEFAULT_CAPABILITIES

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


@dataclass
class LaunchPlan:
    """Everything PID 1 needs, decided by the parent before the fork."""

    store_root: str
    lowers: list[str]  # relative to store_root, topmost first (short links keep mount(2)'s page enough)
    upper: str
    work: str
    mountpoint: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    hostname: str
    network: str = "none"
    readonly: bool = False
    binds: list = field(default_factory=list)  # [source, target, readonly]
    tmpfs: list[str] = field(default_factory=list)
    interactive: bool = False
    tty: bool = False
    rows: int = 24  # the pty's first window size: the CLI's terminal's, measured before the fork
    cols: int = 80
    stdio: tuple[int, int, int] | None = None  # fds for PID 1's 0, 1, 2 (a monitor's pipes); None: inherit
    die_with_parent: bool = False  # a detached container dies with its monitor: nobody else records its exit
    cgroups: list[str] = field(default_factory=list)  # the container's cgroup dirs (cgroups.create), joined first
    net: dict | None = None  # bridge networks: eth0's veth, address and route (runtime/network.py), made by PID 1
    join_netns: str = ""  # --network container:ID: that container's /proc/PID/ns/net, joined instead of a new one
    # what the process may do (privileges.py): capabilities, no_new_privs, the seccomp.Program (None: unconfined)
    capabilities: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    no_new_privileges: bool = True
    seccomp: object = None
    privileged: bool = False  # also: no masked paths, /sys and cgroups writable, every host device
    devices: list = field(default_factory=list)  # --device: [host path, container path, permissions]


@dataclass
class Started:
    pid: int
    error_fd: int
    console: object = None  # with tty: the socket PID 1 sends the pty master over (tty.receive_master)


def start(plan: LaunchPlan) -> Started:
    """Fork PID 1. Signals stay blocked across the fork so none hits the child before it execs
    with default handlers; the caller unblocks them once its forwarding is in place."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    console = child_console = None
    if plan.tty:
        import socket  # only with -t: ~3 ms of imports

        console, child_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    linux.unshare(linux.CLONE_NEWPID)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sock in (console, child_console):
            if sock is not None:
                sock.close()
        raise
    finally:
        if os.getpid() != 1:
            # Back to our own namespace for later children: once PID 1 has exited, a fork or a
            # new thread in the old one fails (ENOMEM, EINVAL), and builds and tests go on.
            linux.setns(own_pid_ns, linux.CLONE_NEWPID)
        os.close(own_pid_ns)
    if pid == 0:
        os.close(read_fd)
        if console is not None:
            console.close()
        exit_reporting(write_fd, lambda: _child(plan, write_fd, old_mask, child_console), "container init")
    os.close(write_fd)
    if child_console is not None:
        # PID 1 holds the only other end: a failure before it sends the master reads as EOF
        child_console.close()
    return Started(pid=pid, error_fd=read_fd, console=console)


def read_start_error(started: Started) -> MinirunError | None:
    """Block until PID 1 has exec'd (EOF) or failed (a message)."""
    return read_report(started.error_fd)


class ExecFailure(MinirunError):
    """The command cannot be exec'd: docker's 126 (cannot invoke) or 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, exit_code=code)


def _child(plan: LaunchPlan, error_fd: int, old_mask: set, console=None) -> None:
    if plan.stdio is not None:
        for target, fd in enumerate(plan.stdio):
            os.dup2(fd, target)
    # Before anything else: no fd the CLI (or whoever started it) holds may follow PID 1 into
    # its namespaces, not even for the length of the setup (runc CVE-2024-21626).
    linux.close_fds(keep=(error_fd,) if console is None else (error_fd, console.fileno()))
    # First after that, so everything PID 1 does (and every child of it) is limited and counted,
    # and before unshare(CLONE_NEWCGROUP), which makes the cgroup we are in the namespace's root.
    cgroups.join(plan.cgroups)
    if plan.tty:
        from minirun.runtime.tty import setup_console
    from minirun.runtime.overlay import mount_overlay
    from minirun.runtime.rootfs import Bind, RootfsSpec, setup_rootfs

    # Every import PID 1 needs happens here, before pivot_root hides the host's site-packages
    # (security.py loads prctl at import time for that reason).
    from minirun.runtime.security import lock_down, read_user_db, resolve_user

    if plan.die_with_parent:
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)
    # Our own session: the terminal's Ctrl-C goes to the CLI, which forwards it (docker's sig-proxy).
    os.setsid()
    namespaces = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWCGROUP
    own_netns = plan.network != "host" and not plan.join_netns
    if own_netns:
        namespaces |= linux.CLONE_NEWNET
    host_side = None
    if plan.net is not None:
        from minirun.containers import network

        host_side = network.open_host_side()  # before the unshare: it must reach the host's bridge
    elif plan.join_netns:
        _join_netns(plan.join_netns)
    linux.unshare(namespaces)
    # Private before anything is mounted: no mount of ours may propagate to the host.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.sethostname(plan.hostname)
    if own_netns:
        _loopback_up()
    if host_side is not None and plan.net is not None:
        network.attach(plan.net, host_side)
    os.chdir(plan.store_root)
    mount_overlay(plan.mountpoint, plan.lowers, plan.upper, plan.work)
    binds = [Bind(source=s, target=t, readonly=bool(ro)) for s, t, ro in plan.binds]
    setup_rootfs(
        RootfsSpec(
            root=plan.mountpoint,
            readonly=plan.readonly,
            binds=binds,
            tmpfs=list(plan.tmpfs),
            cgroups=cgroups.namespace_mounts() if plan.cgroups else [],
            privileged=plan.privileged,
            devices=[(h, c) for h, c, _ in plan.devices],
        )
    )

    passwd, group = read_user_db("/")
    user = resolve_user(plan.user or None, passwd, group)
    env = with_default_env(plan.env, plan.hostname, user.home, plan.tty)
    if plan.tty:
        setup_console(console, plan.rows, plan.cols, user.uid)
    _enter_workdir(plan.workdir, plan.readonly)
    if not plan.interactive and not plan.tty:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    executable = find_executable(plan.argv[0], env_value(env, "PATH"))
    lock_down(user, plan.capabilities, plan.no_new_privileges, plan.seccomp, keep_fds=(error_fd,))
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    try:
        os.execve(executable, plan.argv, env_dict(env))
    except OSError as exc:
        raise exec_error(plan.argv[0], exc) from None


def _join_netns(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise MinirunError("cannot join the network of a container that is no longer running") from None
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """`ip link set lo up` in the new network namespace: one ioctl, no netlink library."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def _enter_workdir(workdir: str, readonly: bool) -> None:
    path = workdir or "/"
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise MinirunError(f"chdir to cwd ({path!r}) set in config failed: not a directory")
        try:
            os.makedirs(path, 0o755)  # docker creates a missing working directory
        except OSError as exc:
            raise MinirunError(f"mkdir {path}: {exc.strerror}") from None
    os.chdir(path)
    # runc CVE-2024-21626: the working directory must be inside the new root, never a host dir.
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if not cwd.startswith("/"):
        raise MinirunError("current working directory is outside of container mount namespace root")


def find_executable(name: str, path_env: str | None) -> str:
    """exec.LookPath as runc uses it: a name with a slash is taken as is, else searched in PATH."""
    if "/" in name:
        _check_executable(name, name)
        return name
    for directory in (path_env or "").split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    raise ExecFailure(EXIT_NOT_FOUND, f'exec: "{name}": executable file not found in $PATH')


def _check_executable(shown: str, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExecFailure(EXIT_NOT_FOUND, f'exec: "{shown}": stat {path}: no such file or directory') from None
    except OSError as exc:
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": {(exc.strerror or str(exc)).lower()}') from None
    if stat.S_ISDIR(st.st_mode):
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": is a directory')
    if not st.st_mode & 0o111:
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": permission denied')


def exec_error(name: str, exc: OSError) -> ExecFailure:
    text = (exc.strerror or str(exc)).lower()
    code = EXIT_NOT_FOUND if exc.errno == 2 else EXIT_CANNOT_INVOKE
    return ExecFailure(code, f'exec: "{name}": {text}')


def with_default_env(env: list[str], hostname: str, home: str, tty: bool = False) -> list[str]:
    """docker's additions: PATH when the image has none, HOSTNAME, TERM=xterm with -t (unless the
    image or -e set TERM), HOME from the user's entry."""
    keys = {item.split("=", 1)[0] for item in env}
    extra = []
    if "PATH" not in keys:
        extra.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if "HOSTNAME" not in keys:
        extra.append(f"HOSTNAME={hostname}")
    if tty and "TERM" not in keys:
        extra.append("TERM=xterm")
    result = extra + list(env)
    if "HOME" not in keys:
        result.append(f"HOME={home or '/'}")
    return result


def env_value(env: list[str], key: str) -> str | None:
    value = None
    for item in env:
        k, _, v = item.partition("=")
        if k == key:
            value = v
    return value


def env_dict(env: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in env:
        k, _, v = item.partition("=")
        result[k] = v
    return result


def wait_for_exit(pid: int) -> int:
    """Wait for PID 1, forwarding the signals minirun receives; docker's exit code (128+N when
    killed by signal N)."""
    previous = forward_signals(pid)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        restore_handlers(previous)
    return exit_code_of(status)


def forward_signals(pid: int, also: dict | None = None) -> dict:
    """Send FORWARDED_SIGNALS on to PID 1 (plus handlers of `also`), then unblock what start()
    blocked. Returns the handlers to give back to restore_handlers."""
    handlers = {sig: (lambda signum, _frame: _forward(pid, signum)) for sig in FORWARDED_SIGNALS}
    handlers.update(also or {})
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    return previous


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def kill(pid: int) -> None:
    _forward(pid, signal.SIGKILL)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def exit_code_of(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
