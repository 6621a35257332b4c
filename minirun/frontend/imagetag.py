"""`tag` (and the Engine API's /images/{name}/tag): another name for an image."""

from __future__ import annotations

from minirun.errors import UsageError


def tag_image(store, source: str, target: str) -> None:
    """Name `source`'s image `target` (REPOSITORY[:TAG]); a digest is no tag."""
    from minirun.image.embedded import find_image
    from minirun.store.reference import parse_reference

    ref = parse_reference(target)
    if ref.digest is not None:
        raise UsageError(f"refusing to create a tag with a digest reference: {target}")
    image = find_image(store, source)
    with store.locked():
        store.images.get(image.id)  # still there: an rmi may have run meanwhile
        store.images.tag(ref, image.id)
