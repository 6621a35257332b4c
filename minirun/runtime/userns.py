"""An OCI container's user namespace: root inside mapped to an unprivileged host range
(linux.uidMappings/gidMappings), or a user namespace joined by its path.

The user namespace must come first: the mount, UTS, IPC, network, cgroup and PID namespaces made
after it are owned by it, so the container's root may mount, name its host and mount its /proc
there, as in runc. launch.start's child therefore goes in two steps (runc's nsexec stages):

  1. still the runtime's root in the host's user namespace, it sets what only that root may (the
     OOM score, raised rlimits), then unshares the user namespace (or joins one), asks the parent
     over a pipe to write its uid_map and gid_map (the writer needs CAP_SETUID/CAP_SETGID in the
     parent namespace: only the runtime has them), becomes uid 0 and gid 0 inside, unshares the
     PID namespace and forks PID 1 as its parent's child (CLONE_PARENT), tells the parent PID 1's
     pid and exits;
  2. PID 1 goes on as without a user namespace (launch._child).

Nothing is chowned: the root filesystem is used as given, so it and the directories above it must
be reachable by the mapped root (runc's rule), and what the container creates is owned by the host
ids its own map to.
"""

from __future__ import annotations

import os

from minirun import linux
from minirun.errors import MinirunError
from minirun.runtime.channel import Channel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class LaunchPlan(Protocol):
        """What this module reads of launch.LaunchPlan."""

        @property
        def uid_mappings(self) -> list[list[int]]: ...
        @property
        def gid_mappings(self) -> list[list[int]]: ...
        @property
        def oom_score_adj(self) -> int | None: ...
        @property
        def ulimits(self) -> list[dict[str, Any]]: ...
        @property
        def namespace_paths(self) -> dict[str, str]: ...
        @property
        def host_namespaces(self) -> list[str]: ...


_MAP_REQUEST, _MAPPED, _FAILED, _PID = b"M", b"K", b"E", b"P"


def map_text(mappings: list[list[int]]) -> str:
    """/proc/PID/uid_map's format: `inside outside count` lines. Pure."""
    return "".join(f"{inside} {outside} {count}\n" for inside, outside, count in mappings)


def parent_side(channel: Channel, stage1: int, plan: LaunchPlan) -> int:
    """In the runtime, after the fork: write stage 1's maps when it asks, then learn PID 1's pid
    and reap stage 1. Returns PID 1's pid; stage 1's own if it failed before forking PID 1 (its
    report is on the error pipe, and the caller reaps it)."""
    channel.close_child_side()
    try:
        if os.read(channel.up_read, 1) == _MAP_REQUEST:
            os.write(channel.down_write, _write_maps(stage1, plan))
        data = b""
        while chunk := os.read(channel.up_read, 64):
            data += chunk
    finally:
        channel.close_parent_side()
    if not data.startswith(_PID):
        return stage1
    os.waitpid(stage1, 0)
    return int(data[1:])


def _write_maps(pid: int, plan: LaunchPlan) -> bytes:
    for name, mappings in (("uid_map", plan.uid_mappings), ("gid_map", plan.gid_mappings)):
        try:
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, map_text(mappings).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            return _FAILED + f"write /proc/{pid}/{name} ({map_text(mappings).strip()!r}): {exc.strerror}".encode()
    return _MAPPED


def stage1(plan: LaunchPlan, channel: Channel) -> None:
    """In launch's child, right after it joined its cgroups: returns in PID 1 only (see above)."""
    if plan.oom_score_adj is not None:  # lowering it takes CAP_SYS_RESOURCE of the host's namespace
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(plan.oom_score_adj))
        except OSError as exc:
            raise MinirunError(f"write {plan.oom_score_adj} to /proc/self/oom_score_adj: {exc.strerror}") from None
    if plan.ulimits:  # raising a hard limit too
        from minirun.runtime.kernelsettings import apply_ulimits

        apply_ulimits(plan.ulimits)
    if "user" in plan.namespace_paths:
        linux.join_namespace(plan.namespace_paths["user"], linux.CLONE_NEWUSER)
    else:
        linux.unshare(linux.CLONE_NEWUSER)
        os.write(channel.up_write, _MAP_REQUEST)
        answer = os.read(channel.down_read, 4096)
        if answer != _MAPPED:
            raise MinirunError(answer[1:].decode(errors="replace") or "the runtime wrote no uid and gid maps")
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        raise MinirunError("the container's user namespace maps no uid 0 or gid 0 (its root)") from None
    try:
        os.setgroups([])
    except PermissionError:
        pass  # a joined namespace made by an unprivileged user denies setgroups: none to drop then
    if "pid" in plan.namespace_paths:
        linux.join_namespace(plan.namespace_paths["pid"], linux.CLONE_NEWPID)
    elif "pid" not in plan.host_namespaces:
        linux.unshare(linux.CLONE_NEWPID)
    pid = linux.fork_sibling()
    if pid != 0:
        os.write(channel.up_write, _PID + str(pid).encode())
        os._exit(0)
    channel.close_child_side()
