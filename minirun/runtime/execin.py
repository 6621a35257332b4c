"""`exec`: a new process in a running container's namespaces, restricted like its PID 1.

The CLI marks itself non-dumpable before it touches the container (runc CVE-2019-5736: a
dumpable process in the container's PID namespace would let the container's root open
/proc/<pid>/exe, the host's python binary, and the fds of the process). It opens PID 1's
/proc/PID/ns/* while the host's /proc is still its /proc and forks stage 1, which joins the PID
namespace for its children only (setns(CLONE_NEWPID) moves the caller nowhere, as unshare does),
then the other namespaces, mount last (after it, its root and cwd are the container's), and
forks stage 2 as the CLI's child: the first process of ours the container can see is born with
its root, cwd and namespaces (runc's nsexec order). Stage 2 goes the way of PID 1 in launch.py:
workdir, user from the container's /etc/passwd, capabilities and no_new_privs, no fd but 0-2, exec. Errors come back on launch's close-on-exec
pipe ("<code>\\n<message>"), so 126/127 read exactly as they do for `run`.

The request comes from cli/execcmd.py, which finds the container and its walls.
"""

from __future__ import annotations

import errno
import os
import stat

from minirun import linux
from minirun.childfailure import exit_reporting, read_report
from minirun.errors import EXIT_CANNOT_INVOKE, MinirunError, SyscallError
from minirun.records import Record
from minirun.runtime import executable, supervise
from minirun.runtime.executable import DEFAULT_UMASK

TYPE_CHECKING = False  # typing costs ~6 ms on the path the exec benchmark times
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Any, NoReturn, Protocol

    from minirun.runtime.seccomp import Program

    class _Config(Protocol):
        @property
        def workdir(self) -> str: ...
        @property
        def user(self) -> str: ...
        @property
        def env(self) -> list[str]: ...
        @property
        def hostname(self) -> str: ...
        @property
        def group_add(self) -> list[str]: ...
        @property
        def ulimits(self) -> list[dict[str, Any]]: ...
        @property
        def oom_score_adj(self) -> int: ...

    class Target(Protocol):
        """What exec reads of the container (containers' Container): its id and its config."""

        @property
        def id(self) -> str: ...
        @property
        def config(self) -> _Config: ...

    # what the container's processes may do (privileges.for_container): capabilities,
    # no_new_privileges, the seccomp program (None: unconfined)
    Allowed = tuple[list[str], bool, Program | None]
    import signal
else:  # signal.py only wraps _signal's calls in enums: ~3 ms of every start (enum, functools)
    import _signal as signal

# joined by the child in this order: user first, for the rights it gives over the others (an OCI
# container's; theirs otherwise), mnt last, since after it no host path is reachable
CHILD_NAMESPACES: tuple[tuple[str, int], ...] = (
    ("user", linux.CLONE_NEWUSER),
    ("ipc", linux.CLONE_NEWIPC),
    ("uts", linux.CLONE_NEWUTS),
    ("net", linux.CLONE_NEWNET),
    ("cgroup", linux.CLONE_NEWCGROUP),
    ("mnt", linux.CLONE_NEWNS),
)


class NotRunning(MinirunError):
    """exec into a container whose PID 1 is gone (or never started): docker's 125."""


def open_namespaces(container_id: str, state: Mapping[str, Any], with_root: bool = False) -> dict[str, int]:
    """Close-on-exec fds of PID 1's namespaces ("pid" and CHILD_NAMESPACES' names), taken only
    if it is the very process the state recorded (pid and start time: pids are reused); one
    that is ours too (net with --network host, pid, ipc, uts with --pid/--ipc/--uts host) is
    left out. NotRunning otherwise. `with_root` (an OCI container, which may share our mount
    namespace or another's and chroot): also "root", PID 1's root directory, entered last."""
    from minirun.procs import is_alive

    pid = state.get("Pid") or 0
    if state.get("Status") == "dead":  # its record is damaged: say which file
        raise NotRunning(f"container {container_id} is dead: {state.get('Error', '')}")
    not_running = NotRunning(f"container {container_id} is not running")
    if state.get("Status") != "running" or not isinstance(pid, int) or pid <= 0:
        raise not_running
    if state.get("Paused"):
        raise MinirunError(f"Container {container_id} is paused, unpause the container before exec")
    try:
        # this directory stays that process's for good: checked once, a reused pid cannot slip in
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise not_running from None
    fds: dict[str, int] = {}
    try:
        if not is_alive(pid, state.get("PidStartTime")):
            raise not_running
        for name in ("pid", *(n for n, _ in CHILD_NAMESPACES)):
            try:
                fd = os.open(f"ns/{name}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
            except (FileNotFoundError, ProcessLookupError):
                raise not_running from None  # it exited (or is a zombie) since the check
            except OSError as exc:
                raise MinirunError(f"container {container_id}: open /proc/{pid}/ns/{name}: {exc.strerror}") from None
            theirs, ours = os.fstat(fd), os.stat(f"/proc/self/ns/{name}")
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                if name == "mnt" and not with_root:
                    # every container has its own: this pid is not a container's PID 1
                    os.close(fd)
                    raise not_running
                os.close(fd)
                continue
            fds[name] = fd
        if with_root:
            try:
                fds["root"] = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc)
            except (FileNotFoundError, ProcessLookupError):
                raise not_running from None
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    finally:
        os.close(proc)
    return fds


