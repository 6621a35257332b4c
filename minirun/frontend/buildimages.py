"""The images a build starts from (FROM, COPY --from), as `build` and the Engine API's /build
find them: the store's, pulled from a registry when they name one."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.images import Image


def find_image(store: Store, name: str, pull: bool) -> Image:
    """FROM's and COPY --from's image: the store's; pulled when missing and the name has a
    registry, and with --pull again when it names a registry or was pulled from one (an image
    built or loaded here, or an embedded one, is used as it is: there is nowhere to pull it from)."""
    from minirun.build.builder import local_image
    from minirun.errors import NotFound
    from minirun.store.reference import parse_reference

    remote = parse_reference(name).domain is not None
    try:
        image = local_image(store, name)
    except NotFound:
        if not remote:
            raise
        return pull_image(store, name)
    if pull and (remote or store.images.repo_digests(image.id)):
        return pull_image(store, name)
    return image


def pull_image(store: Store, name: str) -> Image:
    from minirun import events
    from minirun.distribution.pull import pull

    result = pull(store, name)
    events.record(store.root, "image", "pull", result.image.id, {"name": result.reference})
    return result.image
