"""`import`: a rootfs tar becomes a one-layer image, as `docker import` makes it."""

from __future__ import annotations

from typing import BinaryIO

from minirun.errors import MinirunError
from minirun.image.embedded import host_architecture
from minirun.image.instructions import apply_changes
from minirun.store import Store, importmemo
from minirun.store.images import Image
from minirun.store.reference import Reference
from minirun.timestamps import rfc3339_now


def import_tarball(
    store: Store, stream: BinaryIO, ref: Reference | None, message: str = "", changes: list[str] | None = None
) -> Image:
    # Parse the changes before unpacking: a bad -c must not cost a 300 MB unpack.
    config = apply_changes({}, changes or [])
    key = _file_key(stream)
    known = importmemo.lookup(store.root, key) if key else None
    if known is not None:
        try:
            return store.commit_image([], _image_config(config, known, message), ref)
        except MinirunError:  # its layer has gone meanwhile: unpack it after all
            pass
    staged = store.unpack_layer(stream)
    diff_id = staged.applied.diff_id  # type: ignore[union-attr]
    image = store.commit_image([staged], _image_config(config, diff_id, message), ref)
    if key is not None and key == _file_key(stream, at_start=False):  # unchanged while it was read
        importmemo.remember(store.root, key, diff_id)
    return image


def _image_config(config: dict, diff_id: str, message: str) -> dict:
    created = rfc3339_now()
    return {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        # docker's CLI streams the file to the daemon, which therefore records "-" as the source.
        "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
    }


def _file_key(stream: BinaryIO, at_start: bool = True) -> str | None:
    """importmemo's key of the file behind `stream` (None: no file, or not read from its start)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    return importmemo.file_key(fd, at_start)
