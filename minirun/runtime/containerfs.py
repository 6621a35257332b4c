"""A container's files as docker's cp sees them: its root (the union) with its bind mounts and
volumes on top, and nothing else (no /proc, /dev or tmpfs: docker's documented limits), mounted in
a forked child's private mount namespace. The host never sees a mount, and every mount dies with
the child.

A stopped container's union is mounted from its layers. A running one's is already mounted, in
its own mount namespace only, and overlay must not be mounted twice on one upper dir: the child
enters that namespace just long enough to clone the root mount (open_tree), which keeps the one
superblock the container writes through, then mounts the clone in its own namespace. It never
runs anything from the container, and the work it does there (the caller's `work(root_fd)`)
resolves every path under the root fd with openat2 (layer/treetar.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minirun import linux
from minirun.childfailure import read_report, send_report
from minirun.errors import MinirunError, NotFound, error_kind


@dataclass
class ViewSpec:
    store_root: str
    mountpoint: str  # a directory the view is mounted on, in the child's namespace only
    # a running container: PID 1 by pid and start time (pids are reused)
    pid: int = 0
    pid_start: int | None = None
    # a stopped one: its union, lowers relative to store_root and topmost first (overlay.py)
    lowers: list[str] = field(default_factory=list)
    upper: str = ""
    work: str = ""
    binds: list[list[Any]] = field(default_factory=list)  # [host source, container target, readonly]
    readonly: bool = False  # --read-only: the root refuses writes (a running one's clone already does)


class ViewChild:
    """A forked child working in a container's view; `wait()` raises what it reported."""

    def __init__(self, pid: int, report_fd: int) -> None:
        self.pid, self._report_fd = pid, report_fd
        self._failure: MinirunError | None = None
        self._done, self._status = False, 0

    def wait(self, strict: bool = True) -> None:
        """Reap the child (once; later calls give the same answer) and raise the error it
        reported; with `strict`, also a failure it did not explain (it was interrupted)."""
        if not self._done:
            self._done = True
            self._failure = read_report(self._report_fd)
            _, status = os.waitpid(self.pid, 0)
            self._status = os.waitstatus_to_exitcode(status)
        if self._failure is not None:
            raise self._failure
        if strict and self._status != 0:
            raise MinirunError("cp: the child process failed")

    def reap(self) -> None:
        """Wait for the child, whatever it says: the caller has an error of its own to raise."""
        try:
            self.wait(strict=False)
        except MinirunError:
            pass


def start_in_view(spec: ViewSpec, work: Callable[[int], None], close_in_child: tuple[int, ...] = ()) -> ViewChild:
    """Fork a child that mounts the view and calls `work(root_fd)`; the parent goes on at once
    (it may stream to or from the child). `close_in_child`: the parent's ends of pipes."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's stack
        code = 0
        try:
            os.close(read_fd)
            for fd in close_in_child:
                os.close(fd)
            work(_mount_view(spec))
        except BrokenPipeError:
            pass  # the parent stopped reading: it knows why, and says so
        except KeyboardInterrupt:
            code = 130  # ^C reached the parent too: its own interrupt is the one reported
        except MinirunError as exc:
            code = exc.exit_code
            send_report(write_fd, code, exc.message, error_kind(exc))
        except BaseException as exc:
            code = 125
            send_report(write_fd, code, _describe(exc))
        finally:
            os._exit(code)
    os.close(write_fd)
    return ViewChild(pid, read_fd)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _mount_view(spec: ViewSpec) -> int:
    """In the child: the view mounted at spec.mountpoint, in a private mount namespace; its fd."""
    running = _open_running(spec) if spec.pid else None
    linux.unshare(linux.CLONE_NEWNS)
    # private first: without it, mounts below a shared / would propagate to the host
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    if running is not None:
        _mount_clone(running, spec.mountpoint)
    else:
        from minirun.runtime.overlay import mount_overlay

        os.chdir(spec.store_root)  # the lowers are short links relative to it (mount(2)'s page)
        mount_overlay(spec.mountpoint, spec.lowers, spec.upper, spec.work)
        if spec.readonly:  # the kernel's refusal, whatever links an archive makes
            linux.mount_setattr(spec.mountpoint, linux.MOUNT_ATTR_RDONLY, recursive=False)
    root_fd = os.open(spec.mountpoint, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    # a parent mounted after its child would hide it: shallow targets first, as a container has them
    for source, target, readonly in sorted(spec.binds, key=lambda b: os.path.normpath(b[1]).count("/")):
        _attach_bind(root_fd, source, target, bool(readonly))
    return root_fd


def _open_running(spec: ViewSpec) -> tuple[int, int] | None:
    """PID 1's root and mount namespace as fds, or None if it has exited (the caller then mounts
    the union as for a stopped container). The start time is checked after the opens: the fds
    are the container's, not those of a process that took its pid."""
    from minirun.procs import start_time

    try:
        root = os.open(f"/proc/{spec.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        namespace = os.open(f"/proc/{spec.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    if start_time(spec.pid) != spec.pid_start:
        os.close(root)
        os.close(namespace)
        return None
    return root, namespace


def _mount_clone(running: tuple[int, int], mountpoint: str) -> None:
    """The container's root mount, cloned and mounted at `mountpoint`. open_tree clones only a
    mount of the caller's own namespace, so the child steps into the container's for that one
    call and straight back; nothing is opened by path or imported while there (the container's
    root is the child's root then)."""
    root, namespace = running
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    linux.setns(namespace, linux.CLONE_NEWNS)
    try:
        tree = linux.open_tree(root, "", linux.OPEN_TREE_CLONE | linux.AT_EMPTY_PATH)
    finally:
        linux.setns(own, linux.CLONE_NEWNS)
    for fd in (root, namespace, own):
        os.close(fd)
    try:
        linux.move_mount(tree, "", linux.AT_FDCWD, mountpoint, linux.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)


def _attach_bind(root_fd: int, source: str, target: str, readonly: bool) -> None:
    """`source` (a host path) on `target` (a container path, resolved in the root): recursive,
    nosuid and nodev all the way down, read-only all the way down if the container has it so."""
    from minirun.layer.treetar import IN_CONTAINER, Tree

    if not os.path.exists(source):
        raise NotFound(f'invalid mount config for type "bind": bind source path does not exist: {source}')
    tree = Tree(root_fd, IN_CONTAINER)
    parent, _, name = ("/" + os.path.normpath("/" + target).lstrip("/")).rpartition("/")
    parent_fd = tree.make_dirs(parent, (0, 0))
    try:
        try:
            target_fd = tree.open(f"{parent}/{name}", os.O_PATH)
        except FileNotFoundError:  # a container never started has no mount points yet
            if os.path.isdir(source):
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            else:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=parent_fd))
            target_fd = tree.open(f"{parent}/{name}", os.O_PATH)
    finally:
        os.close(parent_fd)
    clone = linux.open_tree(linux.AT_FDCWD, source, linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE)
    try:
        attrs = linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV | (linux.MOUNT_ATTR_RDONLY if readonly else 0)
        linux.mount_setattr_fd(clone, attrs)
        flags = linux.MOVE_MOUNT_F_EMPTY_PATH | linux.MOVE_MOUNT_T_EMPTY_PATH
        linux.move_mount(clone, "", target_fd, "", flags)
    finally:
        os.close(clone)
        os.close(target_fd)
