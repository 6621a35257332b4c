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

import errno
import os

from minirun import linux
from minirun.childfailure import exit_reporting, read_report
from minirun.errors import MinirunError, SyscallError
from minirun.records import Record
from minirun.runtime import cgroups, supervise
from minirun.runtime.executable import (
    DEFAULT_UMASK,
    env_dict,
    env_value,
    exec_error,
    find_executable,
    with_default_env,
)
from minirun.runtime.privileges import DEFAULT_CAPABILITIES

TYPE_CHECKING = False  # typing costs ~6 ms on the path the start benchmark times
if TYPE_CHECKING:
    import signal
    import socket
    from typing import Any

    from minirun.net.attach import NetSpec
    from minirun.runtime.channel import Channel
    from minirun.runtime.rootfs import Mount
    from minirun.runtime.seccomp import Program
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class LaunchPlan(Record):
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
    network: str
    readonly: bool
    # [source, target, readonly]: JSON arrays from config.json (a list type cannot tell its items apart)
    binds: list[list[Any]]
    tmpfs: list[str]
    volume_dirs: list[str]  # the image's VOLUMEs no bind or tmpfs covers, made if missing (rootfs.make_volume_dirs)
    interactive: bool
    tty: bool
    rows: int  # the pty's first window size: the CLI's terminal's, measured before the fork
    cols: int
    stdio: tuple[int, int, int] | None  # fds for PID 1's 0, 1, 2 (a monitor's pipes); None: inherit
    die_with_parent: bool  # a detached container dies with its monitor: nobody else records its exit
    cgroups: list[str]  # the container's cgroup dirs (cgroups.create), joined first
    net: NetSpec | None  # bridge networks: eth0's veth, address and route (net/attach.py), made by PID 1
    join_netns: str  # --network container:ID: that container's /proc/PID/ns/net, joined instead of a new one
    # what the process may do (privileges.py): capabilities, no_new_privs, the seccomp.Program (None: unconfined)
    capabilities: list[str]
    no_new_privileges: bool
    seccomp: Program | None
    privileged: bool  # also: no masked paths, /sys and cgroups writable, every host device
    devices: list[list[str]]  # --device: [host path, container path, permissions]
    # run's flags (containers/runconfig.py): --init, --ulimit, --shm-size, --group-add, --sysctl, --pid/--ipc/--uts
    init_path: str  # an init bound into the root (tini), exec'd as `init -- argv`; "": argv itself
    ulimits: list[dict[str, Any]]  # [{"Name", "Soft", "Hard"}] (kernelsettings.py)
    shm_size: int  # /dev/shm's size in bytes; 0: rootfs.py's default
    group_add: list[str]  # supplementary groups: /etc/group names, gids
    sysctls: dict[str, str]
    # of "pid", "ipc", "uts" (and for an OCI bundle "cgroup", "mount"): the caller's, no new one
    host_namespaces: list[str]
    # An OCI bundle's (minirun/oci), all unset for minirun's own containers:
    root_dir: str  # the root: this directory bound onto itself ("": the overlay of `lowers`)
    mounts: list[Mount] | None  # its mounts, instead of docker's and the binds (rootfs.RootfsSpec)
    masked_paths: list[str] | None  # None: docker's
    readonly_paths: list[str] | None
    device_nodes: list[list[Any]]  # [path, type, major, minor, mode, uid, gid]
    namespace_paths: dict[str, str]  # "pid", "ipc", "uts", "cgroup", "mount" -> a namespace file to join instead
    capability_sets: dict[str, list[str]] | None  # the five sets, instead of `capabilities`' rule
    oom_score_adj: int | None
    rootfs_propagation: int  # MS_SHARED, MS_SLAVE... (| MS_REC) for the root after pivot_root
    preserve_fds: int  # fds 3 .. 3+N-1 go to the process too (runc's --preserve-fds)
    exec_fifo: str  # PID 1 waits before execve until `start` opens this fifo (runc's exec fifo)
    console_socket: str  # with tty: the pty master goes to this socket, not back to the caller
    exact_env: bool  # the env as given (only HOME added when missing, as runc): no docker additions
    umask: int | None  # runc's process.user.umask; None: 0022 (executable.DEFAULT_UMASK)
    session_keyring: bool  # a new, empty session keyring (False: the caller's, runc's --no-new-keyring)
    # a user namespace of its own (userns.py), with these [inside, outside, count] maps; or one
    # joined by namespace_paths["user"]
    userns: bool
    uid_mappings: list[list[int]]
    gid_mappings: list[list[int]]
    # hooks.py: PID 1 stops before pivot_root for the runtime's prestart and createRuntime hooks,
    # then runs these createContainer and (after `start`) startContainer hooks itself, each given
    # hook_state (the OCI state but for pid and status, which PID 1 fills in)
    hooks_point: bool
    container_hooks: dict[str, list[dict[str, Any]]]
    hook_state: dict[str, Any]
    DEFAULTS = {
        "network": "none",
        "readonly": False,
        "binds": list,
        "tmpfs": list,
        "volume_dirs": list,
        "interactive": False,
        "tty": False,
        "rows": 24,
        "cols": 80,
        "stdio": None,
        "die_with_parent": False,
        "cgroups": list,
        "net": None,
        "join_netns": "",
        "capabilities": lambda: list(DEFAULT_CAPABILITIES),
        "no_new_privileges": True,
        "seccomp": None,
        "privileged": False,
        "devices": list,
        "init_path": "",
        "ulimits": list,
        "shm_size": 0,
        "group_add": list,
        "sysctls": dict,
        "host_namespaces": list,
        "root_dir": "",
        "mounts": None,
        "masked_paths": None,
        "readonly_paths": None,
        "device_nodes": list,
        "namespace_paths": dict,
        "capability_sets": None,
        "oom_score_adj": None,
        "rootfs_propagation": 0,
        "preserve_fds": 0,
        "exec_fifo": "",
        "console_socket": "",
        "exact_env": False,
        "umask": None,
        "session_keyring": True,
        "userns": False,
        "uid_mappings": list,
        "gid_mappings": list,
        "hooks_point": False,
        "container_hooks": dict,
        "hook_state": dict,
    }