def exec_in(
    container: Target, opts: ExecOptions, namespaces: dict[str, int], cgroup_paths: list[str], allowed: Allowed
) -> int:
    rows, cols = 24, 80
    console = child_console = None
    if opts.tty:
        import socket

        from minirun.runtime import tty

        rows, cols = tty.window_size(1)  # docker measures its stdout
        if opts.console_socket:  # runc's exec --console-socket: the master goes there
            child_console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                child_console.connect(opts.console_socket)
            except OSError as exc:
                child_console.close()
                raise MinirunError(f"connect to the console socket {opts.console_socket}: {exc.strerror}") from None
        else:
            console, child_console = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    from minirun.runtime import cgroups

    relay = None
    if not (opts.tty or opts.detach or opts.leave):
        from minirun.runtime.stdiorelay import Relay

        # a pipe for each of our 0-2 that is a host file or terminal (stdiorelay.py says why)
        relay = Relay(opts.interactive)
        relay = relay if relay.needed else None
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # stage 1 (below) says on this pipe the pid of stage 2, the process that execs the command
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, supervise.FORWARDED_SIGNALS)
    try:
        stage1, to_join = cgroups.fork_in(cgroup_paths)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for fd in (read_fd, write_fd, pid_read, pid_write):
            os.close(fd)
        if relay is not None:
            relay.close()
        raise
    if stage1 == 0:
        os.close(read_fd)
        os.close(pid_read)
        if console is not None:
            console.close()
        if relay is not None:
            for target, fd in enumerate(relay.child):
                os.dup2(fd, target)
        _child_main(
            container, opts, namespaces, write_fd, pid_write, old_mask, child_console, rows, cols, to_join, allowed
        )
    if relay is not None:
        relay.close_child_side()
    os.close(write_fd)
    os.close(pid_write)
    # the child has its own copies: holding the namespaces for as long as the command runs is no use
    for fd in namespaces.values():
        os.close(fd)
    namespaces.clear()
    if child_console is not None:
        child_console.close()  # the child holds the only other end: its failure reads as EOF
    pid = _stage2_pid(pid_read, stage1)
    if pid is None:  # stage 1 failed before it forked: its report is all the error pipe holds
        if console is not None:
            console.close()
        if relay is not None:
            relay.close()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise read_report(read_fd) or MinirunError("exec failed")
    # (there is a console, and the tty module is loaded, exactly with -t)
    master = tty.receive_master(console) if console is not None else None
    failure = read_report(read_fd)  # EOF once the command runs, as launch.read_start_error
    if failure is None and console is not None and master is None:
        supervise.kill(pid)
        failure = MinirunError("the exec'd process's pty never arrived")
    if opts.leave:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if failure is not None:
            os.waitpid(pid, 0)
            raise failure
        return pid
    if failure is not None or opts.detach:
        # -d: the child forked the command and left; its exit code tells nothing more
        if master is not None:
            os.close(master)
        if relay is not None:
            relay.close()
        os.waitpid(pid, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if failure is not None:
            raise failure
        return 0
    if master is not None:
        return tty.attach(pid, master, opts.interactive)
    return relay.wait(pid) if relay is not None else supervise.wait_for_exit(pid)


def _stage2_pid(fd: int, stage1: int) -> int | None:
    """Stage 2's pid, read to EOF from `fd` (closed), once stage 1 is reaped; None if it failed."""
    chunks = []
    while chunk := os.read(fd, 64):
        chunks.append(chunk)
    os.close(fd)
    os.waitpid(stage1, 0)
    text = b"".join(chunks)
    return int(text) if text.isdigit() else None


def _child_main(
    container: Target,
    opts: ExecOptions,
    namespaces: dict[str, int],
    error_fd: int,
    pid_fd: int,
    old_mask: set[int],
    console: socket.socket | None,
    rows: int,
    cols: int,
    to_join: list[str],
    allowed: Allowed,
) -> NoReturn:
    """Never returns: execs, or reports on the error pipe and exits with the error's code.
    `to_join`: the container's cgroups the fork did not already place it in (cgroups.fork_in).

    Two stages, as runc's nsexec: stage 1, still on the host, joins every namespace of the
    container, then forks stage 2 as our parent's child (CLONE_PARENT), tells its pid on `pid_fd`
    and exits. Stage 2 is the first process of ours in the container's PID namespace, and it is
    born with the container's root, cwd and namespaces: a process visible there with the host's
    (its /proc/PID/root, cwd, ns/*) would hand them to a container's root that may ptrace
    (CAP_SYS_PTRACE passes the non-dumpable check)."""
    # security: stage 2's, loaded here while the host's site-packages are reachable
    from minirun.runtime import cgroups, security

    def run() -> None:
        # Right after the fork: no fd the CLI holds (or was started with) goes any further, into
        # the cgroup, the namespaces or near a container file (runc CVE-2024-21626).
        keep = [error_fd, pid_fd, *namespaces.values(), *range(3, 3 + opts.preserve_fds)]
        keep += [console.fileno()] if console is not None else []
        linux.close_fds(keep=keep)
        # then, before the cgroup namespace is joined: a process outside the namespace's root
        # cgroup could not be moved into it from inside
        cgroups.join(to_join)
        _join(container, namespaces)
        security.new_session_keyring()  # not the CLI's (runc's exec leaves it too)
        # stage 2 shows up in the container's PID namespace: never with more than it needs
        capabilities, no_new_privileges, program = allowed
        security.confine_before_entering(capabilities, no_new_privileges, program, opts.capability_sets)
        try:
            pid = linux.fork_sibling()
        except SyscallError as exc:
            if exc.errno == errno.ENOMEM:  # the namespace's init has exited: no process may join
                raise NotRunning(f"container {container.id} is not running") from None
            raise
        if pid != 0:
            os.write(pid_fd, str(pid).encode())
            os._exit(0)
        os.close(pid_fd)
        _child(container, opts, error_fd, old_mask, console, rows, cols, allowed)

    exit_reporting(error_fd, run, "exec")


def _join(container: Target, namespaces: dict[str, int]) -> None:
    """Stage 1: the container's process limits and OOM score, then its namespaces (PID for our
    children only), mount last (after it, our root and cwd are the container's), then PID 1's
    root if given."""
    config = container.config
    if config.oom_score_adj:  # as runc's exec: the container's, PID 1's value
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(config.oom_score_adj))
        except OSError as exc:
            raise MinirunError(f"write {config.oom_score_adj} to /proc/self/oom_score_adj: {exc.strerror}") from None
    if config.ulimits:  # docker's exec takes the container's process limits too
        from minirun.runtime.kernelsettings import apply_ulimits

        # as the host's root, before any namespace: raising a hard limit takes CAP_SYS_RESOURCE
        # there (a user namespace's root has it only inside)
        apply_ulimits(config.ulimits)
    # (none to join with --pid host, like net with --network host)
    for name, flag in (("pid", linux.CLONE_NEWPID), *CHILD_NAMESPACES):
        fd = namespaces.pop(name, None)
        if fd is not None:
            linux.setns(fd, flag)
            os.close(fd)
    root = namespaces.pop("root", None)
    if root is not None:  # PID 1's root: its pivot_root's (the same then) or its chroot's
        os.fchdir(root)
        os.chroot(".")
        os.close(root)


