"""`import`: a rootfs tar becomes a one-layer image, as `docker import` makes it."""

from __future__ import annotations

from typing import BinaryIO

from minirun.humanize import rfc3339_now
from minirun.image.embedded import host_architecture
from minirun.image.instructions import apply_changes
from minirun.store import Store
from minirun.store.images import Image
from minirun.store.reference import Reference


def import_tarball(
    store: Store, stream: BinaryIO, ref: Reference | None, message: str = "", changes: list[str] | None = None
) -> Image:
    # Parse the changes before unpacking: a bad -c must not cost a 300 MB unpack.
    config = apply_changes({}, changes or [])
    staged = store.unpack_layer(stream)
    created = rfc3339_now()
    image_config = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [staged.applied.diff_id]},  # type: ignore[union-attr]
        # docker's CLI streams the file to the daemon, which therefore records "-" as the source.
        "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
    }
    return store.commit_image([staged], image_config, ref)
