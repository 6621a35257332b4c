"""`system df`: what the store holds on disk, with each layer counted once however many images
stack it, and each container charged only for its own upper dir.

Sizes follow docker: a layer's size is its meta.json `size` (content bytes, hardlinks once), a
container's is its upper dir measured like docker's directory.Size (lstat sizes of everything
but dirs, each inode once). One deliberate difference: docker computes the images' RECLAIMABLE
as total - Σ(unique size of images in use), which counts a shared layer of an image in use as
reclaimable (docker/cli#1751); here it is what removing every image no container uses would
free: the layers no such image needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minirun.store import Store
from minirun.store.fsutil import tree_size
from minirun.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.containers.container import Container


@dataclass(frozen=True)
class LayerUsage:
    diff_id: str
    size: int
    images: int  # how many images stack it

    @property
    def short_id(self) -> str:
        return self.diff_id.split(":", 1)[-1][:12]


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    repository: str
    tag: str
    size: int  # all its layers
    shared_size: int  # its layers that another image stacks too
    containers: int

    @property
    def unique_size(self) -> int:
        return self.size - self.shared_size


@dataclass(frozen=True)
class ContainerUsage:
    container: Container  # refreshed
    size: int  # the upper dir's bytes
    running: bool


@dataclass(frozen=True)
class VolumeUsage:
    name: str
    links: int  # how many containers' records name it
    size: int  # its data's bytes, measured as a container's upper dir


@dataclass(frozen=True)
class SummaryRow:
    type: str
    total: int
    active: int
    size: int
    reclaimable: int


@dataclass(frozen=True)
class DiskUsage:
    images: list[ImageUsage]
    containers: list[ContainerUsage]
    layers: list[LayerUsage]
    images_reclaimable: int
    volumes: list[VolumeUsage] = field(default_factory=list)

    @property
    def layers_size(self) -> int:
        """Every stored layer once: what the images really take on disk."""
        return sum(layer.size for layer in self.layers)

    def summary(self) -> list[SummaryRow]:
        return [
            SummaryRow(
                "Images",
                len(self.images),
                sum(1 for i in self.images if i.containers),
                self.layers_size,
                self.images_reclaimable,
            ),
            SummaryRow(
                "Containers",
                len(self.containers),
                sum(1 for c in self.containers if c.running),
                sum(c.size for c in self.containers),
                sum(c.size for c in self.containers if not c.running),
            ),
            SummaryRow(
                "Local Volumes",
                len(self.volumes),
                sum(1 for v in self.volumes if v.links),
                sum(v.size for v in self.volumes),
                sum(v.size for v in self.volumes if not v.links),
            ),
            SummaryRow("Build Cache", 0, 0, 0, 0),
        ]


def disk_usage(store: Store) -> DiskUsage:
    from minirun.containers.container import Containers
    from minirun.containers.liveness import is_running, refresh
    from minirun.store.reference import parse_reference

    stored = store.images.all()
    tags = store.images.tags()
    # a build's untagged step images are not images of their own here (as in `images`): they
    # would count every layer of their descendants as shared
    parents = {key for image in stored for key in image.ancestor_keys()}
    images = sorted(
        (i for i in stored if i.id in tags.values() or i.lineage_key() not in parents), key=lambda i: i.created
    )
    containers = Containers(store)
    records = [refresh(containers, c, reload=False, record=False) for c in containers.all()]
    users: dict[str, int] = {}
    for record in records:
        users[record.config.image] = users.get(record.config.image, 0) + 1

    sizes = {d: store.layers.meta(d).size for d in store.layers.all_ids()}
    stacked_by: dict[str, int] = {}
    for image in images:
        for diff_id in set(image.diff_ids):
            stacked_by[diff_id] = stacked_by.get(diff_id, 0) + 1

    # Layers in the order images stack them, oldest image first (a base before what builds
    # on it), then any the store holds that no image names.
    order: list[str] = []
    for image in images:
        order += [d for d in image.diff_ids if d in sizes and d not in order]
    order += sorted(d for d in sizes if d not in order)
    layers = [LayerUsage(d, sizes[d], stacked_by.get(d, 0)) for d in order]

    image_rows = []
    for image in sorted(images, key=lambda i: i.created, reverse=True):
        own = [d for d in dict.fromkeys(image.diff_ids) if d in sizes]
        names = sorted(ref for ref, target in tags.items() if target == image.id)
        repository, tag = "<none>", "<none>"
        if names:  # docker shows the first tag only
            ref = parse_reference(names[0])
            repository, tag = ref.name, ref.tag or "<none>"
        image_rows.append(
            ImageUsage(
                image=image,
                repository=repository,
                tag=tag,
                size=sum(sizes[d] for d in own),
                shared_size=sum(sizes[d] for d in own if stacked_by.get(d, 0) > 1),
                containers=users.get(image.id, 0),
            )
        )

    needed = {d for image in images if users.get(image.id) for d in image.diff_ids}
    reclaimable = sum(size for d, size in sizes.items() if d not in needed)
    container_rows = [
        ContainerUsage(c, tree_size(c.upper), is_running(c))
        for c in sorted(records, key=lambda c: c.config.created, reverse=True)
    ]
    return DiskUsage(image_rows, container_rows, layers, reclaimable, volume_usage(store))


def volume_usage(store: Store) -> list[VolumeUsage]:
    """The local volumes without driver options, as docker counts them (a tmpfs or a bound host
    directory holds nothing of the store's)."""
    from minirun.containers.mounts import volume_users
    from minirun.store.volumes import VolumeStore

    users = volume_users(store.root)
    return [
        VolumeUsage(v.name, len(users.get(v.name, [])), tree_size(v.mountpoint))
        for v in VolumeStore(store.root).all()
        if not v.options
    ]


def reclaimable_text(row: SummaryRow) -> str:
    """docker's RECLAIMABLE cell: `1.2MB (40%)`, the percentage truncated, none when empty."""
    from minirun.humanize import human_size

    text = human_size(row.reclaimable, 4)
    if row.size > 0:
        return f"{text} ({row.reclaimable * 100 // row.size}%)"
    return text
