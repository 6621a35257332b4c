"""`run` in the foreground: resolve the image, record the container, start PID 1, wait, clean up.

Kept off typer and rich (see runargs.py): this is the path the start benchmark times.
"""

from __future__ import annotations

import os

from minirun.cli.runargs import RunOptions, parse_run_args
from minirun.errors import MinirunError, UsageError
from minirun.store import Store

TYPE_CHECKING = False  # typing costs ~6 ms on the path the start benchmark times
if TYPE_CHECKING:
    from typing import Any


def container_argv(image_config: dict, opts: RunOptions) -> list[str]:
    """docker's rules: --entrypoint replaces the image's and drops its Cmd; arguments replace Cmd."""
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = list(opts.command) if opts.command else list(image_config.get("Cmd") or [])
    argv = entrypoint + cmd
    if not argv:
        raise UsageError("no command specified")
    return argv


def merged_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Image Env, then -e/--env-file; a later key replaces an earlier one in place."""
    result: list[str] = []
    index: dict[str, int] = {}
    for item in list(image_env) + list(extra):
        key = item.split("=", 1)[0]
        if key in index:
            result[index[key]] = item
        else:
            index[key] = len(result)
            result.append(item)
    return result


def host_resolv_conf() -> bytes:
    try:
        with open("/etc/resolv.conf", "rb") as f:
            return f.read()
    except OSError:
        return b""


def run_command(argv: list[str], root: str | None) -> int:
    from minirun.containers.container import ContainerConfig, Containers, new_container_id
    from minirun.humanize import rfc3339_now
    from minirun.image.embedded import find_image
    from minirun.store.initlayer import init_layer_link

    opts = parse_run_args(argv)
    if opts.detach and (opts.tty or opts.interactive):
        raise UsageError("-d with -t or -i is not supported yet")
    if opts.tty and opts.interactive and not os.isatty(0):
        # docker's check, before anything is created: raw mode needs a terminal to put raw
        raise UsageError("the input device is not a TTY")
    store = Store(root)
    image = find_image(store, opts.image)
    if not image.diff_ids:
        raise UsageError(f"image {opts.image} has no layers: nothing to run")
    image_config = image.config.get("config", {})
    network, network_hostname = resolve_network(store, opts.network)
    from minirun.containers import logconfig

    log_config = logconfig.resolve(opts.log_driver, opts.log_opts, logconfig.store_defaults(store.root))
    container_id = new_container_id()
    config = ContainerConfig(
        id=container_id,
        name=opts.name,
        image=image.id,
        image_ref=opts.image,
        created=rfc3339_now(),
        argv=container_argv(image_config, opts),
        env=merged_env(image_config.get("Env") or [], opts.env),
        workdir=opts.workdir or image_config.get("WorkingDir") or "/",
        user=opts.user or image_config.get("User") or "",
        hostname=network_hostname or opts.hostname or container_id[:12],
        binds=[[s, t, ro] for s, t, ro in opts.volumes],
        tmpfs=opts.tmpfs,
        readonly=opts.read_only,
        network=network,
        ports=opts.publish,
        auto_remove=opts.rm,
        interactive=opts.interactive,
        tty=opts.tty,
        resources=opts.resources,
        cap_add=opts.cap_add,
        cap_drop=opts.cap_drop,
        privileged=opts.privileged,
        security_opt=opts.security_opt,
        devices=opts.devices,
        log_config=log_config,
    )
    containers = Containers(store)
    init = init_layer_link(store)
    from minirun.containers import guard

    # from before the record exists to after --rm: a killed client leaves nothing behind (guard.py)
    watch = guard.start(store.root, container_id)
    try:
        container = containers.create(config, host_resolv_conf())
        if opts.detach:
            return _detach(store, containers, container, on_spawned=watch.done)
        try:
            return _run(store, containers, container, image, init)
        finally:
            if opts.rm:
                containers.remove(container)
    finally:
        watch.done()


def resolve_network(store, mode: str) -> tuple[str, str]:
    """(--network as recorded, the hostname it imposes): a named network must exist (docker's
    "network X not found"); container:NAME is recorded by id and takes that container's hostname."""
    if mode in ("none", "host"):
        return mode, ""
    if mode.startswith("container:"):
        from minirun.containers.container import Containers

        other = Containers(store).find(mode.split(":", 1)[1])
        return f"container:{other.id}", other.config.hostname
    from minirun.net.networks import Networks

    return Networks(store).find(mode).name, ""