def _child(
    container: Target,
    opts: ExecOptions,
    error_fd: int,
    old_mask: set[int],
    console: socket.socket | None,
    rows: int,
    cols: int,
    allowed: Allowed,
) -> None:
    """Stage 2, in every namespace of the container. `allowed`: (capabilities,
    no_new_privileges, seccomp program or None)."""
    # (loaded before the mount namespace was joined: _child_main)
    from minirun.runtime.security import added_groups, lock_down, read_user_db, resolve_user

    config = container.config
    # our own session: the terminal's Ctrl-C goes to the CLI, which forwards it (as for run)
    os.setsid()
    # "/" and the cwd are the container's root; nothing of the host is open but 0-2,
    # the error pipe (and with -t the console socket)
    _enter_workdir(opts.workdir or config.workdir or "/")
    passwd, group = read_user_db("/")
    user = resolve_user(opts.user or config.user or None, passwd, group)
    if config.group_add:  # and its --group-add, as docker's exec
        user.groups += [g for g in added_groups(config.group_add, group) if g not in user.groups]
    env = executable.merged_env(config.env, opts.env)
    if not opts.exact_env:
        env = executable.with_default_env(env, config.hostname, user.home, opts.tty)
    elif executable.env_value(env, "HOME") is None:  # runc adds HOME alone
        env.append(f"HOME={user.home or '/'}")
    if console is not None:
        from minirun.runtime import tty  # already loaded by the parent, before the fork

        tty.setup_console(console, rows, cols, user.uid, bind_console=False)
    elif opts.detach and not opts.leave:
        _stdio_to_null((0, 1, 2))  # holding the CLI's stdout would keep its reader waiting
    elif not opts.interactive:
        _stdio_to_null((0,))
    path = executable.find_executable(opts.command[0], executable.env_value(env, "PATH"))
    capabilities, no_new_privileges, _ = allowed  # the filter is on already (stage 1)
    os.umask(DEFAULT_UMASK if opts.umask is None else opts.umask)
    for fd in range(3, 3 + opts.preserve_fds):
        os.set_inheritable(fd, True)
    lock_down(
        user,
        capabilities,
        no_new_privileges,
        None,
        keep_fds=(error_fd, *range(3, 3 + opts.preserve_fds)),
        capability_sets=opts.capability_sets,
    )
    if opts.detach and not opts.leave and os.fork() != 0:
        # the command's parent leaves at once, so the container's PID 1 adopts (and reaps) it
        # (a plain fork: clone without namespace flags, which the seccomp filter allows)
        os._exit(0)
    supervise.default_dispositions()
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    try:
        os.execve(path, opts.command, executable.env_dict(env))
    except OSError as exc:
        raise executable.exec_error(opts.command[0], exc) from None


