"""What a health check runs (`probe_argv`: docker's CMD and CMD-SHELL), and one check, run in
the child the monitor's copier forks for it (health.py): the container's record read, the
check's command exec'd in the container as `exec` would (its user, env, workdir and walls, no
privileges, no terminal), its output on our stdout and stderr (the copier's pipe), its exit
code ours. The heavy imports (json, the exec machinery) happen here, never in the copier.

SIGALRM from the copier means the timeout passed: the command (our child) gets SIGKILL.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # signal.py loads enum: ~0.5 MiB that the monitors' server, which imports us, would keep
    import _signal as signal


def probe_argv(healthcheck: dict, shell: list[str] | None = None) -> list[str] | None:
    """What a check runs in the container, or None when there is no check (none, NONE, or a
    type docker does not know, which it skips with a warning)."""
    test = healthcheck.get("Test") or []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return None
    if test[0] == "CMD-SHELL":
        return [*(shell or ["/bin/sh", "-c"]), test[1]]
    return list(test[1:])


def run_probe(container_dir: str) -> int:
    from minirun.errors import MinirunError

    try:
        return _run(container_dir)
    except MinirunError as exc:
        os.write(2, (exc.message + "\n").encode())
        return exc.exit_code


def _run(container_dir: str) -> int:
    from minirun.containers.container import Containers
    from minirun.runtime import cgroups, execin, privileges, security
    from minirun.store import Store

    security.set_non_dumpable()  # as exec: runc CVE-2019-5736
    store = Store(os.path.dirname(os.path.dirname(container_dir)))
    container = Containers(store).load(os.path.basename(container_dir))
    argv = probe_argv(container.config.healthcheck or {}, _image_shell(store, container.config.image))
    if argv is None:
        return 0
    allowed = privileges.for_container(container.config, store.seccomp_dir)
    namespaces = execin.open_namespaces(container.id, container.state)
    signal.signal(signal.SIGALRM, _kill_children)
    opts = execin.ExecOptions(container=container.id, command=argv)
    try:
        return execin.exec_in(container, opts, namespaces, cgroups.existing_paths(container.id), allowed)
    finally:
        for fd in namespaces.values():
            os.close(fd)


def _image_shell(store, image_id: str) -> list[str] | None:
    """The image's SHELL, which CMD-SHELL runs under (docker's getShell); None: /bin/sh -c."""
    try:
        shell = store.images.get(image_id).config.get("config", {}).get("Shell")
    except Exception:
        return None
    return shell if isinstance(shell, list) and shell and all(isinstance(s, str) for s in shell) else None


def _kill_children(_signum: int, _frame: object) -> None:
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
