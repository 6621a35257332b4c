"""`pull`: an image from a registry into the store, verified byte by byte, as docker pulls it.

The manifest is resolved (an index gives the host's platform), the config blob fetched and checked
against its digest, and each layer the store lacks downloaded, concurrently: every blob is hashed
while it streams through the unpacker (no temp file of the compressed blob), and only after its
digest, its size and its diff_id (against the config) all match does it count. Layers stay staged
(invisible, under a temp name) until the image commits, so a failed or killed pull leaves nothing
a later command trusts; the next pull sweeps the debris and starts over.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from minirun.distribution.registry import Registry, TransferView, registry_host, repository_path
from minirun.errors import BadArchive, MinirunError, NotFound, UsageError
from minirun.image import manifests
from minirun.store.reference import Reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from minirun.store import Store
    from minirun.store.images import Image
    from minirun.store.layers import StagedLayer

# docker's max-concurrent-downloads default
MAX_DOWNLOADS = 3
_MAX_CONFIG_BYTES = 8 << 20


@dataclass(frozen=True)
class PullResult:
    image: Image
    reference: str  # the full reference pulled (docker.io/library/ for Hub names): docker's last line
    digest: str  # the manifest's digest
    downloaded: bool  # False: "Image is up to date"


@dataclass(frozen=True)
class _Layer:
    descriptor: dict
    diff_id: str

    @property
    def digest(self) -> str:
        return self.descriptor["digest"]

    @property
    def short_id(self) -> str:
        return self.digest.split(":", 1)[1][:12]


class LayerVerificationError(MinirunError):
    pass


def pull(
    store: Store,
    text: str,
    insecure: bool = False,
    view: TransferView | None = None,
    auth: tuple[str, str] | None = None,
) -> PullResult:
    """`auth`: the (user, password) to use instead of those `login` saved (the Engine API's
    X-Registry-Auth header)."""
    from minirun.distribution import credentials

    view = view or TransferView()
    ref = parse_reference(text)  # a tag defaults to latest
    host = registry_host(ref.domain)
    repo = repository_path(ref.domain, ref.path)
    registry = Registry(
        host, insecure=insecure, credentials=auth or credentials.lookup(host), scopes=[f"repository:{repo}:pull"]
    )
    try:
        view.line(f"{ref.digest or ref.tag}: Pulling from {repo}")
        manifest, digest = _resolve(registry, repo, ref)
        config_bytes, config = _fetch_config(registry, repo, manifest["config"])
        layers = _layers(manifest, config)
        image_id = manifests.sha256_digest(config_bytes)
        present = {layer.diff_id for layer in layers if store.layers.exists(layer.diff_id)}
        for layer in layers:
            if layer.diff_id in present:
                view.layer_status(layer.short_id, "Already exists")
        staged = _download(store, registry, repo, [layer for layer in layers if layer.diff_id not in present], view)
    finally:
        registry.close()
    tag_ref = Reference(ref.name, None, ref.digest) if ref.digest else ref
    previous = store.images.tags().get(str(tag_ref))
    image = store.commit_image(staged, config, tag_ref, raw_config=config_bytes)
    with store.locked():
        store.images.add_repo_digest(image.id, ref.name, digest)
    _remember_sources(store, host, repo, layers, manifest["config"])
    view.line(f"Digest: {digest}")
    downloaded = bool(staged) or previous != image_id
    view.line(f"Status: Downloaded newer image for {ref}" if downloaded else f"Status: Image is up to date for {ref}")
    return PullResult(image=image, reference=_full_reference(ref), digest=digest, downloaded=downloaded)


def _full_reference(ref: Reference) -> str:
    """docker's last line names the image with its registry (docker.io/library/ for Hub names)."""
    return str(Reference(manifests.full_name(ref.name), ref.tag if not ref.digest else None, ref.digest))


# -- manifest and config --------------------------------------------------------------------


def _resolve(registry: Registry, repo: str, ref: Reference) -> tuple[dict, str]:
    """The image manifest for the reference (the host's entry when it names an index) and the
    digest docker reports (the top-level document's)."""
    data, media_type = _get_manifest(registry, repo, ref.digest or ref.tag or "latest", ref)
    digest = manifests.sha256_digest(data)
    doc = manifests.load_json(data, "manifest")
    if manifests.is_index(doc, media_type):
        entry = manifests.pick_platform(manifests.parse_index(data))
        data, media_type = _get_manifest(registry, repo, entry["digest"], ref)
    return manifests.parse_manifest(data), digest


def _get_manifest(registry: Registry, repo: str, reference: str, ref: Reference) -> tuple[bytes, str]:
    """A manifest, checked against the digest asked for, or else the one the registry states."""
    try:
        data, media_type, stated = registry.get_manifest(repo, reference)
    except NotFound as exc:
        raise NotFound(f"manifest for {ref} not found: {exc.message}") from None
    expected = reference if ":" in reference else stated  # a tag has no colon; a digest has one
    algorithm = expected.partition(":")[0]
    if algorithm in ("sha256", "sha384", "sha512"):
        if f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}" != expected:
            raise LayerVerificationError(f"manifest verification failed for digest {expected}")
    elif reference == expected:
        raise UsageError(f"unsupported digest algorithm: {expected}")
    return data, media_type