def _unpublish(store, container, best_effort: bool = False) -> None:
    """PID 1 is gone (or never started): its published ports are freed, as docker frees them on
    stop. `best_effort` while another error is on its way out: that one is the one to report."""
    settings = container.state.get("NetworkSettings")
    if settings and settings.get("Ports"):
        from minirun.containers.network import stopped

        try:
            stopped(store.root, container.id, settings)
        except Exception:
            if not best_effort:
                raise


def _detach(store, containers, container, on_spawned=None) -> int:
    """docker run -d: the monitor owns the container from here; print the full id once it runs."""
    from minirun.containers.detach import spawn_monitor

    try:
        spawn_monitor(store.root, container.id, on_spawned)
    except BaseException:
        if container.config.auto_remove:
            containers.remove(container)  # the monitor may have removed it already
        raise
    print(container.id)
    return 0


def _run(store, containers, container, image, init_link: str, *, stdio=None, wait=None) -> int:
    """Run a recorded container in the foreground and return its exit code. The builder passes
    `stdio` (fds for PID 1's 0, 1, 2; None: inherit) and `wait` (pid -> exit code; default:
    forward signals and wait) so a RUN step can capture its output and be interrupted."""
    from minirun.containers.plan import build_plan, create_cgroups
    from minirun.humanize import rfc3339_now
    from minirun.runtime import cgroups, launch

    config = container.config
    tty: Any = None
    plan = started = None
    # build_plan publishes the ports: from there on, whatever fails frees them (and the cgroups)
    try:
        plan = build_plan(store, container, image, init_link)
        plan.stdio = stdio
        plan.die_with_parent = True  # no daemon: PID 1 goes with the client that runs it (guard.py)
        if config.tty:
            from minirun.runtime import tty

            plan.rows, plan.cols = tty.window_size(1)  # docker measures its stdout
        plan.cgroups = create_cgroups(container)
        started = launch.start(plan)
        # the master comes before the exec, so before the error pipe's EOF
        master = tty.receive_master(started.console) if tty else None
        failure = launch.read_start_error(started)
    except BaseException:
        if started is not None:
            launch.kill(started.pid)
            os.waitpid(started.pid, 0)
        if plan is not None:
            cgroups.remove(plan.cgroups)
        _unpublish(store, container, best_effort=True)
        raise
    if failure is None and tty and master is None:
        launch.kill(started.pid)  # it exec'd without a terminal anyone reads: stop it
        failure = MinirunError("the container's pty never arrived")
    if failure is not None:
        if master is not None:
            os.close(master)
        os.waitpid(started.pid, 0)
        cgroups.remove(plan.cgroups)
        containers.update_state(
            container, Status="exited", ExitCode=failure.exit_code, Error=failure.message, FinishedAt=rfc3339_now()
        )
        _unpublish(store, container)
        raise failure
    from minirun.procs import start_time

    # the CLI is this container's monitor: `ps` checks both processes, by pid and start time
    containers.update_state(
        container,
        Status="running",
        Running=True,
        Pid=started.pid,
        PidStartTime=start_time(started.pid),
        MonitorPid=os.getpid(),
        MonitorStartTime=start_time(os.getpid()),
        StartedAt=rfc3339_now(),
    )
    try:
        code = (
            tty.attach(started.pid, master, config.interactive) if tty else (wait or launch.wait_for_exit)(started.pid)
        )
        oom = cgroups.oom_killed(plan.cgroups)
    finally:
        cgroups.remove(plan.cgroups)  # PID 1 is reaped: its PID namespace, and so the cgroups, are empty
    containers.update_state(
        container, Status="exited", Running=False, Pid=0, ExitCode=code, OOMKilled=oom, FinishedAt=rfc3339_now()
    )
    _unpublish(store, container)
    return code
