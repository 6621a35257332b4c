"""The on-disk store: layers shared by content, image configs, tags, and the lock that orders writes.

Layout (see DESIGN.md): blobs/ layers/ l/ images/ tags.json containers/ lock. The lock is held only
for short metadata steps; unpacking a layer happens outside it, in a temp dir nobody else trusts.
"""

from __future__ import annotations

import os

from minirun.errors import Conflict, MinirunError, NotFound
from minirun.store.fsutil import flocked

TYPE_CHECKING = False  # not typing's: importing typing costs ~7 ms on every start
if TYPE_CHECKING:  # the image and layer modules load on first use: exec and ps never need them
    from collections.abc import Callable, Sequence
    from typing import Any, BinaryIO

    from minirun.store.fsutil import FileLock
    from minirun.store.images import Image, ImageStore
    from minirun.store.layers import LayerStore, StagedLayer
    from minirun.store.reference import Reference

DEFAULT_ROOT = "/var/lib/minirun"


def default_root() -> str:
    return os.environ.get("MINIRUN_ROOT") or DEFAULT_ROOT


class Store:
    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or default_root())
        self.containers_dir = os.path.join(self.root, "containers")
        self.seccomp_dir = os.path.join(self.root, "seccomp")  # compiled profiles (runtime/seccomp.py)
        self._swept = False
        # made on first use (plain properties: functools, for cached_property, costs ~2 ms a start)
        self._layers: LayerStore | None = None
        self._images: ImageStore | None = None

    @property
    def layers(self) -> LayerStore:
        if self._layers is None:
            from minirun.store.layers import LayerStore

            self._layers = LayerStore(self.root)
        return self._layers

    @property
    def images(self) -> ImageStore:
        if self._images is None:
            from minirun.store.images import ImageStore

            self._images = ImageStore(self.root)
        return self._images

    def ensure(self) -> None:
        """Create the layout; refuse a root we cannot use with one clear line."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            if os.stat(self.root).st_mode & 0o077:
                # a root made by someone else (mkdir -p): layers and upper dirs hold files images and
                # containers made, setuid-root ones too, which no user of the host may reach (docker
                # CVE-2021-41091: it locks its data root down at start the same way)
                os.chmod(self.root, 0o700)
            self.layers.ensure_dirs()
            self.images.ensure_dirs()
            os.makedirs(self.containers_dir, exist_ok=True)
        except OSError as exc:
            raise MinirunError(f"cannot use store root {self.root}: {exc.strerror}") from exc

    def locked(self) -> StoreLock:
        """The store-wide lock for metadata updates (a `with` block); the first holder in a
        process sweeps debris."""
        return StoreLock(self)

    # -- layers --------------------------------------------------------------------------
    def unpack_layer(self, stream: BinaryIO, length: int | None = None) -> StagedLayer:
        """Unpack a tar stream into a staged (invisible) layer; the caller commits or discards it.
        `length`: the layer is the next `length` bytes of the stream (a member of an archive).
        Safe to call from several threads at once."""
        with self.locked():
            staged = self.layers.stage()
        try:
            self.layers.unpack(staged, stream, length)
        except BaseException:
            self.layers.discard(staged)
            raise
        return staged

    def unpack_written(self, write: Callable[[BinaryIO], None], what: str) -> StagedLayer:
        """Stage the tar that `write(out)` produces (a recipe, a container's upper), streamed
        through a pipe from a thread: no temp file of the whole tar. A failure of the writer is
        reported as `what: <error>`, not as the truncated stream it leaves behind."""
        import threading

        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                with open(write_fd, "wb") as out:
                    write(out)
            except BaseException as exc:  # reported below, after the consumer saw EOF
                failure.append(exc)

        producer = threading.Thread(target=produce, name="layer-writer", daemon=True)
        producer.start()
        try:
            with open(read_fd, "rb") as stream:
                staged = self.unpack_layer(stream)
        except BaseException:
            producer.join()
            if failure:
                raise MinirunError(f"{what}: {failure[0]}") from failure[0]
            raise
        producer.join()
        if failure:
            self.layers.discard(staged)
            raise MinirunError(f"{what}: {failure[0]}") from failure[0]
        return staged

    # -- images --------------------------------------------------------------------------
    def commit_image(
        self,
        staged: list[StagedLayer],
        config: dict,
        ref: Reference | None,
        raw_config: bytes | None = None,
        more_refs: Sequence[Reference] = (),
    ) -> Image:
        """Make staged layers visible, write the config and tag it, all under one lock hold so a
        concurrent rmi never sees the layers without the image that keeps them alive.
        `raw_config`: the config's bytes as received (load, pull), kept verbatim: docker's image
        id is their digest."""
        try:
            with self.locked():
                for layer in staged:
                    self.layers.commit(layer)
                missing = [d for d in config["rootfs"]["diff_ids"] if not self.layers.exists(d)]
                if missing:
                    raise MinirunError(f"layer {missing[0]} is not in the store")
                image = self.images.write(config, raw_config)
                for each in ([ref] if ref is not None else []) + list(more_refs):
                    self.images.tag(each, image.id)
                return image
        finally:
            for layer in staged:
                self.layers.discard(layer)

    def image_size(self, image: Image) -> int:
        return sum(self.layers.meta(d).size for d in set(image.diff_ids) if self.layers.exists(d))

    def containers_using(self, image_id: str) -> list[str]:
        """Ids of containers whose config names this image (they keep its layers alive)."""
        from minirun import leanjson

        users: list[str] = []
        try:
            names = os.listdir(self.containers_dir)
        except FileNotFoundError:
            return users
        for name in names:
            try:
                with open(os.path.join(self.containers_dir, name, "config.json"), "rb") as f:
                    if leanjson.load(f).get("Image") == image_id:
                        users.append(name)
            except (FileNotFoundError, ValueError):
                continue
        return users

    def remove_image(self, text: str, force: bool = False) -> list[str]:
        """docker rmi: untag a name, delete an image once nothing names it; returns the report lines."""
        with self.locked():
            return self._remove_image(text, force)

    def _remove_image(self, text: str, force: bool) -> list[str]:
        """remove_image's work, under the store lock the caller holds."""
        image = self.images.lookup(text)
        tags = self.images.tags_of(image.id)
        by_name = text in tags or _with_default_tag(text) in tags
        lines: list[str] = []
        if by_name and len(tags) > 1:
            name = text if text in tags else _with_default_tag(text)
            self.images.untag(name)
            return [f"Untagged: {name}"]
        if not by_name and len(tags) > 1 and not force:
            raise Conflict(
                f"conflict: unable to delete {image.short_id} (must be forced) - "
                "image is referenced in multiple repositories"
            )
        users = self.containers_using(image.id)
        if users and not force:
            raise Conflict(
                f"conflict: unable to delete {image.short_id} (must be forced) - "
                f"image is being used by container {users[0][:12]}"
            )
        lines += [f"Untagged: {t}" for t in tags]
        if users:
            for t in tags:
                self.images.untag(t)
            return lines
        self.images.delete(image.id)
        lines.append(f"Deleted: {image.id}")
        lines += self._collect_parents(image)
        lines += self._collect_layers(image)
        return lines

    def prune_images(self, all_: bool = False, allowed: Callable[[Image], bool] | None = None) -> tuple[list[str], int]:
        """docker image prune: every dangling image (untagged, and no other image's parent), or
        with `all_` every image no container uses, that `allowed` (the filters) lets go; (report
        lines, bytes freed)."""
        lines: list[str] = []
        freed = 0
        with self.locked():
            images = self.images.all()
            tagged = set(self.images.tags().values())
            parents = {key for image in images for key in image.ancestor_keys()}
            for image in images:
                if image.id in tagged and not all_:
                    continue
                if not all_ and image.lineage_key() in parents:
                    continue  # a build step under a tagged image: not dangling
                if self.containers_using(image.id) or (allowed is not None and not allowed(image)):
                    continue
                before = self._layer_bytes()
                try:
                    lines += self._remove_image(image.id, force=True)
                except NotFound:
                    continue  # gone already, as the parent of one removed before it
                freed += before - self._layer_bytes()
        return lines, freed

    def _layer_bytes(self) -> int:
        return sum(self.layers.meta(d).size for d in self.layers.all_ids())

    def _collect_parents(self, removed: Image) -> list[str]:
        """docker deletes a removed image's untagged parents (a build's step images) that no
        other image builds on and no container uses."""
        deleted = []
        images = self.images.all()  # read once: a crafted history has thousands of ancestors
        ancestors = {image.id: set(image.ancestor_keys()) for image in images}
        for key in removed.ancestor_keys():
            parent = next((i for i in images if i.lineage_key() == key), None)
            if parent is None:
                continue
            still_a_parent = any(key in ancestors[other.id] for other in images)
            if self.images.tags_of(parent.id) or still_a_parent or self.containers_using(parent.id):
                break
            self.images.delete(parent.id)
            images.remove(parent)
            deleted.append(f"Deleted: {parent.id}")
        return deleted

    def _collect_layers(self, removed: Image) -> list[str]:
        in_use = {d for other in self.images.all() for d in other.diff_ids}
        deleted = []
        for diff_id in dict.fromkeys(removed.diff_ids):
            if diff_id not in in_use and self.layers.exists(diff_id):
                self.layers.remove(diff_id)
                deleted.append(f"Deleted: {diff_id}")
        return deleted


def _with_default_tag(text: str) -> str:
    last = text.rsplit("/", 1)[-1]
    return text if ":" in last or "@" in last else text + ":latest"


def lock_path(root: str) -> str:
    """The store-wide lock's file: Store.locked() holds it; paths that must stay light (a start's
    mark_running, the monitor, volume removal) flock it alone, without the layout check and sweep."""
    return os.path.join(root, "lock")


class StoreLock:
    """Store.locked(): a class, not @contextlib.contextmanager, for fsutil's reason."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.held: FileLock | None = None

    def __enter__(self) -> None:
        self.store.ensure()
        held = flocked(lock_path(self.store.root))
        held.__enter__()
        try:
            if not self.store._swept:
                self.store.layers.sweep()
                self.store._swept = True
        except BaseException:
            held.__exit__(None, None, None)
            raise
        self.held = held

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: Any) -> None:
        assert self.held is not None
        self.held.__exit__(kind, value, tb)
        self.held = None
