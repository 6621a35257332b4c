"""`run` in the foreground: resolve the image, record the container, start PID 1, wait, clean up.

Kept off typer and rich (see runargs.py): this is the path the start benchmark times.
"""
from __future__ import annotations

import os

from minirun.errors import MinirunError, UsageError
from minirun.runargs import RunOptions, parse_run_args
from minirun.store import Store


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
    from minirun.embedded import find_image
    from minirun.humanize import rfc3339_now
    from minirun.runtime import launch
    from minirun.runtime.container import ContainerConfig, Containers, new_container_id
    from minirun.runtime.initlayer import init_layer_link

    opts = parse_run_args(argv)
    if opts.tty and opts.interactive and not os.isatty(0):
        # docker's check, before anything is created: raw mode needs a terminal to put raw
        raise UsageError("the input device is not a TTY")
    store = Store(root)
    image = find_image(store, opts.image)
    if not image.diff_ids:
        raise UsageError(f"image {opts.image} has no layers: nothing to run")
    image_config = image.config.get("config", {})
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
        hostname=opts.hostname or container_id[:12],
        binds=[[s, t, ro] for s, t, ro in opts.volumes],
        tmpfs=opts.tmpfs,
        readonly=opts.read_only,
        network=opts.network,
        auto_remove=opts.rm,
        interactive=opts.interactive,
        tty=opts.tty,
    )
    containers = Containers(store)
    init = init_layer_link(store)
    container = containers.create(config, host_resolv_conf())
    try:
        return _run(store, containers, container, image, init)
    finally:
        if opts.rm:
            containers.remove(container)


def _run(store, containers, container, image, init_link: str) -> int:
    from minirun.humanize import rfc3339_now
    from minirun.runtime import launch
    from minirun.runtime.overlay import MAX_LOWERS

    config = container.config
    provided = [[container.provided_file(n), f"/etc/{n}", False] for n in ("hosts", "hostname", "resolv.conf")]
    lowers = [os.path.relpath(store.layers.short_link(d), store.root) for d in reversed(image.diff_ids)]
    # The init layer costs one of overlay's 500 lowers; an image that uses them all gets its
    # missing mount points created in its upper instead (diff knows them by name).
    if len(lowers) < MAX_LOWERS:
        lowers.insert(0, init_link)
    plan = launch.LaunchPlan(
        store_root=store.root,
        lowers=lowers,
        upper=container.upper,
        work=container.work,
        mountpoint=os.path.join(store.root, "mnt"),
        argv=config.argv,
        env=config.env,
        workdir=config.workdir,
        user=config.user,
        hostname=config.hostname,
        network=config.network,
        readonly=config.readonly,
        binds=provided + config.binds,
        tmpfs=config.tmpfs,
        interactive=config.interactive,
        tty=config.tty,
    )
    tty = None
    if config.tty:
        from minirun.runtime import tty

        plan.rows, plan.cols = tty.window_size(1)  # docker measures its stdout
    os.makedirs(plan.mountpoint, exist_ok=True)
    started = launch.start(plan)
    # the master comes before the exec, so before the error pipe's EOF
    master = tty.receive_master(started.console) if tty else None
    failure = launch.read_start_error(started)
    if failure is None and tty and master is None:
        launch.kill(started.pid)  # it exec'd without a terminal anyone reads: stop it
        failure = MinirunError("the container's pty never arrived")
    if failure is not None:
        if master is not None:
            os.close(master)
        os.waitpid(started.pid, 0)
        containers.update_state(container, Status="exited", ExitCode=failure.exit_code, Error=failure.message,
                                FinishedAt=rfc3339_now())
        raise failure
    containers.update_state(container, Status="running", Running=True, Pid=started.pid, StartedAt=rfc3339_now())
    code = tty.attach(started.pid, master, config.interactive) if tty else launch.wait_for_exit(started.pid)
    containers.update_state(container, Status="exited", Running=False, Pid=0, ExitCode=code, FinishedAt=rfc3339_now())
    return code
