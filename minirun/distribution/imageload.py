"""`load`: images from an archive into the store, every byte checked on the way in.

Formats: docker-save archives (`manifest.json` naming a config and layer tars: the legacy
`<id>/layer.tar` form, containers/image's `<digest>.tar` form, and docker >= 25's combined form
whose paths are `blobs/sha256/<hex>`), and OCI image layouts (`oci-layout`, `index.json`,
`blobs/`). Layers may be plain, gzip or zstd tars.

The archive is read at random: its members are indexed once (offset and size), small JSON
members are read with pread, and its images are planned (configs and manifests verified, each
layer located in the archive); minirun.distribution.layerworkers then unpacks the layers straight from their
bytes inside the archive, several at once (they become separate overlay lower dirs, so nothing
orders them). A pipe is spooled to an unnamed temp file in the store first, as docker spools it.
Everything is verified before anything becomes visible: blob digests (configs, manifests,
compressed layers), every layer's diff_id against its config, sizes against descriptors; the
staged layers are committed with their images only when all of them passed.

A small compressed archive can claim gigabytes: the index holds no tar header above 1 MiB, and
documents, configs, entries and names have limits (the _MAX_* below and in archive_index), so
what load holds in memory stays in the tens of MiB whatever the archive says.
"""

from __future__ import annotations

import functools
import io
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from minirun.distribution.archive_index import Archive, ImagePlan, LayerPlan, Member, Progress, blob_path, clean_name
from minirun.distribution.layerworkers import DEFAULT_WORKERS, unpack_layers
from minirun.errors import BadArchive, MinirunError
from minirun.image.manifests import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    DOCKER_CONFIG,
    OCI_CONFIG,
    check_config,
    check_descriptor,
    check_digest,
    familiar_name,
    is_index,
    layer_media_compression,
    load_json,
    parse_index,
    parse_json,
    parse_manifest,
    pick_platform,
    sha256_digest,
    verify_blob,
)
from minirun.layer.compression import corrupt, decompressed, is_bad_data, is_compressed_at
from minirun.records import Record

if TYPE_CHECKING:
    from minirun.store import Store
    from minirun.store.layers import StagedLayer
    from minirun.store.reference import Reference

_CHUNK = 1 << 20
# Limits on what an archive may make this process hold (a crafted archive is small compressed;
# archive_index bounds its files and names):
_MAX_DOCUMENT = 4 << 20  # manifest.json, index.json, a manifest: the registry's limit on manifests
_MAX_CONFIG = 8 << 20  # an image config, as pull takes it
_MAX_CONFIGS = 32 << 20  # all the configs of one archive, held until the images are committed
_MAX_IMAGES = 1000  # entries in manifest.json or index.json


class _Plans:
    """The images met so far, one plan per image id (an image several entries name gets all
    their names, and the first entry's layers), and the configs already read, by member: each
    is read, hashed and parsed once, however many entries name it."""

    def __init__(self) -> None:
        self.by_id: dict[str, ImagePlan] = {}
        self._configs: dict[Member, tuple[str, bytes, list[str]]] = {}
        self._config_bytes = 0

    def config(self, member: Member, what: str, read: Callable[[], bytes]) -> tuple[str, bytes, list[str]]:
        """(image id, bytes, diff_ids) of the config in `member`; `read()` the first time only."""
        known = self._configs.get(member)
        if known is None:
            raw = read()
            self._config_bytes += len(raw)
            if self._config_bytes > _MAX_CONFIGS:
                raise BadArchive(f"{what}: the archive's image configs take more than {_MAX_CONFIGS >> 20} MiB")
            known = self._configs[member] = (sha256_digest(raw), raw, _config_diff_ids(raw, what))
        return known

    def add(self, image_id: str, raw: bytes, diff_ids: list[str], layers: list[LayerPlan]) -> None:
        if image_id not in self.by_id:
            self.by_id[image_id] = ImagePlan(image_id, raw, diff_ids, layers)

    def name(self, image_id: str, refs: list[Reference]) -> None:
        self.by_id[image_id].names.update(dict.fromkeys(refs))


