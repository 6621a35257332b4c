"""A container's LaunchPlan from its record and image: the one place that decides the lower
dirs, the provided files and the mounts, for foreground runs and monitors alike."""

from __future__ import annotations

import os

from minirun.containers.container import Container
from minirun.runtime.launch import LaunchPlan
from minirun.runtime.overlay import MAX_LOWERS
from minirun.runtime.privileges import for_container
from minirun.store import Store
from minirun.store.images import Image

PROVIDED_FILES = ("hosts", "hostname", "resolv.conf")


def build_plan(store: Store, container: Container, image: Image, init_link: str) -> LaunchPlan:
    config = container.config
    lowers = container_lowers(store, image, init_link)
    mountpoint = os.path.join(store.root, "mnt")
    os.makedirs(mountpoint, exist_ok=True)
    plan = LaunchPlan(
        store_root=store.root,
        lowers=lowers,
        upper=container.upper,
        work=container.work,
        mountpoint=mountpoint,
        argv=config.argv,
        env=config.env,
        workdir=config.workdir,
        user=config.user,
        hostname=config.hostname,
        network=config.network,
        readonly=config.readonly,
        binds=container_binds(container),
        tmpfs=config.tmpfs,
        volume_dirs=uncovered_volumes(image.config.get("config") or {}, config.binds, config.tmpfs),
        interactive=config.interactive,
        tty=config.tty,
        privileged=config.privileged,
        devices=config.devices,
    )
    plan.capabilities, plan.no_new_privileges, plan.seccomp = for_container(config, store.seccomp_dir)
    from minirun.containers.runconfig import apply_to_plan  # --init, --ulimit, --sysctl, --pid host...

    apply_to_plan(store, container, plan)
    if config.network != "none":
        from minirun.containers.network import prepare  # books the address, writes hosts, publishes ports

        prepare(store, container, plan)
    if config.mounts:
        from minirun.containers.mounts import record_mounts

        record_mounts(store.root, container)
    return plan


def container_lowers(store: Store, image: Image, init_link: str) -> list[str]:
    """The union's lower dirs, topmost first, relative to the store root (short links keep
    mount(2)'s page short)."""
    lowers = [os.path.relpath(store.layers.short_link(d), store.root) for d in reversed(image.diff_ids)]
    # The init layer costs one of overlay's 500 lowers; an image that uses them all gets its
    # missing mount points created in its upper instead (diff knows them by name).
    if len(lowers) < MAX_LOWERS:
        lowers.insert(0, init_link)
    return lowers


def container_binds(container: Container) -> list[list]:
    """Every bind into the container, [host source, container target, readonly]: minirun's
    /etc/hosts, hostname and resolv.conf, then the user's binds and volumes."""
    binds = container.config.binds
    # a volume of the user's at /etc/hosts (or hostname, resolv.conf) replaces minirun's, as in docker
    taken = {os.path.normpath(target) for _, target, _ in binds}
    provided = [[container.provided_file(n), f"/etc/{n}", False] for n in PROVIDED_FILES if f"/etc/{n}" not in taken]
    return provided + binds


def uncovered_volumes(image_config: dict, binds: list[list], tmpfs: list[str]) -> list[str]:
    """The image's VOLUME paths that no bind or tmpfs of the container covers, cleaned and sorted:
    a build's RUN step has no mounts, and docker's classic builder still leaves each path a
    directory in that step's layer (a run's anonymous volumes cover every one: none is left).
    What is not absolute, and /, is skipped, as plan_mounts skips it. Pure."""
    volumes = image_config.get("Volumes")
    if not isinstance(volumes, dict) or not volumes:
        return []
    covered = {_clean(t) for _, t, _ in binds} | {_clean(t.partition(":")[0]) for t in tmpfs}
    paths = {_clean(p) for p in volumes if isinstance(p, str) and p.startswith("/")}
    return sorted(paths - covered - {"/"})


def _clean(path: str) -> str:
    """Go's filepath.Clean of an absolute path: normpath keeps a leading `//`."""
    return "/" + os.path.normpath(path).lstrip("/")


def create_cgroups(container: Container) -> list[str]:
    """The container's cgroups, with its limits and its devices policy; paths for PID 1 to join."""
    from minirun.runtime import cgroups, devices

    config = container.config
    rules = devices.rules_for(config.devices, config.privileged, config.device_cgroup_rules)
    return cgroups.create(container.id, config.resources, rules)
