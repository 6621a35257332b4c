"""`run` in the foreground: resolve the image, record the container, start PID 1, wait, clean up.

Kept off typer and rich (see runargs.py): this is the path the start benchmark times.
"""

from __future__ import annotations

import os

from minirun.cli.runargs import RunOptions, parse_run_args
from minirun.containers.foreground import host_resolv_conf, run_foreground
from minirun.containers.lifecycle import discard
from minirun.errors import UsageError
from minirun.runtime.executable import merged_env
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


def image_labels(image_config: dict) -> dict[str, str]:
    """An image's Labels as a container inherits them; an image config came from outside, so
    anything but string keys and values is left out."""
    labels = image_config.get("Labels")
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def run_command(argv: list[str], root: str | None, create_only: bool = False) -> int:
    """`run`; with `create_only` (cli/create.py), `create`: the record made and its id printed."""
    from minirun.cli import runflags
    from minirun.containers.container import ContainerConfig, Containers, new_container_id, validate_name
    from minirun.humanize import rfc3339_now
    from minirun.store.initlayer import init_layer_link

    opts = parse_run_args(argv, verb="create" if create_only else "run")
    if opts.tty and opts.interactive and not opts.detach and not create_only and not os.isatty(0):
        # docker's check, before anything is created: raw mode needs a terminal to put raw
        raise UsageError("the input device is not a TTY")
    store = Store(root)
    image = runflags.resolve_image(store, opts.image, opts.flags)  # --pull, --platform
    if not image.diff_ids:
        raise UsageError(f"image {opts.image} has no layers: nothing to run")
    image_config = image.config.get("config", {})
    network, network_hostname = resolve_network(store, opts.network)
    from minirun.containers import logconfig

    log_config = logconfig.resolve(opts.log_driver, opts.log_opts, logconfig.store_defaults(store.root))
    if opts.name:  # before volumes are made: a bad name leaves nothing behind, not even an event
        validate_name(opts.name)
    mount_plan = None
    if opts.volumes or opts.mounts or opts.volumes_from or image_config.get("Volumes"):
        from minirun.containers.mounts import plan_mounts

        mount_plan = plan_mounts(store, opts.volumes + opts.mounts, opts.volumes_from, opts.tmpfs, image_config)
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
        hostname=network_hostname or opts.hostname or runflags.uts_hostname(opts.flags) or container_id[:12],
        binds=mount_plan.binds if mount_plan else [],
        tmpfs=mount_plan.tmpfs if mount_plan else opts.tmpfs,
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
        labels={**image_labels(image_config), **opts.labels},
        stdin_once=opts.interactive and not opts.detach,
        mounts=mount_plan.records if mount_plan else [],
        **runflags.config_fields(opts.flags, image_config, opts.publish),
        restart_policy=opts.restart_policy,
        healthcheck=_healthcheck(opts, image_config),
    )
    containers = Containers(store)
    init = init_layer_link(store)
    from minirun.containers import guard

    # from before the record exists to after --rm: a killed client leaves nothing behind (guard.py)
    watch = guard.start(store.root, container_id)
    try:
        cidfile = runflags.open_cidfile(opts.flags.cidfile)
        try:
            resolv_conf = runflags.resolv_conf(opts.flags, host_resolv_conf())
            if mount_plan is None:
                container = containers.create(config, resolv_conf)
            else:
                from minirun.containers.populate import create_container

                container = create_container(store, containers, config, resolv_conf, mount_plan, image)
        except BaseException:
            runflags.discard_cidfile(cidfile, opts.flags.cidfile)
            raise
        runflags.write_cidfile(cidfile, container.id)
        if create_only:
            print(container.id)
            return 0
        if opts.detach:
            return _detach(store, containers, container, on_spawned=watch.done)
        if opts.tty and opts.interactive:  # through a monitor, so the detach keys can leave it running
            from minirun.containers.attachclient import parse_detach_keys, run_attached

            keys = parse_detach_keys(opts.detach_keys)
            return run_attached(containers, container, watch.done, keys, opts.sig_proxy)
        try:
            code = run_foreground(store, containers, container, image, init)
            if opts.restart_policy:  # docker's daemon restarts it after the client returned: a monitor does
                from minirun.containers.restartpolicy import hand_over

                hand_over(store.root, containers, container, code)
            return code
        finally:
            if opts.rm:
                discard(containers, container)
    finally:
        watch.done(reap=False)  # the CLI exits next (main.py)


def _healthcheck(opts: RunOptions, image_config: dict) -> dict:
    """Config.Healthcheck: the image's, the --health-* flags over it (healthconfig.py)."""
    if opts.healthcheck is None and not image_config.get("Healthcheck"):
        return {}
    from minirun.containers.healthconfig import merged

    return merged(opts.healthcheck, image_config.get("Healthcheck"))


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


def _detach(store, containers, container, on_spawned=None) -> int:
    """docker run -d: the monitor owns the container from here; print the full id once it runs."""
    from minirun.containers.detach import spawn_monitor

    size = (24, 80)
    if container.config.tty:  # the container's terminal starts as big as ours (attachclient.py)
        from minirun.containers.attachclient import console_size

        size = console_size(True)
    try:
        spawn_monitor(store.root, container.id, on_spawned, console_size=size)
    except BaseException:
        if container.config.auto_remove:
            discard(containers, container)  # the monitor may have removed it already
        raise
    print(container.id)
    return 0