def read_plans(archive: Archive) -> list[ImagePlan]:
    """The images in the archive, their configs and manifests verified, layers not yet read."""
    if archive.has("manifest.json"):
        plans = _docker_plans(archive)
    elif archive.has("index.json"):
        plans = _oci_plans(archive)
    else:
        raise BadArchive("not an image archive: neither manifest.json (docker save) nor index.json (OCI layout) found")
    if not plans.by_id:
        raise BadArchive("the archive holds no image")
    return list(plans.by_id.values())


def _digest_in_path(path: str) -> str | None:
    """The blob digest a layer path promises: `blobs/sha256/<hex>`, or `<hex>.tar` as
    containers/image names its blobs; a legacy `<v1 id>/layer.tar` promises nothing."""
    import re

    path = clean_name(path)
    match = re.fullmatch(r"blobs/sha256/([a-f0-9]{64})|([a-f0-9]{64})\.(?:tar|tar\.gz|tgz|tar\.zst|json)", path)
    if match is None:
        return None
    return "sha256:" + (match.group(1) or match.group(2))


def _check_count(count: int, what: str) -> None:
    if count > _MAX_IMAGES:
        raise BadArchive(f"{what}: {count} entries, more than the {_MAX_IMAGES} an archive may hold")


def _docker_plans(archive: Archive) -> _Plans:
    doc = parse_json(archive.read("manifest.json", "docker archive", _MAX_DOCUMENT), "manifest.json")
    if not isinstance(doc, list):
        raise BadArchive("manifest.json: not a list of images")
    _check_count(len(doc), "manifest.json")
    entries = [_docker_entry(entry, f"manifest.json entry {n}") for n, entry in enumerate(doc, 1)]
    del doc  # whatever else the entries held: only these fields are kept
    plans = _Plans()
    for n, (path, layer_paths, tags) in enumerate(entries, 1):
        what = f"manifest.json entry {n}"
        image_id, raw, diff_ids = plans.config(
            archive.member(path, f"{what} config"),
            f"{what} config",
            functools.partial(_read_config_path, archive, path, f"{what} config"),
        )
        if len(diff_ids) != len(layer_paths):
            raise BadArchive(f"{what}: {len(layer_paths)} layers, but its config lists {len(diff_ids)} diff_ids")
        layers = [
            LayerPlan(
                diff_id,
                archive.member(layer_path, f"{what} layer {i + 1}"),
                _digest_in_path(layer_path),
                f"layer {i + 1} ({layer_path})",
            )
            for i, (diff_id, layer_path) in enumerate(zip(diff_ids, layer_paths))
        ]
        plans.add(image_id, raw, diff_ids, layers)
        plans.name(image_id, _references(tags, what))
    return plans