def _enter_workdir(path: str) -> None:
    """runc's rule for exec: the directory must exist (run creates a missing one, exec does not)."""
    try:
        os.chdir(path)
    except OSError as exc:
        raise MinirunError(
            f'chdir to cwd ("{path}") set in config failed: {(exc.strerror or str(exc)).lower()}',
            exit_code=EXIT_CANNOT_INVOKE,
        ) from None
    # runc CVE-2024-21626: never a cwd outside the container's root
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if not cwd.startswith("/"):
        raise MinirunError("current working directory is outside of container mount namespace root")


def _stdio_to_null(targets: tuple[int, ...]) -> None:
    """The container's /dev/null, never the host's (an fd of a host inode is a way to it: root in
    the container could fchmod it); checked, since the container's root may replace the node."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise MinirunError(f"open /dev/null in the container: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise MinirunError("/dev/null in the container is not the null device")
    for target in targets:
        os.dup2(fd, target)
    os.close(fd)


class ExecOptions(Record):
    """What `exec` runs."""

    container: str
    command: list[str]
    detach: bool
    interactive: bool
    tty: bool
    env: list[str]  # resolved K=V, in order
    workdir: str  # "": the container's
    user: str  # "": the container's
    privileged: bool  # every capability (the container's seccomp filter stays, as in docker)
    # runc's exec (minirun/oci): its five capability sets, the env as given (HOME alone added),
    # the pty master to a socket, fds 3.. kept, and `leave`: exec_in returns the process's pid
    # once it runs, and nobody here waits for it (a subreaper above does)
    capability_sets: dict[str, list[str]] | None
    exact_env: bool
    console_socket: str
    preserve_fds: int
    leave: bool
    # runc's process.user.umask; None: 0022, as runc's and docker's exec (never the CLI's own)
    umask: int | None
    DEFAULTS = {
        "detach": False,
        "interactive": False,
        "tty": False,
        "env": list,
        "workdir": "",
        "user": "",
        "privileged": False,
        "capability_sets": None,
        "exact_env": False,
        "console_socket": "",
        "preserve_fds": 0,
        "leave": False,
        "umask": None,
    }
