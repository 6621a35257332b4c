"""A container's changes against its image (docker's `diff`, the Engine API's /changes): its
upper dir read against the layers below it, from the host, with no mount."""

from __future__ import annotations


def container_changes(store, container) -> list:
    """layer.changes' Change records, docker's order."""
    from minirun.layer.changes import changes
    from minirun.store.initlayer import init_layer_dir

    image = store.images.get(container.config.image)
    lowers = [init_layer_dir(store)] + [store.layers.diff_dir(d) for d in reversed(image.diff_ids)]
    return changes(container.upper, lowers)
