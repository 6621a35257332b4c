"""The end of a container's record: what it held on the host given back, then the record itself.
Apart from lifecycle.py (docker's verbs) because every foreground `run --rm` ends here, and the
verbs' module, with the restart policies it needs, is ~0.6 ms of imports that path never uses."""

from __future__ import annotations

import os

from minirun.containers.container import Container, Containers, record_event


def discard(containers: Containers, container: Container, volumes: bool = False) -> None:
    """What the container held on the host (its address, published ports, its line in its
    peers' hosts files), then its record. In that order, as docker's disconnect comes before
    destroy: with the record gone first, another store's allocation on the same bridge could
    take the booking for stale and remove it, and this release would find nothing to release."""
    if container.state.get("NetworkSettings"):
        from minirun.containers.network import release

        release(containers.store.root, container.id, container.state["NetworkSettings"])
    existed = os.path.isdir(container.dir)
    containers.remove(container)
    if existed:
        record_event(containers.store.root, container, "destroy")
    if (volumes or container.config.auto_remove) and container.config.mounts:
        # rm -v, and --rm as docker's auto-removal does it: the anonymous volumes no one else uses
        from minirun.containers.mounts import release_anonymous

        release_anonymous(containers.store.root, container.config.mounts)