def _fetch_config(registry: Registry, repo: str, descriptor: dict) -> tuple[bytes, dict]:
    if descriptor["size"] > _MAX_CONFIG_BYTES:
        raise BadArchive(f"image config {descriptor['digest']} is too large ({descriptor['size']} bytes)")
    response = registry.open_blob(repo, descriptor["digest"])
    try:
        data = response.read(descriptor["size"] + 1)
    except OSError as exc:
        raise MinirunError(f"reading config {descriptor['digest']}: {exc}") from exc
    finally:
        registry.release(response)
    if len(data) != descriptor["size"] or manifests.sha256_digest(data) != descriptor["digest"]:
        raise LayerVerificationError(f"image config verification failed for digest {descriptor['digest']}")
    config = manifests.load_json(data, "image config")
    manifests.check_config(config, f"image config {descriptor['digest']}")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise BadArchive(f"image config {descriptor['digest']}: no rootfs.diff_ids")
    for diff_id in diff_ids:
        manifests.check_digest(diff_id, f"image config {descriptor['digest']} diff_id")
    return data, config


def _layers(manifest: dict, config: dict) -> list[_Layer]:
    descriptors = manifest["layers"]
    diff_ids = config["rootfs"]["diff_ids"]
    if len(descriptors) != len(diff_ids):
        raise BadArchive(f"the manifest lists {len(descriptors)} layers, the image config {len(diff_ids)}")
    for descriptor in descriptors:
        manifests.layer_media_compression(descriptor.get("mediaType"))  # refuses unknown/foreign types
    return [_Layer(descriptor, diff_id) for descriptor, diff_id in zip(descriptors, diff_ids)]


# -- layers ---------------------------------------------------------------------------------


def _download(
    store: Store, registry: Registry, repo: str, layers: list[_Layer], view: TransferView
) -> list[StagedLayer]:
    """Download and unpack the layers concurrently; all staged, or none (the first error wins)."""
    unique = list({layer.diff_id: layer for layer in layers}.values())  # a layer may repeat
    for layer in unique:
        view.layer_status(layer.short_id, "Pulling fs layer")
    if not unique:
        return []
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=min(MAX_DOWNLOADS, len(unique)), thread_name_prefix="pull")
    futures = [pool.submit(_fetch_layer, store, registry, repo, layer, view, cancel) for layer in unique]
    staged: list[StagedLayer] = []
    try:
        for future in as_completed(futures):
            staged.append(future.result())  # the first failure raises here
    except BaseException:  # a failure, or Ctrl-C: stop the others at their next read, keep nothing
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if (
                future.done()
                and not future.cancelled()
                and future.exception() is None
                and future.result() not in staged
            ):
                staged.append(future.result())
        for unpacked in staged:
            store.layers.discard(unpacked)
        raise
    pool.shutdown()
    return staged


def _fetch_layer(
    store: Store, registry: Registry, repo: str, layer: _Layer, view: TransferView, cancel: threading.Event
) -> StagedLayer:
    from minirun.layer.archive import HashingReader

    if cancel.is_set():
        raise MinirunError("pull cancelled")
    size = layer.descriptor["size"]
    response = registry.open_blob(repo, layer.digest)
    view.layer_started(layer.short_id, size)
    bounded = _Bounded(response, size, lambda n: view.layer_progress(layer.short_id, n), cancel)
    reader = HashingReader(bounded)  # type: ignore[arg-type]
    try:
        try:
            staged = store.unpack_layer(reader)  # type: ignore[arg-type]
            reader.drain()
        except MinirunError as exc:
            if cancel.is_set():
                raise MinirunError("pull cancelled") from exc
            # A corrupt blob makes a broken tar or gzip stream: the digest is the better reason.
            if _drain_quietly(reader) and not _matches(reader, layer):
                raise LayerVerificationError(
                    f"filesystem layer verification failed for digest {layer.digest}"
                ) from None
            raise MinirunError(f"layer {layer.digest}: {exc.message}") from exc
    finally:
        registry.release(response)
    try:
        if not _matches(reader, layer) or bounded.overflow:
            raise LayerVerificationError(f"filesystem layer verification failed for digest {layer.digest}")
        diff_id = staged.applied.diff_id  # type: ignore[union-attr]
        if diff_id != layer.diff_id:
            raise LayerVerificationError(
                f"layer {layer.digest}: its content has diff_id {diff_id}, the image config says {layer.diff_id}"
            )
    except BaseException:
        store.layers.discard(staged)
        raise
    view.layer_status(layer.short_id, "Pull complete")
    return staged


def _matches(reader, layer: _Layer) -> bool:
    return reader.count == layer.descriptor["size"] and "sha256:" + reader.hasher.hexdigest() == layer.digest


def _drain_quietly(reader) -> bool:
    try:
        reader.drain()
        return True
    except (OSError, MinirunError, ValueError):
        return False


class _Bounded:
    """At most `size` bytes of a response (a registry that sends more is not trusted with the
    rest), counted for the progress display; stops when the pull is cancelled."""

    def __init__(self, inner: BinaryIO, size: int, progress, cancel: threading.Event) -> None:
        self._inner, self._left, self._progress, self._cancel = inner, size, progress, cancel
        self.overflow = False

    def read(self, n: int = -1) -> bytes:
        if self._cancel.is_set():
            raise MinirunError("pull cancelled")
        if self._left <= 0:
            if not self.overflow and self._inner.read(1):
                self.overflow = True
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        try:
            data = self._inner.read(want)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, cut short
            raise MinirunError(f"reading blob: {exc!r}" if not str(exc) else f"reading blob: {exc}") from exc
        self._left -= len(data)
        if data:
            self._progress(len(data))
        return data


# -- where blobs live, for push's cross-repository mounts --------------------------------------


def _remember_sources(store: Store, host: str, repo: str, layers: list[_Layer], config: dict) -> None:
    """Blobs pushed by minirun are uncompressed (digest = diff_id); a pulled blob of that form can
    be mounted into another repository of this registry instead of uploaded again."""
    from minirun.distribution import blobsources

    digests = [layer.digest for layer in layers if layer.digest == layer.diff_id] + [config["digest"]]
    blobsources.remember(store, host, repo, digests)
