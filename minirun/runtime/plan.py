"""A container's LaunchPlan from its record and image: the one place that decides the lower
dirs, the provided files and the mounts, for foreground runs and monitors alike."""
from __future__ import annotations

import os

from minirun.runtime.container import Container
from minirun.runtime.launch import LaunchPlan
from minirun.runtime.overlay import MAX_LOWERS
from minirun.store import Store
from minirun.store.images import Image

PROVIDED_FILES = ("hosts", "hostname", "resolv.conf")


def build_plan(store: Store, container: Container, image: Image, init_link: str) -> LaunchPlan:
    config = container.config
    provided = [[container.provided_file(n), f"/etc/{n}", False] for n in PROVIDED_FILES]
    lowers = [os.path.relpath(store.layers.short_link(d), store.root) for d in reversed(image.diff_ids)]
    # The init layer costs one of overlay's 500 lowers; an image that uses them all gets its
    # missing mount points created in its upper instead (diff knows them by name).
    if len(lowers) < MAX_LOWERS:
        lowers.insert(0, init_link)
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
        binds=provided + config.binds,
        tmpfs=config.tmpfs,
        interactive=config.interactive,
        tty=config.tty,
    )
    if config.network != "none":
        from minirun.runtime.network import prepare  # books the address, writes hosts, publishes ports

        prepare(store, container, plan)
    return plan