def _docker_entry(entry: object, what: str) -> tuple[str, list[str], list[str]]:
    """(Config, Layers, RepoTags) of a manifest.json entry, checked."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("Config"), str)
        or not isinstance(entry.get("Layers"), list)
        or not all(isinstance(p, str) for p in entry["Layers"])
    ):
        raise BadArchive(f"{what}: needs a Config path and a list of Layers")
    tags = entry.get("RepoTags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadArchive(f"{what}: RepoTags is not a list of names")
    return entry["Config"], entry["Layers"], tags


def _read_config_path(archive: Archive, path: str, what: str) -> bytes:
    raw = archive.read(path, what, _MAX_CONFIG)
    promised = _digest_in_path(path)
    if promised is not None and sha256_digest(raw) != promised:
        raise BadArchive(f"{what} {path}: digest mismatch (got {sha256_digest(raw)})")
    return raw


def _oci_plans(archive: Archive) -> _Plans:
    layout = load_json(archive.read("oci-layout", "OCI layout", _MAX_DOCUMENT), "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise BadArchive("oci-layout: no imageLayoutVersion")
    index = parse_index(archive.read("index.json", "OCI layout", _MAX_DOCUMENT))
    _check_count(len(index["manifests"]), "index.json")
    plans = _Plans()
    planned: dict[str, str] = {}  # manifest digest -> image id: another entry naming it adds names only
    for n, desc in enumerate(index["manifests"], 1):
        what = f"index.json entry {n}"
        refs = _references(_oci_names(desc), what)
        image_id = planned.get(desc["digest"])
        if image_id is None:
            image_id = planned[desc["digest"]] = _plan_manifest(archive, plans, desc, what)
        plans.name(image_id, refs)
    return plans


def _plan_manifest(archive: Archive, plans: _Plans, desc: dict, what: str) -> str:
    manifest = _manifest_for(archive, desc, what)
    config_desc = manifest["config"]
    if config_desc.get("mediaType") not in (None, OCI_CONFIG, DOCKER_CONFIG):
        raise BadArchive(f"{what}: not a container image (config of type {config_desc['mediaType']})")
    image_id, raw, diff_ids = plans.config(
        archive.member(blob_path(config_desc["digest"]), f"{what} config"),
        f"{what} config",
        lambda: _read_blob(archive, config_desc, f"{what} config", _MAX_CONFIG),
    )
    if len(diff_ids) != len(manifest["layers"]):
        raise BadArchive(f"{what}: {len(manifest['layers'])} layers, but its config lists {len(diff_ids)} diff_ids")
    layers = []
    for i, (diff_id, layer) in enumerate(zip(diff_ids, manifest["layers"])):
        layer_what = f"layer {i + 1} ({layer['digest']})"
        try:
            layer_media_compression(layer["mediaType"])
        except MinirunError as exc:
            raise BadArchive(f"{what} {layer_what}: {exc.message}") from None
        member = archive.member(blob_path(layer["digest"]), f"{what} {layer_what}")
        if member.size != layer["size"]:
            raise BadArchive(
                f"{what} {layer_what}: {member.size} bytes in the archive, {layer['size']} in the manifest"
            )
        layers.append(LayerPlan(diff_id, member, layer["digest"], layer_what))
    plans.add(image_id, raw, diff_ids, layers)
    return image_id


def _manifest_for(archive: Archive, desc: dict, what: str) -> dict:
    """The image manifest an index entry leads to: through a nested index, the host's platform."""
    for _ in range(4):  # indexes nest; not deeply in any real layout
        data = _read_blob(archive, desc, what)
        doc = load_json(data, what)
        if not is_index(doc, desc.get("mediaType")):
            return parse_manifest(data)
        nested = parse_index(data)
        desc = pick_platform(nested)
    raise BadArchive(f"{what}: image indexes nested too deeply")


def _read_blob(archive: Archive, desc: dict, what: str, limit: int = _MAX_DOCUMENT) -> bytes:
    check_descriptor(desc, what)
    if desc["size"] > limit:
        raise BadArchive(f"{what}: {desc['digest']} is too large ({desc['size']} bytes, at most {limit})")
    return verify_blob(archive.read(blob_path(desc["digest"]), what, limit), desc, what)


def _oci_names(desc: dict) -> list[str]:
    """containerd's full image name, else OCI's ref.name when it is a whole reference; a bare
    tag (what `skopeo copy ... oci:dir:tag` writes) names no repository: the image loads untagged."""
    annotations = desc.get("annotations") or {}
    if not isinstance(annotations, dict):
        return []
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if isinstance(name, str) and name:
        return [name]
    ref = annotations.get(ANNOTATION_REF_NAME)
    if isinstance(ref, str) and any(c in ref for c in "/:@"):
        return [ref]
    return []