class Started(Record):
    pid: int
    error_fd: int
    console: socket.socket | None  # with tty: the socket PID 1 sends the pty master over (tty.receive_master)
    hooks: Channel | None  # with plan.hooks_point: where PID 1 waits for the runtime's hooks
    DEFAULTS = {
        "console": None,
        "hooks": None,
    }


def start(plan: LaunchPlan) -> Started:
    """Fork PID 1. Signals stay blocked across the fork so none hits the child before it execs
    with default handlers; the caller unblocks them once its forwarding is in place."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    console = child_console = None
    if plan.tty:
        import socket  # only with -t: ~3 ms of imports

        if plan.console_socket:  # runc's --console-socket: the master goes to whoever listens there
            child_console = _connect(plan.console_socket)
        else:
            console, child_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # runc's exec fifo, taken here: the child may no longer see the path (a joined mount namespace,
    # a user namespace's root denied the directories above it)
    fifo = os.open(plan.exec_fifo, os.O_PATH | os.O_CLOEXEC) if plan.exec_fifo else -1
    channel = hooks = None
    if plan.userns or "user" in plan.namespace_paths or plan.hooks_point:
        from minirun.runtime.channel import Channel

        if plan.userns or "user" in plan.namespace_paths:
            channel = Channel()  # (its PID namespace is made inside it, by the child: userns.py)
        hooks = Channel() if plan.hooks_point else None
    own_pid_ns = None
    if channel is None and "pid" in plan.namespace_paths:  # an OCI bundle's: joined by its path
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        linux.join_namespace(plan.namespace_paths["pid"], linux.CLONE_NEWPID)
    elif channel is None and "pid" not in plan.host_namespaces:  # --pid host: an ordinary host process
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        linux.unshare(linux.CLONE_NEWPID)
    _load_child_modules(plan)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, supervise.FORWARDED_SIGNALS)
    pid = -1
    try:
        pid, to_join = cgroups.fork_in(plan.cgroups)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for sock in (console, child_console):
            if sock is not None:
                sock.close()
        for fd in (read_fd, write_fd, fifo):
            if fd >= 0:
                os.close(fd)
        for pipes in (channel, hooks):
            if pipes is not None:
                pipes.close_parent_side()
                pipes.close_child_side()
        raise
    finally:
        if own_pid_ns is not None:
            if pid != 0:  # the parent (the child of a joined namespace is no PID 1 there)
                # Back to our own namespace for later children: once PID 1 has exited, a fork or a
                # new thread in the old one fails (ENOMEM, EINVAL), and builds and tests go on.
                linux.setns(own_pid_ns, linux.CLONE_NEWPID)
            os.close(own_pid_ns)
    if pid == 0:
        os.close(read_fd)
        if console is not None:
            console.close()
        exit_reporting(
            write_fd,
            lambda: _child(plan, write_fd, old_mask, to_join, child_console, fifo, channel, hooks),
            "container init",
        )
    os.close(write_fd)
    if fifo >= 0:
        os.close(fifo)
    if child_console is not None:
        # PID 1 holds the only other end: a failure before it sends the master reads as EOF
        child_console.close()
    if channel is not None:
        from minirun.runtime.userns import parent_side

        pid = parent_side(channel, pid, plan)
    return Started(pid=pid, error_fd=read_fd, console=console, hooks=hooks)


def _load_child_modules(plan: LaunchPlan) -> None:
    """The modules PID 1 imports, loaded before the fork: after it, each page an import writes
    (sys.modules, the allocator's arenas, a C extension's relocations) is a copy-on-write fault
    first, and the same imports took PID 1 3.0-5.8 ms where they take the parent 1.1-1.6 ms and
    PID 1 then 0.5-1.0 ms (scripts/bench_start.py's command, 8 runs each). PID 1 still imports
    them by name: from sys.modules."""
    from minirun.runtime import overlay, rootfs, security  # noqa: F401  (security loads python-prctl)

    if plan.tty:
        from minirun.runtime import tty  # noqa: F401
    if plan.sysctls or plan.ulimits:
        from minirun.runtime import kernelsettings  # noqa: F401
    if plan.ulimits:
        import resource  # noqa: F401
    if plan.net is not None:
        from minirun.net import attach  # noqa: F401


def read_start_error(started: Started) -> MinirunError | None:
    """Block until PID 1 has exec'd (EOF) or failed (a message)."""
    return read_report(started.error_fd)


def _child(
    plan: LaunchPlan,
    error_fd: int,
    old_mask: set[int],
    to_join: list[str],
    console: socket.socket | None,
    fifo: int,
    channel: Channel | None,
    hooks: Channel | None,
) -> None:
    # Non-dumpable until execve (which resets it for the container's own program), as runc's
    # init: until then PID 1 is the host's python, and a container sharing its PID namespace (an
    # OCI bundle's, joined by path, as a pod's) with the same uid and capabilities could ptrace
    # it, read its memory and environment and open /proc/PID/exe, the host's interpreter, for
    # the write of runc CVE-2019-5736, while it waits for `start`. (Its user switch would reset
    # this only for a uid other than 0.)
    import _prctl

    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    if plan.stdio is not None:
        for target, fd in enumerate(plan.stdio):
            os.dup2(fd, target)
    # Before anything else: no fd the CLI (or whoever started it) holds may follow PID 1 into
    # its namespaces, not even for the length of the setup (runc CVE-2024-21626).
    keep = [error_fd, *range(3, 3 + plan.preserve_fds), *([fifo] if fifo >= 0 else [])]
    keep += [console.fileno()] if console is not None else []
    keep += [fd for pipes in (channel, hooks) if pipes is not None for fd in pipes.child_fds()]
    linux.close_fds(keep=keep)
    # First after that, so everything PID 1 does (and every child of it) is limited and counted,
    # and before unshare(CLONE_NEWCGROUP), which makes the cgroup we are in the namespace's root.
    # (The fork may have placed us in the cgroup2 one already: cgroups.fork_in.)
    cgroups.join(to_join)
    if channel is not None:
        from minirun.runtime import userns

        userns.stage1(plan, channel)  # returns in PID 1, the user namespace's first process
    hook_state = None
    if plan.container_hooks or hooks is not None:
        from minirun.runtime import hooks as container_hooks

        # the spec's pid is the host's: /proc here is still the host's
        hook_state = dict(plan.hook_state, pid=int(os.readlink("/proc/self")), status="creating")
    if plan.tty:
        from minirun.runtime.tty import setup_console
    from minirun.runtime.overlay import mount_overlay
    from minirun.runtime.rootfs import Bind, RootfsSpec, setup_rootfs

    # Every import PID 1 needs happens here, before pivot_root hides the host's site-packages
    # (security.py loads python-prctl at import time for that reason).
    from minirun.runtime.security import added_groups, lock_down, new_session_keyring, read_user_db, resolve_user

    if plan.die_with_parent:
        _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signal.SIGKILL)
    if plan.oom_score_adj is not None and channel is None:  # (else stage 1 wrote it)
        _write_file("/proc/self/oom_score_adj", str(plan.oom_score_adj))
    # Our own session: the terminal's Ctrl-C goes to the CLI, which forwards it (docker's sig-proxy).
    os.setsid()
    if plan.session_keyring:  # and a session keyring of our own, as runc's (security.py)
        new_session_keyring()
    # A mount namespace not of our making (an OCI bundle may share the caller's or join one by
    # path) is never made private nor pivoted in: pivot_root would move the root of every process
    # there, and the propagation of `/` is its owner's. The root is bound privately and chrooted.
    own_mount_ns = "mount" not in plan.host_namespaces and "mount" not in plan.namespace_paths
    namespaces = linux.CLONE_NEWNS if own_mount_ns else 0
    for name, flag in (("cgroup", linux.CLONE_NEWCGROUP), ("uts", linux.CLONE_NEWUTS), ("ipc", linux.CLONE_NEWIPC)):
        if name in plan.namespace_paths:
            linux.join_namespace(plan.namespace_paths[name], flag)
        elif name not in plan.host_namespaces:
            namespaces |= flag
    new_uts = bool(namespaces & linux.CLONE_NEWUTS)
    own_netns = plan.network != "host" and not plan.join_netns
    if own_netns:
        namespaces |= linux.CLONE_NEWNET
    host_side = None
    if plan.net is not None:
        from minirun.net import attach

        host_side = attach.open_host_side()  # before the unshare: it must reach the host's bridge
    elif plan.join_netns:
        _join_netns(plan.join_netns)
    linux.unshare(namespaces)
    if own_mount_ns:
        # Private before anything is mounted: no mount of ours may propagate to the host.
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    elif "mount" in plan.namespace_paths:
        linux.join_namespace(plan.namespace_paths["mount"], linux.CLONE_NEWNS)
    if new_uts and plan.hostname:  # --uts host: the host's name stays the host's
        linux.sethostname(plan.hostname)
    if own_netns:
        _loopback_up()
    if host_side is not None and plan.net is not None:
        attach.attach(plan.net, host_side)
    if plan.sysctls:  # after eth0 exists; while the host's /proc/sys is still writable
        from minirun.runtime.kernelsettings import write_sysctls

        write_sysctls(plan.sysctls, plan.network, "host" if "ipc" in plan.host_namespaces else "")
    if plan.ulimits:
        import resource  # noqa: F401  (a C extension: loaded now, before pivot_root hides lib-dynload)

        from minirun.runtime.kernelsettings import apply_ulimits
    if plan.root_dir:
        # pivot_root needs a mount point: the directory bound onto itself, as runc does
        _bind_root(plan, channel is not None)
        if not own_mount_ns:  # what is mounted below it stays below it
            linux.mount(None, plan.root_dir, None, linux.MS_REC | linux.MS_PRIVATE)
    else:
        os.chdir(plan.store_root)
        mount_overlay(plan.mountpoint, plan.lowers, plan.upper, plan.work)
    binds = [Bind(source=s, target=t, readonly=bool(ro)) for s, t, ro in plan.binds]
    if not plan.cgroups:
        cgroup_mounts = []
    elif namespaces & linux.CLONE_NEWCGROUP:
        cgroup_mounts = cgroups.namespace_mounts()
    else:
        cgroup_mounts = cgroups.bind_mounts(plan.cgroups)
    setup_rootfs(
        RootfsSpec(
            root=plan.root_dir or plan.mountpoint,
            readonly=plan.readonly,
            binds=binds,
            tmpfs=list(plan.tmpfs),
            volume_dirs=list(plan.volume_dirs),
            cgroups=cgroup_mounts,
            privileged=plan.privileged,
            devices=[(h, c) for h, c, _ in plan.devices],
            shm_size=plan.shm_size,
            host_ipc="ipc" in plan.host_namespaces,
            mounts=plan.mounts,
            masked_paths=plan.masked_paths,
            readonly_paths=plan.readonly_paths,
            device_nodes=plan.device_nodes,
            chroot=not own_mount_ns,
            userns=channel is not None,
        ),
        before_pivot=(
            (
                lambda: container_hooks.at_hooks_point(
                    hooks, plan.container_hooks.get("createContainer") or [], hook_state
                )
            )
            if hooks is not None and hook_state is not None
            else None
        ),
    )
    if plan.rootfs_propagation:
        linux.mount(None, "/", None, plan.rootfs_propagation)

    passwd, group = read_user_db("/")
    user = resolve_user(plan.user or None, passwd, group)
    if plan.group_add:
        user.groups += [g for g in added_groups(plan.group_add, group) if g not in user.groups]
    if plan.exact_env:
        env = list(plan.env) + ([] if env_value(plan.env, "HOME") is not None else [f"HOME={user.home or '/'}"])
    else:
        env = with_default_env(plan.env, plan.hostname, user.home, plan.tty)
    if console is not None:  # (there is one exactly when plan.tty)
        setup_console(console, plan.rows, plan.cols, user.uid)
    _enter_workdir(plan.workdir, plan.readonly)
    if not plan.interactive and not plan.tty:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    executable = find_executable(plan.argv[0], env_value(env, "PATH"))
    argv = plan.argv
    if plan.init_path:
        # the command was found above, so a missing one fails as without --init (127, docker's
        # words); -s: tini reaps orphans as a subreaper where it is not PID 1 (--pid host)
        executable = plan.init_path
        argv = [plan.init_path, *(["-s"] if "pid" in plan.host_namespaces else []), "--", *plan.argv]
    if plan.ulimits and channel is None:  # (else stage 1 set them, as the host's root)
        apply_ulimits(plan.ulimits)  # as root still: raising a hard limit takes CAP_SYS_RESOURCE
    os.umask(DEFAULT_UMASK if plan.umask is None else plan.umask)  # never the CLI's own
    for fd in range(3, 3 + plan.preserve_fds):
        os.set_inheritable(fd, True)
    kept = (error_fd, *range(3, 3 + plan.preserve_fds), *([fifo] if fifo >= 0 else []))
    lock_down(
        user,
        plan.capabilities,
        plan.no_new_privileges,
        plan.seccomp,
        keep_fds=kept,
        capability_sets=plan.capability_sets,
        ready=(lambda: _wait_for_start(error_fd, fifo, plan.container_hooks.get("startContainer"), hook_state))
        if fifo >= 0
        else None,
    )
    supervise.default_dispositions()
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    try:
        os.execve(executable, argv, env_dict(env))
    except OSError as exc:
        raise exec_error(plan.argv[0], exc) from None


