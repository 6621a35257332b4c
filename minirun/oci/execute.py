"""runc's `exec`: a process (--process FILE, or the container's own process with the command
line's args and flags) in a running container, through runtime/execin.py, the code `minirun
exec` uses. -d returns once the process runs, its pid in --pid-file; its parent is gone then,
and the subreaper above us (containerd's shim) waits for it, as with runc."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from minirun.errors import MinirunError
from minirun.oci import config as oci_config
from minirun.oci.state import State
from minirun.records import Record
from minirun.runtime import cgroups


class _Config(Record):
    """What execin reads of a container's config."""

    workdir: str
    user: str
    env: list[str]
    hostname: str
    group_add: list[str]
    ulimits: list[dict[str, Any]]
    oom_score_adj: int  # the container's (config.json's process.oomScoreAdj), as runc's exec takes it


class _Target(Record):
    id: str
    config: _Config


def exec_command(root: str, args: argparse.Namespace) -> int:
    from minirun.runtime import execin
    from minirun.runtime.security import set_non_dumpable

    state = State(root, args.id).load()
    status = state.status()
    if status == "paused" and not args.ignore_paused:
        raise MinirunError("cannot exec in a paused container (use --ignore-paused to override)")
    if status not in ("running", "created", "paused"):
        raise MinirunError("cannot exec in a stopped container")
    spec = oci_config.load(state.data["bundle"])
    bundle = oci_config.translate(spec, state.data["bundle"], args.id, cgroups.PARENT)
    process = _process(args, spec.get("process") or {})
    if process.get("apparmorProfile") or process.get("selinuxLabel") or args.process_label or args.apparmor:
        raise MinirunError("apparmor profiles and selinux labels are not supported by minirun-oci")
    argv = [str(a) for a in process.get("args") or []]
    if not argv:
        raise MinirunError("exec: args must not be empty")
    tty = bool(process.get("terminal"))
    if tty and args.detach and not args.console_socket:
        raise MinirunError("cannot allocate tty if runc will detach without setting console socket")
    if args.console_socket and not tty:
        raise MinirunError("cannot use console socket if runc will not allocate tty")
    user = process.get("user") or {}
    caps, ignored = oci_config.translate_capabilities(process.get("capabilities") or {})
    if ignored:
        from minirun.oci import runlog

        runlog.warning(f"ignoring unknown or unavailable capabilities: {', '.join(ignored)}")
    target = _Target(
        id=args.id,
        config=_Config(
            workdir=str(process.get("cwd") or "/"),
            user=f"{int(user.get('uid', 0))}:{int(user.get('gid', 0))}",
            env=[str(e) for e in process.get("env") or []],
            hostname="",
            group_add=[str(int(g)) for g in user.get("additionalGids") or []],
            ulimits=[oci_config.translate_rlimit(r) for r in process.get("rlimits") or []],
            oom_score_adj=int((spec.get("process") or {}).get("oomScoreAdj") or 0),
        ),
    )
    opts = execin.ExecOptions(
        container=args.id,
        command=argv,
        detach=args.detach,
        interactive=True,
        tty=tty,
        capability_sets=caps,
        exact_env=True,
        console_socket=os.path.abspath(args.console_socket) if args.console_socket else "",
        preserve_fds=args.preserve_fds,
        leave=args.detach,
        umask=user.get("umask"),
    )
    allowed = (caps.get("bounding") or [], bool(process.get("noNewPrivileges")), bundle.plan.seccomp)
    set_non_dumpable()
    running = {"Pid": state.pid, "PidStartTime": state.data.get("pid_start"), "Status": "running"}
    # PID 1's root only where the container chrooted in a mount namespace not its own; in its
    # own, the namespace's root is the one pivot_root made (as runc's exec: setns alone). PID 1's
    # root now is wherever it chrooted since (CAP_SYS_CHROOT is in docker's default set), and
    # an exec must not land in a tree the container made for it.
    own_mount_ns = any(
        n.get("type") == "mount" and not n.get("path") for n in (spec.get("linux") or {}).get("namespaces") or []
    )
    namespaces = execin.open_namespaces(args.id, running, with_root=not own_mount_ns)
    result = execin.exec_in(target, opts, namespaces, state.data.get("cgroup_paths") or [], allowed)
    if args.detach:
        if args.pid_file:
            from minirun.atomicfile import atomic_write

            atomic_write(os.path.abspath(args.pid_file), str(result).encode(), mode=0o644, durable=False)
        return 0
    return result


def _process(args: argparse.Namespace, container: dict[str, Any]) -> dict[str, Any]:
    """--process FILE as it is; else the container's process with the command line's changes."""
    if args.process:
        try:
            with open(args.process, encoding="utf-8") as f:
                process = json.load(f)
        except (OSError, ValueError) as exc:
            raise MinirunError(f"reading the process file {args.process}: {exc}") from None
        if not isinstance(process, dict):
            raise MinirunError(f"{args.process}: not a JSON object")
        return process
    process = json.loads(json.dumps(container))  # a copy
    process["args"] = list(args.command)
    process["terminal"] = bool(args.tty)
    if args.cwd:
        process["cwd"] = args.cwd
    if args.env:
        process["env"] = list(process.get("env") or []) + list(args.env)
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = [int(g) for g in args.additional_gids]
    if args.cap:
        caps = process.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient"):
            caps[kind] = list(dict.fromkeys([*(caps.get(kind) or []), *args.cap]))
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    return process