def _references(names: list[str], what: str) -> list[Reference]:
    from minirun.store.reference import parse_reference

    refs: dict[Reference, None] = {}
    for name in names:
        try:
            ref = parse_reference(familiar_name(name))
        except MinirunError as exc:
            raise BadArchive(f"{what}: invalid image name {name!r}: {exc.message}") from None
        if ref.digest is None:  # a digest names content, not a tag to set
            refs[ref] = None
    return list(refs)


def _config_diff_ids(raw: bytes, what: str) -> list[str]:
    """The config's diff_ids, once it is checked to be a linux image config."""
    config = load_json(raw, what)
    check_config(config, what)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not diff_ids:
        raise BadArchive(f"{what}: no rootfs.diff_ids")
    for diff_id in diff_ids:
        check_digest(diff_id, f"{what} diff_id")
    if config.get("os") not in (None, "", "linux"):
        raise BadArchive(f"{what}: cannot load a {config['os']} image on linux")
    return diff_ids


# -- the whole load ----------------------------------------------------------------------------


class Loaded(Record):
    image_id: str
    refs: list[str]
    replaced: list[tuple[str, str]]  # (name, old image id) for a tag that moved to this image


def load_archive(
    store: Store, stream: BinaryIO, progress: Progress | None = None, workers: int = DEFAULT_WORKERS
) -> list[Loaded]:
    """Load every image in the archive `stream` holds; nothing is stored unless all of it checks out."""
    progress = progress or Progress()
    fd = _archive_fd(store, stream, progress)
    try:
        archive = Archive(fd)
        plans = read_plans(archive)
        staged = unpack_layers(store, archive, plans, progress, workers)
        return _commit(store, plans, staged)
    finally:
        if fd != _fileno(stream):
            os.close(fd)


def _commit(store: Store, plans: list[ImagePlan], staged: dict[str, StagedLayer]) -> list[Loaded]:
    loaded = []
    try:
        for plan in plans:
            mine = [staged.pop(d) for d in dict.fromkeys(layer.diff_id for layer in plan.layers) if d in staged]
            before = store.images.tags()
            image = store.commit_image(
                mine,
                plan.config(),
                plan.refs[0] if plan.refs else None,
                raw_config=plan.raw_config,
                more_refs=plan.refs[1:],
            )
            names = [str(ref) for ref in plan.refs]
            replaced = [(n, before[n]) for n in names if before.get(n) not in (None, image.id)]
            loaded.append(Loaded(image.id, names, replaced))
    finally:
        for layer in staged.values():  # left by a failed commit
            store.layers.discard(layer)
    return loaded


def _fileno(stream: BinaryIO) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return -1


def _archive_fd(store: Store, stream: BinaryIO, progress: Progress) -> int:
    """A descriptor of the uncompressed archive: the input itself when it is a regular file read
    from its start, else an unnamed temp file in the store holding the input (decompressed)."""
    fd = _fileno(stream)
    if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
        position = os.lseek(fd, 0, os.SEEK_CUR)
        if position == 0 and not is_compressed_at(fd, 0):
            return fd
    return _spool(store, stream, progress)


def _spool(store: Store, stream: BinaryIO, progress: Progress) -> int:
    import tempfile

    store.ensure()
    # O_TMPFILE in the store: on its filesystem, and gone however this process ends.
    spool = tempfile.TemporaryFile(dir=store.root)
    try:
        source = decompressed(stream)
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            try:
                n = source.readinto(buffer)  # type: ignore[attr-defined]
            except Exception as exc:
                if is_bad_data(exc):
                    raise corrupt(exc, "archive") from None
                raise
            if not n:
                break
            spool.write(view[:n])
            progress.spooled(n)
        spool.flush()
        if spool.tell() == 0:
            raise BadArchive("empty input: no archive to load (use -i FILE or pipe one in)")
        return os.dup(spool.fileno())
    finally:
        spool.close()