def _bind_root(plan: LaunchPlan, userns: bool) -> None:
    try:
        linux.mount(plan.root_dir, plan.root_dir, None, linux.MS_BIND | linux.MS_REC)
    except SyscallError as exc:
        if not userns or exc.errno != errno.EACCES:
            raise
        root = next(
            (f"host uid {out - inside}" for inside, out, n in plan.uid_mappings if inside <= 0 < inside + n), ""
        )
        raise MinirunError(
            f"root {plan.root_dir}: the container's root ({root or 'its user namespace'}) cannot reach it: "
            "every directory above it must be searchable by that user"
        ) from None


def _wait_for_start(
    error_fd: int, fifo: int, start_hooks: list[dict[str, Any]] | None, state: dict[str, Any] | None
) -> None:
    """runc's exec fifo: the set-up is done (EOF on the error pipe tells `create` so), then block
    opening the fifo for writing until `start` opens it for reading; the byte written tells it
    the wait is over. Reopened through /proc/self/fd: the O_PATH fd was taken before pivot_root.
    The startContainer hooks run in between: a failure goes to `start` instead of the byte."""
    os.close(error_fd)
    fd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    if start_hooks and state is not None:
        from minirun.runtime import hooks

        try:
            for hook in start_hooks:
                hooks.run(hook, dict(state, status="created"), "startContainer")
        except MinirunError as exc:
            os.write(fd, b"1" + exc.message.encode(errors="replace"))
            os._exit(exc.exit_code)  # (the error pipe is closed: `start` reports it)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo)


def _connect(path: str) -> socket.socket:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise MinirunError(f"connect to the console socket {path}: {exc.strerror}") from None
    return sock


def _write_file(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise MinirunError(f"write {value} to {path}: {exc.strerror}") from None


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
    import struct

    sock = linux.udp_socket()
    try:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    finally:
        os.close(sock)


def _enter_workdir(workdir: str, readonly: bool) -> None:
    # cleaned, as docker cleans Config.WorkingDir: makedirs would stumble on an image's `/a/../b`
    path = os.path.normpath(workdir or "/")
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
