"""A new container from checked run options (runoptions.py), as `run`, `create` (cli/run.py) and the
Engine API's create (api/) make it: the image resolved (--pull), docker's rules for its command,
environment, labels, network and health check, the mounts planned, the record written.

On the path the start benchmark times (`run`): lean, the rest imported when used."""

from __future__ import annotations

from minirun.errors import UsageError
from minirun.frontend.runoptions import RunOptions
from minirun.runtime.executable import merged_env


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


def container_config(store, opts: RunOptions):
    """(the ContainerConfig of a new container, its mount plan or None, its image): `run`'s and
    `create`'s work before anything is written but the volumes the plan makes."""
    from minirun.containers.container import ContainerConfig, new_container_id, validate_name
    from minirun.frontend import runflags
    from minirun.timestamps import rfc3339_now

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
    if opts.config_volumes:  # docker merges a request's Config.Volumes with the image's
        image_config = {
            **image_config,
            "Volumes": {**(image_config.get("Volumes") or {}), **dict.fromkeys(opts.config_volumes, {})},
        }
    if opts.volumes or opts.mounts or opts.volumes_from or image_config.get("Volumes"):
        from minirun.containers.mounts import plan_mounts

        mount_plan = plan_mounts(store, opts.volumes + opts.mounts, opts.volumes_from, opts.tmpfs, image_config)
    resources = dict(opts.resources)
    from minirun.containers.resources import default_pids_limit, discard_unsupported

    default_pids_limit(resources)
    if resources:
        warnings = discard_unsupported(resources)  # the daemon's part: client-side flags parse anywhere
        if resources.get("OomKillDisable") and not resources.get("Memory"):  # docker's CLI says so too
            warnings.append(
                "Disabling the OOM killer on containers without setting a '-m/--memory' limit may be dangerous."
            )
        for warning in warnings:
            import sys

            print(f"WARNING: {warning}", file=sys.stderr)
    if opts.flags.links and network in ("bridge", "none"):  # docker's legacy links: each must exist now
        from minirun.containers.links import check_legacy

        check_legacy(store, opts.flags.links)
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
        resources=resources,
        cap_add=opts.cap_add,
        cap_drop=opts.cap_drop,
        privileged=opts.privileged,
        security_opt=opts.security_opt,
        devices=opts.devices,
        device_cgroup_rules=opts.device_cgroup_rules,
        log_config=log_config,
        labels={**image_labels(image_config), **opts.labels},
        stdin_once=opts.interactive and not opts.detach,
        console_size=opts.console_size,
        mounts=mount_plan.records if mount_plan else [],
        **runflags.config_fields(opts.flags, image_config, opts.publish),
        restart_policy=opts.restart_policy,
        healthcheck=_healthcheck(opts, image_config),
    )
    if opts.more_networks:  # --network twice: every one recorded, --network-alias the first's
        more = [resolve_network(store, n)[0] for n in opts.more_networks]
        config.networks = [
            {"name": n, "aliases": a, "ip": "", **({"links": k} if k else {})}
            for n, a, k in [(network, config.network_aliases, config.links)] + [(n, [], []) for n in more]
        ]
    return config, mount_plan, image


def create_record(store, containers, config, mount_plan, image, resolv_conf: bytes):
    """The container's record written (state "created"), its mounts populated from the image.
    The caller guards it from before (containers/guard.py) and owns it after."""
    if mount_plan is None:
        return containers.create(config, resolv_conf)
    from minirun.containers.populate import create_container

    return create_container(store, containers, config, resolv_conf, mount_plan, image)


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
