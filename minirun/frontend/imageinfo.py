"""What the CLI shows of images: `images` rows, `history` rows, `inspect` documents. Data only;
the CLI renders it."""

from __future__ import annotations

from minirun.records import Record
from minirun.store import Store
from minirun.store.images import Image, lineage_keys
from minirun.store.reference import parse_reference


class ImageRow(Record):
    """A line of `images`."""

    repository: str
    tag: str
    image: Image
    size: int


class HistoryRow(Record):
    """A line of `history`."""

    image_id: str | None  # None: the entry is not an image of this store (docker's <missing>)
    created: str
    created_by: str
    size: int
    comment: str


def image_rows(store: Store, all_: bool = False) -> list[ImageRow]:
    """docker images: an untagged image that is the parent of another (a build step's) is only
    shown with -a."""
    tags = store.images.tags()
    images = store.images.all()
    parents = {key for image in images for key in image.ancestor_keys()}
    all_ = all_ or store.images.tags_damaged()  # with no names to go by, hide nothing
    rows = []
    for image in images:
        if not all_ and image.id not in tags.values() and image.lineage_key() in parents:
            continue
        size = store.image_size(image)
        names = sorted(ref for ref, target in tags.items() if target == image.id)
        for name in names or [None]:  # type: ignore[list-item]  # None: the one untagged row
            if name is None:
                rows.append(ImageRow("<none>", "<none>", image, size))
            else:
                ref = parse_reference(name)
                rows.append(ImageRow(ref.name, ref.tag or "<none>", image, size))
    rows.sort(key=lambda r: (r.image.created, r.repository, r.tag), reverse=True)
    return rows


def history_rows(store: Store, image: Image) -> list[HistoryRow]:
    """Newest first. An entry shows an image id when some stored image is exactly this image up
    to that entry (a build's intermediate or a base image); otherwise it is <missing>."""
    known = {other.lineage_key(): other.id for other in store.images.all()}
    diff_ids = image.diff_ids
    rows: list[HistoryRow] = []
    layer_index = 0
    history = image.history or [{"created": image.created}] * max(1, len(diff_ids))
    prefix_keys = lineage_keys(history, diff_ids)[:-1]  # the last entry is the image itself (below)
    for i, entry in enumerate(history):
        size = 0
        if not entry.get("empty_layer", False) and layer_index < len(diff_ids):
            diff_id = diff_ids[layer_index]
            layer_index += 1
            if store.layers.exists(diff_id):
                size = store.layers.meta(diff_id).size
        prefix_id = known.get(prefix_keys[i]) if i < len(prefix_keys) else None
        rows.append(
            HistoryRow(
                image_id=prefix_id,
                created=entry.get("created", ""),
                created_by=entry.get("created_by", ""),
                size=size,
                comment=entry.get("comment", ""),
            )
        )
    rows.reverse()
    if rows:  # the newest entry is the image itself, whatever else the store holds
        top = rows[0]
        rows[0] = HistoryRow(image.id, top.created, top.created_by, top.size, top.comment)
    return rows


def inspect_image(store: Store, image: Image) -> dict:
    layer_dirs = [store.layers.diff_dir(d) for d in reversed(image.diff_ids)]
    graph: dict[str, str] = {}
    if layer_dirs:
        graph["UpperDir"] = layer_dirs[0]
        if len(layer_dirs) > 1:
            graph["LowerDir"] = ":".join(layer_dirs[1:])
    history = image.history
    return {
        "Id": image.id,
        "RepoTags": store.images.tags_of(image.id),
        "RepoDigests": store.images.repo_digests(image.id),
        "Parent": "",
        "Comment": history[-1].get("comment", "") if history else "",
        "Created": image.created,
        "Author": image.config.get("author", ""),
        "Config": image.config.get("config", {}),
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Size": store.image_size(image),
        "GraphDriver": {"Name": "overlay", "Data": graph},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }


PRUNE_KEYS = ("dangling", "label", "label!", "until")


def prune_images(store: Store, words: list[str], all_: bool = False) -> tuple[list[str], int]:
    """docker image prune with its filters: dangling=false as -a; label=, label!= on the image's
    labels; until= keeps images created after that time. (report lines, bytes freed)"""
    from minirun.errors import MinirunError
    from minirun.frontend.filters import Filters
    from minirun.humanize import epoch_seconds, parse_timestamp

    filters = Filters(words, PRUNE_KEYS)
    until = [parse_timestamp(value) for value in filters.get("until")]

    def allowed(image: Image) -> bool:
        try:
            created_ns = epoch_seconds(image.created) * 1e9
        except (MinirunError, ValueError):  # none, or junk a loaded config came with: as old as can be
            created_ns = 0
        return filters.match_labels(image.labels) and all(created_ns < when for when in until)

    return store.prune_images(all_ or filters.boolean("dangling") is False, allowed)
