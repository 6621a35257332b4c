"""`push`: a stored image to a registry, as docker pushes it.

Layers go up as the exact uncompressed tars the store rebuilds (digest = diff_id), so what a
registry serves hashes to what the image config says; each is HEADed first and skipped when the
repository has it, mounted from a sibling repository when the store knows one that has it, and
uploaded otherwise. Then the config (its exact bytes: the image id is their digest) and an OCI
manifest, under the tag.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from minirun.distribution import blobsources
from minirun.distribution.registry import Registry, TransferView, registry_host, repository_path
from minirun.errors import MinirunError, NotFound, UsageError
from minirun.image import manifests
from minirun.store.reference import parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.store import Store

# docker's max-concurrent-uploads is 5; two cores here rebuild and hash the tars
MAX_UPLOADS = 3


@dataclass(frozen=True)
class PushResult:
    tag: str
    digest: str
    size: int


def push(
    store: Store,
    text: str,
    insecure: bool = False,
    view: TransferView | None = None,
    auth: tuple[str, str] | None = None,
) -> PushResult:
    """`auth`: the (user, password) to use instead of those `login` saved (the Engine API's
    X-Registry-Auth header)."""
    from minirun.distribution import credentials

    view = view or TransferView()
    ref = parse_reference(text)
    if ref.digest is not None:
        raise UsageError(f"cannot push a digest reference: {text}")
    try:
        image = store.images.lookup(str(ref))
    except NotFound:
        raise NotFound(f"An image does not exist locally with the tag: {ref.name}") from None
    if str(ref) not in store.images.tags():  # an id prefix is not a tag to push under
        raise NotFound(f"An image does not exist locally with the tag: {ref.name}")
    host = registry_host(ref.domain)
    repo = repository_path(ref.domain, ref.path)
    view.line(f"The push refers to repository [{manifests.full_name(ref.name)}]")
    manifest = manifests.image_manifest(store, image)  # refuses layers the store cannot export
    config = store.images.raw_config(image.id)
    diff_ids = list(dict.fromkeys(image.diff_ids))
    mounts = {d: blobsources.sources(store, host, d, repo) for d in diff_ids + [image.id]}
    mount_scopes = sorted({f"repository:{source}:pull" for found in mounts.values() for source in found})
    registry = Registry(
        host,
        insecure=insecure,
        credentials=auth or credentials.lookup(host),
        scopes=[f"repository:{repo}:pull,push", *mount_scopes],
    )
    try:
        registry.ping()  # authenticate once, before the workers start
        top_first = list(reversed(diff_ids))  # docker lists the newest layer first
        for diff_id in top_first:
            view.layer_status(_short(diff_id), "Preparing")
        pool = ThreadPoolExecutor(max_workers=max(1, min(MAX_UPLOADS, len(diff_ids))), thread_name_prefix="push")
        try:
            futures = [pool.submit(_push_layer, store, registry, repo, d, mounts[d], view) for d in top_first]
            for future in as_completed(futures):
                future.result()  # the first failure raises here
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, no new uploads start
        if registry.blob_size(repo, image.id) is None:
            registry.upload_blob(repo, image.id, len(config), lambda: io.BytesIO(config), mounts[image.id])
        stored = registry.put_manifest(repo, ref.tag or "latest", manifest, manifests.OCI_MANIFEST)
    finally:
        registry.close()
    digest = manifests.sha256_digest(manifest)
    if stored and stored != digest:
        raise MinirunError(f"the registry stored the manifest as {stored}, not {digest}")
    blobsources.remember(store, host, repo, diff_ids + [image.id])
    with store.locked():
        store.images.add_repo_digest(image.id, ref.name, digest)
    tag = ref.tag or "latest"
    view.line(f"{tag}: digest: {digest} size: {len(manifest)}")
    return PushResult(tag=tag, digest=digest, size=len(manifest))


def _push_layer(
    store: Store, registry: Registry, repo: str, diff_id: str, sources: list[str], view: TransferView
) -> None:
    short = _short(diff_id)
    if registry.blob_size(repo, diff_id) is not None:
        view.layer_status(short, "Layer already exists")
        return
    size = store.layers.tar_size(diff_id)
    view.layer_started(short, size)
    mounted = registry.upload_blob(
        repo,
        diff_id,
        size,
        lambda: store.layers.open_tar(diff_id),
        sources,
        progress=lambda n: view.layer_progress(short, n),
    )
    view.layer_status(short, f"Mounted from {mounted}" if mounted else "Pushed")


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]
