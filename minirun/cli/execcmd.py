"""`exec`, on the lean path (no typer): the container found, the CLI made non-dumpable, the
container's own walls looked up, then runtime/execin.py does the joining and the fork."""

from __future__ import annotations

import os

from minirun.cli.execargs import parse_exec_args
from minirun.errors import UsageError
from minirun.runtime import execin


def exec_command(argv: list[str], root: str | None) -> int:
    from minirun.containers.container import Containers
    from minirun.store import Store

    opts = parse_exec_args(argv)
    if opts.tty and opts.interactive and not os.isatty(0):
        raise UsageError("the input device is not a TTY")  # docker's check, as in run
    store = Store(root)
    container = Containers(store).find(opts.container)
    # prctl comes with security.py, which the child needs anyway (imported before setns: the
    # host's site-packages are out of reach after it)
    from minirun.runtime import privileges, security

    security.set_non_dumpable()
    # the container's own capabilities, no_new_privs and seccomp filter; --privileged raises
    # only the capabilities (docker keeps the container's filter for an exec too)
    capabilities, no_new_privileges, program = privileges.for_container(container.config, store.seccomp_dir)
    if opts.privileged:
        capabilities = privileges.all_capabilities()
    namespaces = execin.open_namespaces(container.id, container.state)
    from minirun.containers.container import record_event

    exec_id = os.urandom(32).hex()
    command = " ".join(opts.command)
    record_event(store.root, container, "exec_create: " + command, execID=exec_id)
    record_event(store.root, container, "exec_start: " + command, execID=exec_id)
    code = None
    try:
        from minirun.runtime import cgroups

        code = execin.exec_in(
            container,
            opts,
            namespaces,
            cgroups.existing_paths(container.id),
            (capabilities, no_new_privileges, program),
        )
        return code
    finally:
        for fd in namespaces.values():
            os.close(fd)
        if not opts.detach:  # a detached command's end is its container's business
            record_event(
                store.root, container, "exec_die", execID=exec_id, exitCode=str(code if code is not None else 126)
            )
